// Which .xz decoder the image pipeline uses. Two implementations of one streaming interface:
//   ffi         liblzma through bun:ffi (src/ffi/lzma.ts): in-process, multi-threaded, the fast path;
//   subprocess  a streaming `xz -dc` child (xz-subprocess.ts): for hosts where liblzma cannot be dlopened.
// selectXzDecoder() picks ffi when liblzma loads, else the subprocess when an xz tool is found, else fails with
// a hint to install xz. The environment variable HAVM_XZ_DECODER=ffi|subprocess forces one (tests and
// benchmarks use it; a forced decoder that is unavailable is an error, never a silent fallback).
import { XzDecoder, liblzmaInfo } from "../ffi/lzma.ts";
import { ExitCode, HavmError, errorMessage, inputError } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { SubprocessXzDecoder, findXzTool, type XzTool } from "./xz-subprocess.ts";

/** Receives decoded bytes in order. The chunk may be reused once the callback returns (copy to keep). */
export type XzOutput = (chunk: Uint8Array) => void;

/**
 * A streaming .xz decoder. Decoded bytes go to the XzOutput given at creation. Concatenated streams (and
 * stream padding) decode to their concatenation; anything else after a stream is an error.
 */
export interface XzStreamDecoder {
  /** "liblzma 5.4.1 (...)" or "xz 5.4.1 (/usr/bin/xz)", for logs. */
  readonly description: string;
  readonly multithreaded: boolean;
  /** Decode one compressed chunk. The caller may reuse the chunk once the promise resolved. Rejects with an
   * XzDecodeError for damaged data (possibly only at a later write, or at finish). */
  write(chunk: Uint8Array): Promise<void>;
  /** End of input. Resolves only when the data ended cleanly and every decoded byte was delivered. */
  finish(): Promise<void>;
  /** Release everything (joins liblzma's threads; kills the xz child and waits for it). Always call it, also
   * after finish() or a failure; idempotent. After it resolves, no more output is delivered. */
  close(): Promise<void>;
}

export type XzDecoderKind = "ffi" | "subprocess";

export interface XzStreamOptions {
  /** The thing decoded, for error messages. */
  name?: string;
  /** Aborting stops the decoder (the subprocess is killed). */
  signal?: AbortSignal;
}

export interface XzDecoderChoice {
  kind: XzDecoderKind;
  /** Why this one, for the log. */
  reason: string;
  create(onOutput: XzOutput, opts?: XzStreamOptions): XzStreamDecoder;
}

/** liblzma's synchronous decoder behind the async interface (no extra work per chunk besides a resolved promise). */
class FfiXzStreamDecoder implements XzStreamDecoder {
  readonly description: string;
  readonly multithreaded: boolean;
  private readonly decoder: XzDecoder;

  constructor(onOutput: XzOutput, opts: XzStreamOptions, info: { path: string; version: string }) {
    this.decoder = new XzDecoder(onOutput, { name: opts.name });
    this.multithreaded = this.decoder.multithreaded;
    this.description = `liblzma ${info.version} (${info.path})`;
  }

  write(chunk: Uint8Array): Promise<void> {
    try {
      this.decoder.feed(chunk);
      return RESOLVED;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  finish(): Promise<void> {
    try {
      this.decoder.finish();
      return RESOLVED;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  close(): Promise<void> {
    this.decoder.end();
    return RESOLVED;
  }
}
const RESOLVED = Promise.resolve();

function ffiChoice(info: { path: string; version: string; multithreaded: boolean }, reason: string): XzDecoderChoice {
  return { kind: "ffi", reason, create: (onOutput, opts = {}) => new FfiXzStreamDecoder(onOutput, opts, info) };
}

function subprocessChoice(tool: XzTool, reason: string): XzDecoderChoice {
  return { kind: "subprocess", reason, create: (onOutput, opts = {}) => new SubprocessXzDecoder(tool, onOutput, opts) };
}

export interface SelectXzDeps {
  env?: Record<string, string | undefined>;
  /** Loads liblzma or throws (default: the ffi loader). */
  loadLiblzma?: () => { path: string; version: string; multithreaded: boolean };
  /** Finds an xz tool (default: PATH and the usual places). */
  findXz?: (env: Record<string, string | undefined>) => XzTool | undefined;
}

const chosen = new Map<string, XzDecoderChoice>();

/**
 * The decoder to use. The choice is made (and logged at info) once per process and forced mode; tests that
 * inject deps get a fresh, unlogged choice.
 */
export function selectXzDecoder(deps: SelectXzDeps = {}): XzDecoderChoice {
  const env = deps.env ?? process.env;
  const forced = env.HAVM_XZ_DECODER?.trim() || undefined;
  if (forced !== undefined && forced !== "ffi" && forced !== "subprocess") {
    throw inputError(`HAVM_XZ_DECODER must be "ffi" or "subprocess", not "${forced}"`, "Unset HAVM_XZ_DECODER to let havm choose.");
  }
  const injected = deps.loadLiblzma !== undefined || deps.findXz !== undefined || deps.env !== undefined;
  const key = forced ?? "auto";
  const cached = injected ? undefined : chosen.get(key);
  if (cached) return cached;
  const choice = choose(forced, env, deps.loadLiblzma ?? liblzmaInfo, deps.findXz ?? findXzTool);
  if (!injected) {
    chosen.set(key, choice);
    log.info("xz decoder", { decoder: choice.kind, reason: choice.reason });
  }
  return choice;
}

function choose(
  forced: XzDecoderKind | undefined,
  env: Record<string, string | undefined>,
  loadLiblzma: NonNullable<SelectXzDeps["loadLiblzma"]>,
  findXz: NonNullable<SelectXzDeps["findXz"]>,
): XzDecoderChoice {
  const viaTool = (why: string): XzDecoderChoice | undefined => {
    const tool = findXz(env);
    return tool ? subprocessChoice(tool, `${why}; using xz ${tool.version} at ${tool.path}`) : undefined;
  };
  if (forced === "subprocess") {
    const c = viaTool("HAVM_XZ_DECODER=subprocess");
    if (c) return c;
    throw noDecoder("HAVM_XZ_DECODER=subprocess, but no xz tool was found");
  }
  let liblzmaProblem: string;
  try {
    const info = loadLiblzma();
    const how = forced === "ffi" ? "HAVM_XZ_DECODER=ffi" : "liblzma loaded";
    return ffiChoice(info, `${how}: liblzma ${info.version} at ${info.path}${info.multithreaded ? ", multi-threaded" : ", single-threaded"}`);
  } catch (e) {
    if (forced === "ffi") throw e;
    liblzmaProblem = errorMessage(e);
  }
  const c = viaTool(`liblzma unavailable (${liblzmaProblem})`);
  if (c) return c;
  throw noDecoder(`neither liblzma nor the xz tool is available (${liblzmaProblem})`);
}

function noDecoder(why: string): HavmError {
  return new HavmError(`cannot decode .xz images: ${why}`, {
    hint: "Install xz (Debian/Ubuntu: apt-get install xz-utils; macOS: brew install xz) and run havm again.",
    exitCode: ExitCode.unsupported,
    code: "xz.unavailable",
  });
}
