// The local release server answers like version.home-assistant.io, the GitHub releases API and GitHub's
// download URLs. Checked with fetch and with curl (a real HTTP client with its own Range/resume logic).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseRange, startReleaseServer, type ReleaseServer, type ReleaseServerOptions } from "./release-server.ts";

const BOARD = "generic-x86-64";
let dir: string;
let image: string;
let bytes: Uint8Array<ArrayBuffer>;
let servers: ReleaseServer[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "release-server-test-"));
  image = join(dir, "fake.img.xz");
  // 300 KiB of non-repeating bytes, so any misplaced range shows up in a hash
  bytes = new Uint8Array(300 * 1024);
  for (let i = 0, x = 12345; i < bytes.length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x >>> 24;
  }
  writeFileSync(image, bytes);
});
afterEach(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  servers = [];
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function start(extra: Partial<ReleaseServerOptions> = {}): Promise<ReleaseServer> {
  const s = await startReleaseServer({ board: BOARD, version: "17.1", imageXzPath: image, ...extra });
  servers.push(s);
  return s;
}

async function sh(cmd: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON shapes are asserted field by field
const getJson = async (url: string): Promise<any> => (await fetch(url)).json();
const sha256 = (b: Uint8Array) => new Bun.CryptoHasher("sha256").update(b).digest("hex");

describe("parseRange", () => {
  test.each([
    ["bytes=0-99", 1000, [0, 99]],
    ["bytes=100-", 1000, [100, 999]],
    ["bytes=-100", 1000, [900, 999]],
    ["bytes=-5000", 1000, [0, 999]],
    ["bytes=990-5000", 1000, [990, 999]],
    ["bytes=1000-", 1000, "unsatisfiable"],
    ["bytes=-0", 1000, "unsatisfiable"],
    ["bytes=5-1", 1000, null],
    ["bytes=0-1,5-6", 1000, null],
    ["items=0-1", 1000, null],
    [null, 1000, null],
  ] as const)("%p of %d -> %p", (h, size, want) => {
    expect(parseRange(h, size)).toEqual(want as never);
  });
});

describe("version service", () => {
  test("stable.json and beta.json carry hassos.<board>", async () => {
    const s = await start({ betaVersion: "17.2.rc1" });
    const stable = await getJson(`${s.versionUrl}/stable.json`);
    const beta = await getJson(`${s.versionUrl}/beta.json`);
    expect(stable.hassos[BOARD]).toBe("17.1");
    expect(stable.hassos["generic-aarch64"]).toBe("17.1");
    expect(beta.hassos[BOARD]).toBe("17.2.rc1");
    expect(s.requests.map((r) => r.kind)).toEqual(["version", "version"]);
  });

  test("failVersion answers 503, and can be switched at run time", async () => {
    const s = await start({ failVersion: true });
    expect((await fetch(`${s.versionUrl}/stable.json`)).status).toBe(503);
    s.options.failVersion = false;
    expect((await fetch(`${s.versionUrl}/stable.json`)).status).toBe(200);
  });
});

describe("releases API", () => {
  test("tags/<version> lists the asset with size and the image's real sha256 digest", async () => {
    const s = await start();
    const rel = await getJson(`${s.releasesApi}/tags/17.1`);
    expect(rel.tag_name).toBe("17.1");
    expect(rel.prerelease).toBe(false);
    const a = rel.assets.find((x: { name: string }) => x.name === `haos_${BOARD}-17.1.img.xz`);
    expect(a.size).toBe(bytes.length);
    // compare with sha256sum, not with the server's own hashing
    const sum = (await sh(["sha256sum", image])).out.split(" ")[0];
    expect(a.digest).toBe(`sha256:${sum}`);
    expect(a.browser_download_url).toBe(s.assetUrl);
    // neighbours that must not be picked by a client that matches names loosely
    const names: string[] = rel.assets.map((x: { name: string }) => x.name);
    expect(names).toContain(`haos_${BOARD}-17.1.qcow2.xz`);
    expect(names).toContain("haos_generic-aarch64-17.1.img.xz");
  });

  test("list endpoint has the prerelease first; unknown tag is 404", async () => {
    const s = await start({ betaVersion: "17.2.rc1" });
    const list = await getJson(s.releasesApi);
    expect(list.map((r: { tag_name: string; prerelease: boolean }) => [r.tag_name, r.prerelease])).toEqual([
      ["17.2.rc1", true],
      ["17.1", false],
    ]);
    expect((await fetch(`${s.releasesApi}/tags/9.9`)).status).toBe(404);
    expect((await getJson(`${s.releasesApi}/latest`)).tag_name).toBe("17.1");
  });

  test("digest: wrong and missing", async () => {
    const wrong = await start({ digest: "wrong" });
    const missing = await start({ digest: "missing" });
    const pick = async (s: ReleaseServer) =>
      (await getJson(`${s.releasesApi}/tags/17.1`)).assets.find((x: { name: string }) => x.name === s.assetName);
    const w = await pick(wrong);
    expect(w.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(w.digest).not.toBe(`sha256:${sha256(bytes)}`);
    const m = await pick(missing);
    expect(m.digest).toBeNull();
    expect(m.size).toBe(bytes.length);
  });

  test("failApi answers 403 rate limited; no User-Agent is refused like GitHub", async () => {
    const s = await start({ failApi: true });
    const r = await fetch(`${s.releasesApi}/tags/17.1`);
    expect(r.status).toBe(403);
    expect(r.headers.get("x-ratelimit-remaining")).toBe("0");
    expect(((await r.json()) as { message: string }).message).toContain("rate limit");
    const ok = await start();
    const noUa = await sh(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "User-Agent:", `${ok.releasesApi}/tags/17.1`]);
    expect(noUa.out).toBe("403");
  });
});

describe("downloads", () => {
  test("the download URL redirects to a blob that serves the whole file", async () => {
    const s = await start();
    const r = await fetch(s.assetUrl);
    expect(r.status).toBe(200);
    expect(r.redirected).toBe(true);
    expect(r.headers.get("accept-ranges")).toBe("bytes");
    expect(Number(r.headers.get("content-length"))).toBe(bytes.length);
    expect(sha256(new Uint8Array(await r.arrayBuffer()))).toBe(sha256(bytes));
    expect(s.requests.map((x) => [x.kind, x.status])).toEqual([["download", 302], ["blob", 200]]);
    expect(s.imageRequests()).toHaveLength(1);
  });

  test("Range: 206 with Content-Range for a middle, open and suffix range; 416 past the end", async () => {
    const s = await start({ noRedirect: true });
    const get = (range: string) => fetch(s.assetUrl, { headers: { Range: range } });
    const mid = await get("bytes=1000-1999");
    expect(mid.status).toBe(206);
    expect(mid.headers.get("content-range")).toBe(`bytes 1000-1999/${bytes.length}`);
    expect(new Uint8Array(await mid.arrayBuffer())).toEqual(bytes.subarray(1000, 2000));
    const open = await get(`bytes=${bytes.length - 10}-`);
    expect(open.status).toBe(206);
    expect(new Uint8Array(await open.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 10));
    const suffix = await get("bytes=-7");
    expect(new Uint8Array(await suffix.arrayBuffer())).toEqual(bytes.subarray(bytes.length - 7));
    const past = await get(`bytes=${bytes.length}-`);
    expect(past.status).toBe(416);
    expect(past.headers.get("content-range")).toBe(`bytes */${bytes.length}`);
    const head = await fetch(s.assetUrl, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get("content-length"))).toBe(bytes.length);
    expect(s.requests.map((r) => r.range)).toEqual(["bytes=1000-1999", `bytes=${bytes.length - 10}-`, "bytes=-7", `bytes=${bytes.length}-`, null]);
  });

  test("noRange answers 200 with everything", async () => {
    const s = await start({ noRange: true, noRedirect: true });
    const r = await fetch(s.assetUrl, { headers: { Range: "bytes=10-20" } });
    expect(r.status).toBe(200);
    expect((await r.arrayBuffer()).byteLength).toBe(bytes.length);
  });

  test("a cut connection, then curl resumes with a Range request and gets the exact file", async () => {
    const s = await start({ dropAfterBytes: 100_000 });
    const out = join(dir, "resumed.img.xz");
    rmSync(out, { force: true });
    const first = await sh(["curl", "-sSL", "-o", out, s.assetUrl]);
    expect(first.code).not.toBe(0); // curl: transfer closed with outstanding data / partial file
    const partial = statSync(out).size;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(bytes.length);
    const second = await sh(["curl", "-sSL", "-C", "-", "-o", out, s.assetUrl]);
    expect(second.err).toBe("");
    expect(second.code).toBe(0);
    expect((await sh(["sha256sum", out])).out.split(" ")[0]).toBe(sha256(bytes));
    const img = s.imageRequests();
    expect(img).toHaveLength(2);
    expect(img[1]!.range).toBe(`bytes=${partial}-`);
    expect(img[1]!.status).toBe(206);
  });

  test("a stalled download sends some bytes then nothing, until the client gives up", async () => {
    const s = await start({ stallAfterBytes: 50_000 });
    const out = join(dir, "stalled.img.xz");
    rmSync(out, { force: true });
    const t0 = Date.now();
    // curl gives up when fewer than 1 byte/s arrive for 2 s
    const r = await sh(["curl", "-sSL", "-Y", "1", "-y", "2", "-o", out, s.assetUrl]);
    expect(r.code).toBe(28); // operation too slow
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2000);
    expect(statSync(out).size).toBe(50_000);
    // only the first download is interrupted: the next one completes
    const again = await fetch(s.assetUrl);
    expect((await again.arrayBuffer()).byteLength).toBe(bytes.length);
  }, 20_000);

  test("unknown asset or version is 404", async () => {
    const s = await start();
    expect((await fetch(`${s.downloadUrl}/17.1/haos_ova-17.1.qcow2.xz`)).status).toBe(404);
    expect((await fetch(`${s.downloadUrl}/9.9/haos_${BOARD}-9.9.img.xz`)).status).toBe(404);
  });

  test("bytesPerSecond throttles the body", async () => {
    const s = await start({ bytesPerSecond: 200_000, noRedirect: true });
    const t0 = Date.now();
    const r = await fetch(s.assetUrl, { headers: { Range: "bytes=0-99999" } });
    expect((await r.arrayBuffer()).byteLength).toBe(100_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400); // 100 kB at 200 kB/s ~ 0.5 s
  });

  test("configYaml points havm's three endpoints at the server", async () => {
    const s = await start();
    const { parse } = await import("yaml");
    const cfg = parse(s.configYaml());
    expect(cfg.haos).toEqual({ version_url: s.versionUrl, releases_api: s.releasesApi, download_url: s.downloadUrl });
    expect(`${cfg.haos.download_url}/17.1/haos_${BOARD}-17.1.img.xz`).toBe(s.assetUrl);
  });
});
