// A local stand-in for everything havm fetches to install HAOS, on 127.0.0.1 (Bun.serve, port 0):
//   <versionUrl>/{stable,beta,dev}.json            like version.home-assistant.io ({"hassos": {"<board>": "<version>"}})
//   <releasesApi>                                  like GET /repos/home-assistant/operating-system/releases (list)
//   <releasesApi>/tags/<version>, <releasesApi>/latest
//   <downloadUrl>/<version>/haos_<board>-<version>.img.xz
//                                                  like github.com/.../releases/download: a 302 to a blob URL
//                                                  which serves the bytes with Range support (206/416)
// Version service and API: Bun.serve. Downloads: a second listener (another "host", like github.com and
// its blob storage) that writes HTTP/1.1 itself, so cut and stalled bodies keep their Content-Length.
// The three base URLs go into havm's config as haos.version_url, haos.releases_api and haos.download_url.

import { createServer, type Socket } from "node:net";

export interface ReleaseServerOptions {
  /** HAOS board, e.g. "generic-x86-64" or "generic-aarch64". */
  board: string;
  /** The stable version (stable.json, a normal release). */
  version: string;
  /** The file served as haos_<board>-<version>.img.xz (its bytes are served as they are). */
  imageXzPath: string;
  /** A pre-release version for beta.json and dev.json (a prerelease on the API); served with the same image. */
  betaVersion?: string;
  /** What the API says in the asset's `digest`: the real sha256 (default), a wrong one, or null (older assets). */
  digest?: "correct" | "wrong" | "missing";
  /** The releases API answers 403 "API rate limit exceeded", like an exhausted anonymous GitHub quota. */
  failApi?: boolean;
  /** The version service answers 503. */
  failVersion?: boolean;
  /** The first `interruptedDownloads` downloads send this many bytes, then stall (no more bytes, no close). */
  stallAfterBytes?: number;
  /** The first `interruptedDownloads` downloads send this many bytes, then the connection is cut. */
  dropAfterBytes?: number;
  /** How many downloads `stallAfterBytes`/`dropAfterBytes` apply to (default 1: a retry/resume succeeds). */
  interruptedDownloads?: number;
  /** Ignore Range headers (always 200 with the whole file), like a server without range support. */
  noRange?: boolean;
  /** Serve the bytes at the download URL itself instead of redirecting to a blob URL (GitHub redirects). */
  noRedirect?: boolean;
  /** Send a throttled body: at most this many bytes per second (to test progress, stalls, Ctrl+C). */
  bytesPerSecond?: number;
  /** Ports on 127.0.0.1 for the API/version server and the download host (default 0: any free port). */
  port?: number;
  downloadPort?: number;
}

export interface RequestRecord {
  method: string;
  /** Path and query, e.g. "/releases/download/17.1/haos_generic-x86-64-17.1.img.xz". */
  path: string;
  range: string | null;
  userAgent: string | null;
  status: number;
  kind: "version" | "api" | "download" | "blob" | "other";
}

export interface ReleaseServer {
  /** http://127.0.0.1:<port> */
  url: string;
  versionUrl: string;
  releasesApi: string;
  downloadUrl: string;
  /** The asset name and its download URL for the stable version. */
  assetName: string;
  assetUrl: string;
  /** sha256 hex of the image file, and its size. */
  sha256: string;
  size: number;
  /** The live options: change e.g. `failVersion`/`failApi` between requests (board/version/image are fixed). */
  options: ReleaseServerOptions;
  /** Every request in arrival order. */
  requests: RequestRecord[];
  /** Requests that delivered image bytes (blob, or download with noRedirect). */
  imageRequests(): RequestRecord[];
  /** Config lines (YAML) pointing havm at this server. */
  configYaml(): string;
  stop(): Promise<void>;
}

const GITHUB_JSON = "application/json; charset=utf-8";

export function assetNameFor(board: string, version: string): string {
  return `haos_${board}-${version}.img.xz`;
}

async function sha256File(path: string): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  const reader = Bun.file(path).stream().getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    h.update(value);
  }
  return h.digest("hex");
}

/** Parse a single-range "bytes=" header against a size: a [start, end] (inclusive), "unsatisfiable", or null (ignore). */
export function parseRange(header: string | null, size: number): [number, number] | "unsatisfiable" | null {
  if (!header) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return null; // multiple ranges or another unit: answering 200 with everything is allowed
  const [, a, b] = m;
  if (a === "" && b === "") return null;
  if (a === "") {
    const n = Number(b);
    if (n === 0) return "unsatisfiable";
    return [Math.max(0, size - n), size - 1];
  }
  const start = Number(a);
  if (start >= size) return "unsatisfiable";
  const end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
  if (end < start) return null; // syntactically invalid: ignore the header
  return [start, end];
}

export async function startReleaseServer(options: ReleaseServerOptions): Promise<ReleaseServer> {
  // A private copy, read at each request: tests may flip failures on and off through `server.options`.
  const opts: ReleaseServerOptions = { ...options };
  const file = Bun.file(opts.imageXzPath);
  if (!(await file.exists())) throw new Error(`release server: ${opts.imageXzPath} does not exist`);
  const size = file.size;
  const sha256 = await sha256File(opts.imageXzPath);
  const requests: RequestRecord[] = [];
  let interruptedLeft = opts.interruptedDownloads ?? 1;
  const timers = new Set<ReturnType<typeof setTimeout>>();

  const versions = [opts.version, ...(opts.betaVersion && opts.betaVersion !== opts.version ? [opts.betaVersion] : [])];
  const otherBoards = ["ova", "generic-x86-64", "generic-aarch64", "rpi5-64"].filter((b) => b !== opts.board);

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: opts.port ?? 0,
    fetch: async (req) => {
      const u = new URL(req.url);
      const rec: RequestRecord = {
        method: req.method,
        path: u.pathname + u.search,
        range: req.headers.get("range"),
        userAgent: req.headers.get("user-agent"),
        status: 0,
        kind: "other",
      };
      requests.push(rec);
      const res = await route(req, u, rec);
      rec.status = res.status;
      return res;
    },
  });
  const url = `http://127.0.0.1:${server.port}`;
  const versionUrl = `${url}/version`;
  const releasesApi = `${url}/repos/home-assistant/operating-system/releases`;

  const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
    new Response(JSON.stringify(body, null, 2), { status, headers: { "Content-Type": GITHUB_JSON, ...headers } });

  function digestField(): string | null {
    switch (opts.digest ?? "correct") {
      case "correct":
        return `sha256:${sha256}`;
      case "wrong":
        return `sha256:${sha256.replace(/^./, (c) => (c === "0" ? "1" : "0"))}`;
      case "missing":
        return null;
    }
  }

  function release(version: string, id: number) {
    const prerelease = version !== opts.version;
    const asset = (name: string, sz: number, digest: string | null, n: number) => ({
      url: `${releasesApi}/assets/${id * 100 + n}`,
      id: id * 100 + n,
      name,
      label: "",
      content_type: "application/octet-stream",
      state: "uploaded",
      size: sz,
      digest,
      download_count: 42,
      created_at: "2026-02-01T12:00:00Z",
      updated_at: "2026-02-01T12:00:00Z",
      browser_download_url: `${downloadUrl}/${version}/${name}`,
    });
    // Neighbouring assets, so a client must pick the right one by name.
    const assets = [
      ...otherBoards.map((b, i) => asset(`haos_${b}-${version}.img.xz`, 1000 + i, `sha256:${"ab".repeat(32)}`, i + 1)),
      asset(`haos_${opts.board}-${version}.raucb`, 2000, `sha256:${"cd".repeat(32)}`, 8),
      asset(`haos_${opts.board}-${version}.qcow2.xz`, 3000, `sha256:${"ef".repeat(32)}`, 9),
      asset(assetNameFor(opts.board, version), size, digestField(), 10),
    ];
    return {
      url: `${releasesApi}/${id}`,
      html_url: `${url}/home-assistant/operating-system/releases/tag/${version}`,
      id,
      tag_name: version,
      target_commitish: "dev",
      name: version,
      draft: false,
      prerelease,
      created_at: "2026-02-01T12:00:00Z",
      published_at: "2026-02-01T12:00:00Z",
      assets,
      body: `mini-HAOS ${version} (test stand-in)`,
    };
  }

  function versionJson(channel: string, version: string) {
    const hassos: Record<string, string> = {};
    for (const b of [opts.board, ...otherBoards]) hassos[b] = version;
    return { channel, supervisor: "2026.02.0", homeassistant: { default: "2026.2.0" }, hassos, ota: `${url}/ota` };
  }

  async function route(req: Request, u: URL, rec: RequestRecord): Promise<Response> {
    const p = u.pathname;
    if (p.startsWith("/version/")) {
      rec.kind = "version";
      if (opts.failVersion) return new Response("503 Service Unavailable", { status: 503 });
      const beta = opts.betaVersion ?? opts.version;
      if (p === "/version/stable.json") return json(versionJson("stable", opts.version));
      if (p === "/version/beta.json") return json(versionJson("beta", beta));
      if (p === "/version/dev.json") return json(versionJson("dev", beta));
      return new Response("404: Not Found", { status: 404 });
    }
    const apiPrefix = new URL(releasesApi).pathname;
    if (p === apiPrefix || p.startsWith(apiPrefix + "/")) {
      rec.kind = "api";
      // api.github.com refuses requests without a User-Agent
      if (!req.headers.get("user-agent")) return json({ message: "Request forbidden by administrative rules." }, 403);
      if (opts.failApi) {
        return json(
          { message: "API rate limit exceeded for 127.0.0.1.", documentation_url: "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api" },
          403,
          { "x-ratelimit-limit": "60", "x-ratelimit-remaining": "0", "x-ratelimit-reset": String(Math.floor(Date.now() / 1000) + 3600) },
        );
      }
      const rest = p.slice(apiPrefix.length);
      const all = versions.map((v, i) => release(v, 1000 + i)).reverse(); // newest first
      if (rest === "" || rest === "/") return json(all);
      if (rest === "/latest") return json(release(opts.version, 1000));
      const tag = /^\/tags\/([^/]+)$/.exec(rest);
      if (tag) {
        const i = versions.indexOf(decodeURIComponent(tag[1]!));
        if (i >= 0) return json(release(versions[i]!, 1000 + i));
      }
      return json({ message: "Not Found", documentation_url: "https://docs.github.com/rest", status: "404" }, 404);
    }
    return new Response("Not Found", { status: 404 });
  }

  // ---- the download host: a raw HTTP/1.1 server (one request per connection), so that a response keeps
  // its Content-Length even when the test cuts or stalls it (Bun.serve would switch a streamed body to
  // chunked encoding, which no real download host does for these files).
  const sockets = new Set<Socket>();
  const dl = createServer((sock) => {
    sockets.add(sock);
    sock.on("close", () => sockets.delete(sock));
    sock.on("error", () => {});
    let head = "";
    const onData = (d: Buffer) => {
      head += d.toString("latin1");
      const endOfHead = head.indexOf("\r\n\r\n");
      if (endOfHead < 0) {
        if (head.length > 16384) sock.destroy();
        return;
      }
      sock.off("data", onData);
      void handleDownload(sock, head.slice(0, endOfHead)).catch(() => sock.destroy());
    };
    sock.on("data", onData);
  });
  await new Promise<void>((resolve, reject) => {
    dl.once("error", reject);
    dl.listen(opts.downloadPort ?? 0, "127.0.0.1", () => resolve());
  });
  const dlAddr = dl.address();
  const dlBase = `http://127.0.0.1:${typeof dlAddr === "object" && dlAddr ? dlAddr.port : 0}`;
  const downloadUrl = `${dlBase}/home-assistant/operating-system/releases/download`;
  const blobUrl = `${dlBase}/blob`;

  function writeHead(sock: Socket, status: number, reason: string, headers: Record<string, string>): void {
    const lines = [`HTTP/1.1 ${status} ${reason}`, `Date: ${new Date().toUTCString()}`, "Connection: close"];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    sock.write(lines.join("\r\n") + "\r\n\r\n");
  }

  function simple(sock: Socket, status: number, reason: string, body: string, headers: Record<string, string> = {}): void {
    writeHead(sock, status, reason, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": String(Buffer.byteLength(body)), ...headers });
    sock.end(body);
  }

  async function handleDownload(sock: Socket, head: string): Promise<void> {
    const [requestLine = "", ...headerLines] = head.split("\r\n");
    const [method = "", target = "/"] = requestLine.split(" ");
    const h = new Map<string, string>();
    for (const l of headerLines) {
      const i = l.indexOf(":");
      if (i > 0) h.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    const p = new URL(target, dlBase).pathname;
    const rec: RequestRecord = { method, path: target, range: h.get("range") ?? null, userAgent: h.get("user-agent") ?? null, status: 0, kind: "other" };
    requests.push(rec);
    const respond = (status: number, reason: string, body: string, headers: Record<string, string> = {}) => {
      rec.status = status;
      simple(sock, status, reason, body, headers);
    };
    if (method !== "GET" && method !== "HEAD") return respond(405, "Method Not Allowed", "Method Not Allowed");
    const dlPrefix = new URL(downloadUrl).pathname;
    let m: RegExpExecArray | null = null;
    if (p.startsWith(dlPrefix + "/")) {
      rec.kind = "download";
      m = /^\/([^/]+)\/([^/]+)$/.exec(p.slice(dlPrefix.length));
    } else if (p.startsWith("/blob/")) {
      rec.kind = "blob";
      m = /^\/blob\/([^/]+)\/([^/]+)$/.exec(p);
    }
    if (!m || !versions.includes(m[1]!) || m[2] !== assetNameFor(opts.board, m[1]!)) return respond(404, "Not Found", "Not Found");
    if (rec.kind === "download" && !opts.noRedirect) {
      // like github.com: a redirect to a signed blob URL on another host
      return respond(302, "Found", "", { Location: `${blobUrl}/${m[1]}/${m[2]}?sig=test` });
    }
    await serveImage(sock, method, h.get("range") ?? null, rec);
  }

  async function serveImage(sock: Socket, method: string, rangeHeader: string | null, rec: RequestRecord): Promise<void> {
    const base: Record<string, string> = {
      "Content-Type": "application/octet-stream",
      "Accept-Ranges": opts.noRange ? "none" : "bytes",
      ETag: `"${sha256.slice(0, 16)}"`,
      "Last-Modified": "Sun, 01 Feb 2026 12:00:00 GMT",
    };
    const range = opts.noRange ? null : parseRange(rangeHeader, size);
    if (range === "unsatisfiable") {
      rec.status = 416;
      writeHead(sock, 416, "Range Not Satisfiable", { ...base, "Content-Range": `bytes */${size}`, "Content-Length": "0" });
      sock.end();
      return;
    }
    const [start, end] = range ?? [0, size - 1];
    const headers: Record<string, string> = { ...base, "Content-Length": String(end - start + 1) };
    if (range) headers["Content-Range"] = `bytes ${start}-${end}/${size}`;
    rec.status = range ? 206 : 200;
    writeHead(sock, rec.status, range ? "Partial Content" : "OK", headers);
    if (method === "HEAD") {
      sock.end();
      return;
    }
    const cut = opts.stallAfterBytes ?? opts.dropAfterBytes;
    const interrupt = cut !== undefined && interruptedLeft > 0 && method === "GET";
    if (interrupt) interruptedLeft--;
    const limit = interrupt ? cut! : Infinity;
    const bps = opts.bytesPerSecond;
    let sent = 0;
    const reader = file.slice(start, end + 1).stream().getReader();
    try {
      while (sent < limit && !sock.destroyed) {
        const { done, value } = await reader.read();
        if (done) break;
        let buf = value.subarray(0, Math.min(value.length, limit - sent));
        while (buf.length > 0 && !sock.destroyed) {
          const n = bps ? Math.min(buf.length, Math.max(1, Math.ceil(bps / 10))) : buf.length;
          const ok = sock.write(buf.subarray(0, n));
          sent += n;
          buf = buf.subarray(n);
          if (!ok) await new Promise<void>((r) => (sock.once("drain", r), sock.once("close", r)));
          if (bps) await sleep((n / bps) * 1000);
        }
      }
    } finally {
      void reader.cancel().catch(() => {});
    }
    if (interrupt && opts.stallAfterBytes !== undefined) return; // stalled: no more bytes, no close
    sock.end(); // all bytes, or cut short of Content-Length (dropAfterBytes)
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(() => (timers.delete(t), r()), ms);
      timers.add(t);
    });
  }

  const assetName = assetNameFor(opts.board, opts.version);
  return {
    url,
    versionUrl,
    releasesApi,
    downloadUrl,
    assetName,
    assetUrl: `${downloadUrl}/${opts.version}/${assetName}`,
    sha256,
    size,
    options: opts,
    requests,
    imageRequests: () => requests.filter((r) => r.method === "GET" && (r.kind === "blob" || (r.kind === "download" && r.status !== 302 && r.status !== 404))),
    configYaml: () =>
      [
        "haos:",
        `  version_url: ${versionUrl}`,
        `  releases_api: ${releasesApi}`,
        `  download_url: ${downloadUrl}`,
        "",
      ].join("\n"),
    stop: async () => {
      for (const t of timers) clearTimeout(t);
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((r) => dl.close(() => r()));
      await server.stop(true);
    },
  };
}
