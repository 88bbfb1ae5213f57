// Talking to Home Assistant over HTTP: a liveness probe WITHOUT credentials, and the host_shutdown service
// call WITH the configured token. Facts (../shared/design/haos-facts.md):
// - every request with a missing or bad token raises a "Login attempt failed" notification in HA, so liveness
//   never uses the API: any HTTP answer to GET / counts as up;
// - POST /api/services/hassio/host_shutdown needs an ADMIN token (else 401) and often never answers cleanly
//   because Core itself is being stopped: any answer, a cut connection or a timeout after connecting all mean
//   "maybe started".
import { GUEST_PORTS } from "../vm/build-spec.ts";
import { connect as netConnect } from "node:net";
import type { Endpoint } from "../vm/backend.ts";
import { errnoCode, errorMessage } from "../util/errors.ts";
import { log as defaultLog, type Logger } from "../util/log.ts";

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
/** TCP reachability check: resolves true when a connection was accepted within the timeout. */
export type ConnectCheck = (host: string, port: number, timeoutMs: number) => Promise<{ ok: true } | { ok: false; error: string }>;

/** HA's ports on the guest: new installs serve on 80, older ones on 8123. */
export const HA_PORTS = [GUEST_PORTS.haNew, GUEST_PORTS.ha] as const;

/** Base URLs to reach HA: `ha.url` wins; otherwise each known endpoint of the guest ports. */
export function haBaseUrls(haUrl: string | undefined, endpoints: ReadonlyArray<Endpoint | null>): string[] {
  if (haUrl) return [haUrl.replace(/\/+$/, "")];
  return endpoints.filter((e): e is Endpoint => e !== null).map((e) => `http://${e.host.includes(":") ? `[${e.host}]` : e.host}:${e.port}`);
}

export interface ProbeResult {
  up: boolean;
  durationSeconds: number;
  /** The base URL that answered first. */
  url?: string;
  status?: number;
  /** Why nothing answered (first error per URL, joined). */
  error?: string;
}

/**
 * Liveness: GET <base>/ on every base URL at once, without credentials; the first HTTP answer of any status
 * wins (HA answers / with its frontend or an onboarding redirect).
 */
export async function probeHa(baseUrls: readonly string[], opts: { fetch?: FetchLike; timeoutMs: number; now?: () => number }): Promise<ProbeResult> {
  const doFetch = opts.fetch ?? fetch;
  const now = opts.now ?? performance.now.bind(performance);
  const started = now();
  const seconds = () => (now() - started) / 1000;
  if (baseUrls.length === 0) return { up: false, durationSeconds: 0, error: "no address for the guest yet" };
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error(`no answer within ${opts.timeoutMs} ms`)), opts.timeoutMs);
  try {
    const winner = await Promise.any(
      baseUrls.map(async (url) => {
        try {
          const res = await doFetch(`${url}/`, { method: "GET", redirect: "manual", signal: abort.signal });
          await res.body?.cancel().catch(() => {});
          return { url, status: res.status };
        } catch (e) {
          throw new Error(`${url}: ${describeFetchError(e, abort.signal)}`);
        }
      }),
    );
    return { up: true, durationSeconds: seconds(), url: winner.url, status: winner.status };
  } catch (e) {
    const errors = e instanceof AggregateError ? e.errors.map(errorMessage) : [errorMessage(e)];
    return { up: false, durationSeconds: seconds(), error: errors.join("; ") };
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

export type HostShutdownOutcome = "accepted" | "unauthorized" | "maybe-started" | "unreachable";

export interface HostShutdownResult {
  outcome: HostShutdownOutcome;
  /** One line for the log: the HTTP status or the error. */
  detail: string;
  status?: number;
}

export interface HostShutdownOptions {
  baseUrl: string;
  token: string;
  fetch?: FetchLike;
  connect?: ConnectCheck;
  /** Bound for the whole call (connect + request). HA itself waits up to 10 s on the Supervisor. */
  timeoutMs: number;
}

/** Connection errors that prove the request never reached HA. */
const UNREACHABLE_CODES = new Set(["ECONNREFUSED", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EADDRNOTAVAIL", "ConnectionRefused", "FailedToOpenSocket"]);

/**
 * POST /api/services/hassio/host_shutdown once. A TCP connect check first separates "never reached HA"
 * (unreachable: try the next step) from "reached it, then the answer was cut or late" (maybe started).
 */
export async function requestHostShutdown(opts: HostShutdownOptions): Promise<HostShutdownResult> {
  const doFetch = opts.fetch ?? fetch;
  const check = opts.connect ?? tcpConnectCheck;
  const started = performance.now();
  const url = new URL("/api/services/hassio/host_shutdown", opts.baseUrl + "/");
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const reach = await check(host, port, Math.min(3000, opts.timeoutMs));
  if (!reach.ok) return { outcome: "unreachable", detail: `cannot connect to ${host}:${port}: ${reach.error}` };

  const remaining = Math.max(1, opts.timeoutMs - (performance.now() - started));
  const signal = AbortSignal.timeout(remaining);
  let res: Response;
  try {
    res = await doFetch(url, {
      method: "POST",
      headers: { Authorization: `Bearer ${opts.token}`, "Content-Type": "application/json" },
      body: "{}",
      redirect: "manual",
      signal,
    });
  } catch (e) {
    const code = errnoCode(e);
    if (code && UNREACHABLE_CODES.has(code)) return { outcome: "unreachable", detail: describeFetchError(e, signal) };
    return { outcome: "maybe-started", detail: `connection cut or no answer: ${describeFetchError(e, signal)}` };
  }
  await res.body?.cancel().catch(() => {});
  if (res.status === 401 || res.status === 403) {
    return { outcome: "unauthorized", status: res.status, detail: `HTTP ${res.status}: the token is not an admin token or is wrong` };
  }
  if (res.status >= 200 && res.status < 300) return { outcome: "accepted", status: res.status, detail: `HTTP ${res.status}` };
  return { outcome: "maybe-started", status: res.status, detail: `HTTP ${res.status} (HA often fails the call while it stops itself)` };
}

/**
 * The HA client the supervisor keeps for its lifetime: it remembers a token HA rejected, so a bad token is
 * reported once and never sent again (each try would add a "Login attempt failed" notification in HA).
 */
export interface HaApi {
  probe(baseUrls: readonly string[], timeoutMs: number): Promise<ProbeResult>;
  requestHostShutdown(baseUrl: string, token: string, timeoutMs: number): Promise<HostShutdownResult>;
}

export function createHaApi(deps: { fetch?: FetchLike; connect?: ConnectCheck; log?: Logger } = {}): HaApi {
  const log = deps.log ?? defaultLog;
  const rejected = new Set<string>();
  return {
    probe: (baseUrls, timeoutMs) => probeHa(baseUrls, { fetch: deps.fetch, timeoutMs }),
    async requestHostShutdown(baseUrl, token, timeoutMs) {
      if (rejected.has(token)) {
        return { outcome: "unauthorized", detail: "skipped: HA rejected this token before (not an admin token, or wrong)" };
      }
      const r = await requestHostShutdown({ baseUrl, token, timeoutMs, fetch: deps.fetch, connect: deps.connect });
      if (r.outcome === "unauthorized") {
        rejected.add(token);
        log.warn("Home Assistant refused ha.api_token: the token is not an admin token or is wrong; havm will not use it again until restarted", {
          status: r.status,
        });
      }
      return r;
    },
  };
}

/** node:net connect with a timeout; "No route to host" and friends come back as errors, never throw. */
export const tcpConnectCheck: ConnectCheck = (host, port, timeoutMs) =>
  new Promise((resolve) => {
    const socket = netConnect({ host, port });
    const done = (r: { ok: true } | { ok: false; error: string }) => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on("error", () => {});
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ ok: false, error: `no TCP answer within ${timeoutMs} ms` }), timeoutMs);
    socket.once("connect", () => done({ ok: true }));
    socket.once("error", (e) => done({ ok: false, error: errnoCode(e) ?? errorMessage(e) }));
  });

function describeFetchError(e: unknown, signal: AbortSignal): string {
  if (signal.aborted) {
    const reason = signal.reason;
    if (reason instanceof Error && reason.name !== "TimeoutError" && reason.name !== "AbortError") return reason.message;
    return "timed out";
  }
  const code = errnoCode(e);
  return code ? `${code}: ${errorMessage(e)}` : errorMessage(e);
}
