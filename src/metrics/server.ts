// The metrics endpoint: GET /metrics (text format 0.0.4, gzip when the scraper accepts it) and GET /health
// on metrics.prometheus.host:port. Everything else: 404 for other paths, 405 for other methods.
import { HavmError, ExitCode, errnoCode, errorMessage } from "../util/errors.ts";
import { CONTENT_TYPE } from "./render.ts";

export interface MetricsServerOptions {
  host: string;
  port: number;
  /** Produces the scrape body (HavmMetrics.render). */
  render: () => string;
  /** Optional health check for GET /health: a failing check answers 503. Default: always healthy. */
  health?: () => { ok: boolean; detail?: string };
}

export interface MetricsServer {
  /** The bound URL, e.g. http://127.0.0.1:9210 (the real port when 0 was asked). */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Below this, gzip costs more than it saves. */
const GZIP_MIN_BYTES = 1024;

/** True when Accept-Encoding lists gzip (or *) with a non-zero quality. */
export function acceptsGzip(header: string | null): boolean {
  if (!header) return false;
  for (const part of header.split(",")) {
    const [coding, ...params] = part.trim().toLowerCase().split(";");
    if (coding !== "gzip" && coding !== "*") continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

const ALLOW = "GET, HEAD";

export function handleMetricsRequest(req: Request, opts: Pick<MetricsServerOptions, "render" | "health">): Response {
  const path = new URL(req.url).pathname;
  if (path !== "/metrics" && path !== "/health") return new Response("not found\n", { status: 404, headers: { "Content-Type": "text/plain; charset=utf-8" } });
  if (req.method !== "GET" && req.method !== "HEAD") {
    return new Response("method not allowed\n", { status: 405, headers: { Allow: ALLOW, "Content-Type": "text/plain; charset=utf-8" } });
  }
  if (path === "/health") {
    const h = opts.health?.() ?? { ok: true };
    return new Response(`${h.ok ? "ok" : "unhealthy"}${h.detail ? `: ${h.detail}` : ""}\n`, {
      status: h.ok ? 200 : 503,
      headers: { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store" },
    });
  }
  let body: string;
  try {
    body = opts.render();
  } catch (e) {
    return new Response(`metrics unavailable: ${errorMessage(e)}\n`, { status: 500, headers: { "Content-Type": "text/plain; charset=utf-8" } });
  }
  const headers: Record<string, string> = { "Content-Type": CONTENT_TYPE, "Cache-Control": "no-store", Vary: "Accept-Encoding" };
  if (body.length >= GZIP_MIN_BYTES && acceptsGzip(req.headers.get("accept-encoding"))) {
    headers["Content-Encoding"] = "gzip";
    return new Response(Bun.gzipSync(Buffer.from(body)), { headers });
  }
  return new Response(body, { headers });
}

/** Start listening. A port in use (or any bind failure) is a HavmError naming the port and the config key. */
export function startMetricsServer(opts: MetricsServerOptions): MetricsServer {
  let server: ReturnType<typeof Bun.serve>;
  try {
    server = Bun.serve({
      hostname: opts.host,
      port: opts.port,
      // Scrapes are tiny; a slow scraper must not hold a connection for long.
      idleTimeout: 30,
      fetch: (req) => handleMetricsRequest(req, opts),
      error: (e) => new Response(`internal error: ${errorMessage(e)}\n`, { status: 500 }),
    });
  } catch (e) {
    const code = errnoCode(e);
    const where = `${opts.host}:${opts.port}`;
    if (code === "EADDRINUSE" || /in use/i.test(errorMessage(e))) {
      throw new HavmError(`cannot serve metrics: port ${opts.port} on ${opts.host} is already in use`, {
        hint: `Stop whatever listens on ${where}, or set metrics.prometheus.port to a free port in the config file.`,
        exitCode: ExitCode.failure,
        code: "metrics.port-in-use",
        cause: e,
      });
    }
    throw new HavmError(`cannot serve metrics on ${where}: ${errorMessage(e)}`, {
      hint: "Check metrics.prometheus.host (an address of this machine, e.g. 127.0.0.1) and metrics.prometheus.port in the config file.",
      code: "metrics.listen",
      cause: e,
    });
  }
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  const port = server.port ?? opts.port;
  return {
    url: `http://${host}:${port}`,
    port,
    stop: async () => {
      await server.stop(true);
    },
  };
}
