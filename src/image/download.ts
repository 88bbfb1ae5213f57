// One HTTP download as a stream of chunks: resumes with Range, retries transient failures with backoff,
// aborts a connection that stalls. The caller consumes each chunk (writes, hashes, decodes) in order.
import { closeSync, openSync, readSync } from "node:fs";
import { HavmError, errorMessage } from "../util/errors.ts";
import { log } from "../util/log.ts";

export interface DownloadOptions {
  url: string;
  fetch?: typeof fetch;
  signal?: AbortSignal;
  /** Bytes the caller already holds: ask for the rest (Range). */
  offset?: number;
  /** A connection that delivers nothing for this long is dropped and retried. */
  stallTimeoutMs?: number;
  /** Consecutive failed attempts (without any progress) before giving up. */
  maxRetries?: number;
  /** First backoff delay; doubles per failed attempt, capped at 30 s. */
  retryDelayMs?: number;
  /** Called once the size is known from the first response. */
  onTotal?(total: number | undefined): void;
  /** Each chunk in order; `offset` is where it starts in the whole file. */
  onChunk(chunk: Uint8Array, offset: number): void | Promise<void>;
  sleep?(ms: number): Promise<void>;
}

export interface DownloadResult {
  /** Total bytes of the file now held by the caller (offset + downloaded). */
  bytes: number;
  /** Bytes transferred by this call. */
  downloaded: number;
  total?: number;
  attempts: number;
}

class StallError extends Error {
  constructor(ms: number) {
    super(`no data for ${Math.round(ms / 1000)} s`);
    this.name = "StallError";
  }
}

class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    readonly url: string,
  ) {
    super(`HTTP ${status} from ${url}`);
  }
  get transient(): boolean {
    return this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

/** Wraps an error thrown by onChunk so it is passed through, never retried. */
class ConsumerFailure extends Error {
  constructor(readonly error: unknown) {
    super("consumer failed");
  }
}

/** The server would not resume (416 with a different size): the caller must start over. */
export class RangeNotSatisfiableError extends HavmError {
  constructor(url: string) {
    super(`the server cannot resume the download of ${url}`, { code: "download.range", hint: "Delete the partial download (havm cleanup) and try again." });
  }
}

/** Parse "bytes 100-199/1000" -> {start: 100, total: 1000}; "bytes * /1000" -> {total: 1000}. */
export function parseContentRange(header: string | null): { start?: number; total?: number } | undefined {
  if (!header) return undefined;
  const m = /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/.exec(header.trim());
  if (!m) return undefined;
  return { start: m[1] !== undefined ? Number(m[1]) : undefined, total: m[2] !== "*" ? Number(m[2]) : undefined };
}

/** setTimeout that an abort signal cuts short (a ^C during a 30 s backoff must not wait). */
function sleepUnlessAborted(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", done);
      clearTimeout(timer);
      if (signal?.aborted) reject(signal.reason);
      else resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

export async function download(opts: DownloadOptions): Promise<DownloadResult> {
  const fetchFn = opts.fetch ?? fetch;
  const stallMs = opts.stallTimeoutMs ?? 30_000;
  const maxRetries = opts.maxRetries ?? 5;
  const baseDelay = opts.retryDelayMs ?? 1000;
  const sleep = opts.sleep ?? ((ms: number) => sleepUnlessAborted(ms, opts.signal));
  const start = opts.offset ?? 0;
  let pos = start;
  let total: number | undefined;
  let totalReported = false;
  let failures = 0;
  let attempts = 0;

  for (;;) {
    opts.signal?.throwIfAborted();
    attempts++;
    const progressBefore = pos;
    const ctl = new AbortController();
    const onOuterAbort = () => ctl.abort(opts.signal?.reason);
    opts.signal?.addEventListener("abort", onOuterAbort, { once: true });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => ctl.abort(new StallError(stallMs)), stallMs);
    };
    try {
      arm();
      const headers: Record<string, string> = { "accept-encoding": "identity" };
      if (pos > 0) headers.range = `bytes=${pos}-`;
      const res = await fetchFn(opts.url, { headers, signal: ctl.signal, redirect: "follow" });
      let skip = 0;
      if (res.status === 416) {
        const cr = parseContentRange(res.headers.get("content-range"));
        await res.body?.cancel().catch(() => {});
        if (cr?.total !== undefined && cr.total === pos) {
          total = pos; // already complete
          if (!totalReported) opts.onTotal?.(total);
          return { bytes: pos, downloaded: pos - start, total, attempts };
        }
        throw new RangeNotSatisfiableError(opts.url);
      }
      if (!res.ok) {
        await res.body?.cancel().catch(() => {});
        throw new HttpStatusError(res.status, opts.url);
      }
      if (res.status === 206) {
        const cr = parseContentRange(res.headers.get("content-range"));
        if (cr?.start !== pos) {
          await res.body?.cancel().catch(() => {});
          throw new RangeNotSatisfiableError(opts.url);
        }
        total = cr.total;
      } else {
        // 200: the whole file again (the server ignored Range); drop what the caller already has.
        skip = pos;
        const len = res.headers.get("content-length");
        total = len !== null && /^\d+$/.test(len) ? Number(len) : undefined;
      }
      if (!totalReported) {
        totalReported = true;
        opts.onTotal?.(total);
      }
      if (!res.body) throw new Error("empty response body");
      const reader = res.body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          arm();
          let chunk = value;
          if (skip > 0) {
            const drop = Math.min(skip, chunk.length);
            skip -= drop;
            chunk = chunk.subarray(drop);
            if (chunk.length === 0) continue;
          }
          try {
            await opts.onChunk(chunk, pos);
          } catch (e) {
            throw new ConsumerFailure(e);
          }
          arm(); // time spent consuming is not the server's stall
          pos += chunk.length;
        }
      } finally {
        reader.releaseLock();
      }
      if (total !== undefined && pos < total) throw new Error(`connection closed after ${pos} of ${total} bytes`);
      return { bytes: pos, downloaded: pos - start, total, attempts };
    } catch (e) {
      if (e instanceof ConsumerFailure) throw e.error; // the caller's own failure (disk full, corrupt data): not a network problem
      if (opts.signal?.aborted) throw opts.signal.reason ?? e;
      const reason = ctl.signal.aborted && ctl.signal.reason instanceof StallError ? ctl.signal.reason : e;
      const transient = reason instanceof StallError || (reason instanceof HttpStatusError ? reason.transient : !(reason instanceof HavmError));
      if (pos > progressBefore) failures = 0; // progress was made: this is a fresh problem
      failures++;
      if (!transient || failures > maxRetries) {
        if (reason instanceof HavmError) throw reason;
        const status = reason instanceof HttpStatusError ? reason.status : undefined;
        throw new HavmError(`download of ${opts.url} failed: ${errorMessage(reason)}`, {
          hint:
            status === 404
              ? "That release or file does not exist. Check haos.version (or the channel) in the config."
              : "Check the network connection and try again; the part already downloaded is kept and resumed.",
          code: status === 404 ? "download.notfound" : "download.failed",
          cause: reason,
        });
      }
      const delay = Math.min(baseDelay * 2 ** (failures - 1), 30_000);
      log.warn("download interrupted, retrying", { url: opts.url, reason: errorMessage(reason), at: pos, retryIn: `${delay} ms`, attempt: failures });
      await sleep(delay);
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onOuterAbort);
    }
  }
}

/**
 * Feed a file's bytes to a consumer in order (a local .xz, or a partial download to re-hash and re-decode).
 * Reads into one reused 1 MiB buffer: the consumer must not keep the chunk after it returns.
 */
export async function streamFile(path: string, onChunk: (chunk: Uint8Array) => void | Promise<void>): Promise<number> {
  const fd = openSync(path, "r");
  const buf = new Uint8Array(1024 * 1024);
  let n = 0;
  try {
    for (let i = 1; ; i++) {
      const got = readSync(fd, buf, 0, buf.length, null);
      if (got <= 0) break;
      await onChunk(buf.subarray(0, got));
      n += got;
      if (i % 64 === 0) await new Promise((r) => setImmediate(r)); // let timers and signals run
    }
  } finally {
    closeSync(fd);
  }
  return n;
}
