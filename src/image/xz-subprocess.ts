// The portable .xz fallback: a streaming `xz -dc` child process, for hosts where liblzma cannot be dlopened
// (a macOS without /usr/lib/liblzma.5.dylib and no Homebrew xz library). Compressed bytes go to its stdin
// with backpressure (each write waits until the pipe took it); its stdout goes to the caller's output
// callback (the same sparse writer the liblzma path uses). Same guarantees as the liblzma decoder:
// concatenated streams and stream padding are accepted, anything else after a stream is an error, and
// finish() resolves only after xz exited 0 with all of its output delivered.
import { existsSync, statSync } from "node:fs";
import { HavmError } from "../util/errors.ts";
import { XzDecodeError } from "../ffi/lzma.ts";
import type { XzOutput, XzStreamDecoder } from "./xz-decoder.ts";

export interface XzTool {
  path: string;
  /** "5.4.1" */
  version: string;
  /** xz >= 5.2 understands --threads (multi-threaded decoding of multi-block files since 5.4). */
  threads: boolean;
}

/** Where to look for xz, in order: PATH (absolute entries only), then the usual install locations. */
export function xzToolCandidates(env: Record<string, string | undefined> = process.env): string[] {
  const onPath = env.PATH ? Bun.which("xz", { PATH: env.PATH }) : null;
  const all = [onPath, "/opt/homebrew/bin/xz", "/usr/local/bin/xz", "/usr/bin/xz", "/bin/xz"];
  // A relative PATH entry would run whatever "xz" sits in the working directory.
  return [...new Set(all.filter((p): p is string => typeof p === "string" && p.startsWith("/")))];
}

/** The environment xz runs in: English messages (we map them to error codes), no XZ_OPT/XZ_DEFAULTS
 * (a user's `XZ_OPT=--single-stream` would silently drop concatenated streams). */
function childEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== "XZ_OPT" && k !== "XZ_DEFAULTS") env[k] = v;
  env.LC_ALL = "C";
  return env;
}

/** The first candidate that is an executable XZ Utils `xz`; undefined when there is none. */
export function findXzTool(env: Record<string, string | undefined> = process.env): XzTool | undefined {
  for (const path of xzToolCandidates(env)) {
    try {
      if (!existsSync(path) || !statSync(path).isFile()) continue;
      const r = Bun.spawnSync([path, "--version"], { stdout: "pipe", stderr: "pipe", env: childEnv() });
      const m = /xz \(XZ Utils\) (\d+)\.(\d+)\.(\d+)/.exec(r.stdout.toString());
      if (r.exitCode !== 0 || !m) continue;
      const [major, minor] = [Number(m[1]), Number(m[2])];
      return { path, version: `${m[1]}.${m[2]}.${m[3]}`, threads: major > 5 || (major === 5 && minor >= 2) };
    } catch {
      // not executable: try the next one
    }
  }
  return undefined;
}

/** The xz command line: decompress to stdout, .xz format only (as lzma_stream_decoder), all cores. */
export function xzArgs(tool: XzTool): string[] {
  return [tool.path, "--decompress", "--stdout", "--format=xz", ...(tool.threads ? ["--threads=0"] : [])];
}

const OUTPUT_BATCH = 1024 * 1024;

// lzma_ret values, so failures carry the same codes (xz.corrupt, xz.truncated, xz.format) as the ffi path.
const LZMA_MEM_ERROR = 5;
const LZMA_MEMLIMIT_ERROR = 6;
const LZMA_FORMAT_ERROR = 7;
const LZMA_OPTIONS_ERROR = 8;
const LZMA_DATA_ERROR = 9;
const LZMA_BUF_ERROR = 10;

/** xz's messages (LC_ALL=C) -> lzma_ret. Resource problems are not corrupt data. */
const STDERR_TO_RET: [RegExp, number][] = [
  [/Compressed data is corrupt/i, LZMA_DATA_ERROR],
  [/Unexpected end of input/i, LZMA_BUF_ERROR],
  [/File format not recognized/i, LZMA_FORMAT_ERROR],
  [/Unsupported options/i, LZMA_OPTIONS_ERROR],
  [/Memory usage limit reached/i, LZMA_MEMLIMIT_ERROR],
  [/Cannot allocate memory/i, LZMA_MEM_ERROR],
];

/**
 * The error for an xz that did not exit 0. Damaged input is an XzDecodeError (the caller deletes a downloaded
 * file for it); anything else (a signal, no memory, a warning) is an xz failure that says what xz said.
 */
export function xzExitError(exitCode: number | null, signal: string | number | null, stderr: string, name: string): HavmError {
  const said = stderr
    .split("\n")
    .map((l) => l.replace(/^xz: (\(stdin\): )?/, "").trim())
    .filter(Boolean)
    .join("; ");
  if (exitCode === 1) {
    const ret = STDERR_TO_RET.find(([re]) => re.test(said))?.[1];
    if (ret !== undefined && ret !== LZMA_MEM_ERROR && ret !== LZMA_MEMLIMIT_ERROR) {
      const e = new XzDecodeError(ret, name);
      e.message += ` (xz: ${said})`;
      return e;
    }
  }
  const how = signal ? `was killed by ${signal}` : exitCode === 2 ? "warned (exit status 2)" : `exited with status ${exitCode}`;
  return new HavmError(`cannot decode ${name}: xz ${how}${said ? `: ${said}` : ""}`, {
    hint: "Check free memory and try again. If it repeats, install liblzma (Debian: liblzma5; macOS: brew install xz) so havm decodes in-process.",
    code: "xz.failed",
  });
}

export interface SubprocessXzOptions {
  name?: string;
  /** Aborting kills xz; pending and later calls reject with the signal's reason. */
  signal?: AbortSignal;
}

/** A running `xz -dc`. See XzStreamDecoder for the contract. */
export class SubprocessXzDecoder implements XzStreamDecoder {
  readonly multithreaded: boolean;
  readonly description: string;
  readonly pid: number;
  private readonly proc: Bun.Subprocess<"pipe", "pipe", "pipe">;
  private readonly name: string;
  private readonly pumped: Promise<void>;
  private readonly stderrText: Promise<string>;
  /** The first failure: the output callback threw, or an abort. Everything after rethrows it. */
  private failure: unknown;
  private closing = false;
  private finishing: Promise<void> | undefined;
  private readonly onAbort: () => void;

  constructor(
    tool: XzTool,
    private readonly onOutput: XzOutput,
    private readonly opts: SubprocessXzOptions = {},
  ) {
    opts.signal?.throwIfAborted();
    this.name = opts.name ?? "the .xz file";
    this.multithreaded = tool.threads;
    this.description = `xz ${tool.version} (${tool.path})`;
    this.proc = Bun.spawn(xzArgs(tool), { stdin: "pipe", stdout: "pipe", stderr: "pipe", env: childEnv() });
    this.pid = this.proc.pid;
    this.stderrText = new Response(this.proc.stderr).text().catch(() => "");
    this.pumped = this.pump();
    this.onAbort = () => this.fail(opts.signal?.reason ?? new Error("aborted"));
    opts.signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  /**
   * xz's stdout -> onOutput, until EOF. A throwing onOutput (disk full) stops xz. Pipe reads (~64 KiB, at any
   * offset) are gathered into 1 MiB batches, so the sparse writer sees block-aligned data in big writes.
   */
  private async pump(): Promise<void> {
    const batch = new Uint8Array(OUTPUT_BATCH);
    let held = 0;
    try {
      for await (const chunk of this.proc.stdout) {
        if (this.closing || this.failure !== undefined) return;
        let at = 0;
        while (at < chunk.length) {
          const n = Math.min(chunk.length - at, batch.length - held);
          batch.set(chunk.subarray(at, at + n), held);
          held += n;
          at += n;
          if (held === batch.length) {
            this.onOutput(batch);
            held = 0;
          }
        }
      }
      if (held > 0 && !this.closing && this.failure === undefined) this.onOutput(batch.subarray(0, held));
    } catch (e) {
      this.fail(e);
    }
  }

  private fail(e: unknown): void {
    if (this.failure === undefined) this.failure = e;
    this.kill();
  }

  private kill(): void {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
  }

  /** Why xz is no longer taking input: our own failure, else xz's exit (it stops reading when the data is bad). */
  private async broken(cause: unknown): Promise<unknown> {
    if (this.failure !== undefined) return this.failure;
    const code = await this.proc.exited;
    await this.pumped;
    if (this.failure !== undefined) return this.failure;
    if (code !== 0 || this.proc.signalCode) return xzExitError(this.proc.exitCode, this.proc.signalCode, await this.stderrText, this.name);
    // xz exited 0 before all input was written: it found the end of the data early (cannot happen with
    // concatenated decoding, which reads to EOF), so refuse rather than drop the rest.
    return new XzDecodeError(LZMA_DATA_ERROR, `${this.name} (data after the end of the stream; ${String(cause)})`);
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.closing) throw new Error("xz decoder used after close()");
    if (this.failure !== undefined) throw this.failure;
    if (chunk.length === 0) return;
    try {
      // A number: all of it went into the pipe. A promise: resolves once the pipe took the rest (backpressure).
      const n = this.proc.stdin.write(chunk);
      if (typeof n !== "number") await n;
    } catch (e) {
      throw await this.broken(e); // EPIPE: xz stopped reading
    }
    if (this.failure !== undefined) throw this.failure;
  }

  finish(): Promise<void> {
    this.finishing ??= this.doFinish();
    return this.finishing;
  }

  private async doFinish(): Promise<void> {
    if (this.failure !== undefined) throw this.failure;
    try {
      await this.proc.stdin.end();
    } catch (e) {
      throw await this.broken(e);
    }
    const code = await this.proc.exited;
    await this.pumped;
    if (this.failure !== undefined) throw this.failure;
    if (code !== 0 || this.proc.signalCode) throw xzExitError(this.proc.exitCode, this.proc.signalCode, await this.stderrText, this.name);
  }

  /** Kills xz if it still runs and waits until it is gone and its output is no longer delivered. Idempotent. */
  async close(): Promise<void> {
    this.closing = true;
    this.opts.signal?.removeEventListener("abort", this.onAbort);
    this.kill();
    try {
      await this.proc.stdin.end();
    } catch {
      // already closed, or broken because xz is gone: either way nothing more goes in
    }
    await this.proc.exited;
    await this.pumped;
    await this.stderrText;
  }
}
