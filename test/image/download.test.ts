import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { download } from "../../src/image/download.ts";

const BODY = new Uint8Array(300_000).map((_, i) => (i * 31) & 0xff);
let server: ReturnType<typeof Bun.serve>;
let base: string;
const hits: Record<string, number> = {};

beforeAll(() => {
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const path = new URL(req.url).pathname;
      hits[path] = (hits[path] ?? 0) + 1;
      if (path === "/flaky" && hits[path]! <= 2) return new Response("busy", { status: 503 });
      if (path === "/always503") return new Response("busy", { status: 503 });
      if (path === "/missing") return new Response("no", { status: 404 });
      if (path === "/done") return new Response("", { status: 416, headers: { "content-range": `bytes */${BODY.length}` } });
      return new Response(BODY);
    },
  });
  base = `http://127.0.0.1:${server.port}`;
});
afterAll(() => server.stop(true));

describe("download", () => {
  test("transient 5xx answers are retried with doubling backoff", async () => {
    const delays: number[] = [];
    const parts: Uint8Array[] = [];
    const r = await download({ url: `${base}/flaky`, retryDelayMs: 100, sleep: async (ms) => void delays.push(ms), onChunk: (c) => void parts.push(c.slice()) });
    expect(delays).toEqual([100, 200]);
    expect(r).toMatchObject({ bytes: BODY.length, downloaded: BODY.length, attempts: 3, total: BODY.length });
    expect(Buffer.compare(Buffer.concat(parts), BODY)).toBe(0);
  });

  test("404 is final, with a hint about the version", async () => {
    const err = await download({ url: `${base}/missing`, sleep: async () => {}, onChunk: () => {} }).catch((e) => e);
    expect(err.code).toBe("download.notfound");
    expect(hits["/missing"]).toBe(1);
  });

  test("a consumer failure (disk full, corrupt data) is passed through and never retried", async () => {
    const boom = Object.assign(new Error("no space left"), { code: "ENOSPC" });
    const err = await download({ url: `${base}/file`, sleep: async () => {}, onChunk: () => { throw boom; } }).catch((e) => e);
    expect(err).toBe(boom);
    expect(hits["/file"]).toBe(1);
  });

  test("416 for a file already complete is success", async () => {
    const r = await download({ url: `${base}/done`, offset: BODY.length, onChunk: () => { throw new Error("no body expected"); } });
    expect(r).toMatchObject({ bytes: BODY.length, downloaded: 0 });
  });

  test("an abort during the retry backoff ends the wait", async () => {
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(new Error("stop now")), 50);
    const err = await download({ url: `${base}/always503`, retryDelayMs: 120_000, signal: ctl.signal, onChunk: () => {} }).catch((e) => e);
    expect(err.message).toBe("stop now");
    expect(hits["/always503"]).toBe(1);
  });

  test("an aborted signal stops at once", async () => {
    const ctl = new AbortController();
    ctl.abort(new Error("user pressed ^C"));
    const err = await download({ url: `${base}/file`, signal: ctl.signal, onChunk: () => {} }).catch((e) => e);
    expect(err.message).toBe("user pressed ^C");
  });
});
