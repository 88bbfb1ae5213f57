// liblzma through bun:ffi: the .xz decoder for HAOS images. Multi-threaded (lzma_stream_decoder_mt, liblzma
// >= 5.4) when the library has it, since HAOS images are multi-block; single-threaded otherwise.
// Opened by absolute path only (a bare name can load a library from the working directory).
import { dlopen, ptr, type FFIFunction, type Pointer } from "bun:ffi";
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { HavmError, ExitCode } from "../util/errors.ts";
import { log } from "../util/log.ts";

const BASE_SYMBOLS = {
  lzma_stream_decoder: { args: ["ptr", "u64", "u32"], returns: "i32" },
  lzma_code: { args: ["ptr", "i32"], returns: "i32" },
  lzma_end: { args: ["ptr"], returns: "void" },
  lzma_version_string: { args: [], returns: "cstring" },
} as const satisfies Record<string, FFIFunction>;

const MT_SYMBOLS = {
  ...BASE_SYMBOLS,
  lzma_stream_decoder_mt: { args: ["ptr", "ptr"], returns: "i32" },
} as const satisfies Record<string, FFIFunction>;

/** Where liblzma lives. macOS: /usr/lib/liblzma.5.dylib is in the dyld shared cache (no file on disk). */
export function liblzmaCandidates(platform = process.platform, arch = process.arch): string[] {
  if (platform === "darwin") {
    return ["/opt/homebrew/opt/xz/lib/liblzma.5.dylib", "/usr/local/opt/xz/lib/liblzma.5.dylib", "/opt/homebrew/lib/liblzma.5.dylib", "/usr/local/lib/liblzma.5.dylib", "/usr/lib/liblzma.5.dylib"];
  }
  const triplet = arch === "arm64" ? "aarch64-linux-gnu" : "x86_64-linux-gnu";
  return [
    `/usr/lib/${triplet}/liblzma.so.5`,
    `/lib/${triplet}/liblzma.so.5`,
    "/usr/lib64/liblzma.so.5",
    "/lib64/liblzma.so.5",
    "/usr/lib/liblzma.so.5",
    "/lib/liblzma.so.5",
  ];
}

// lzma_ret
export const LZMA_OK = 0;
export const LZMA_STREAM_END = 1;
const LZMA_RUN = 0;
const LZMA_FINISH = 3;
const LZMA_CONCATENATED = 0x08;

const RET_TEXT: Record<number, string> = {
  5: "out of memory (LZMA_MEM_ERROR)",
  6: "memory limit reached (LZMA_MEMLIMIT_ERROR)",
  7: "not an .xz file (LZMA_FORMAT_ERROR)",
  8: "unsupported .xz options (LZMA_OPTIONS_ERROR)",
  9: "the compressed data is corrupt (LZMA_DATA_ERROR)",
  10: "the compressed data is truncated (LZMA_BUF_ERROR)",
  11: "liblzma programming error (LZMA_PROG_ERROR)",
};

// struct lzma_stream (136 bytes): next_in@0 avail_in@8 total_in@16 next_out@24 avail_out@32 total_out@40
const STREAM_SIZE = 136;
// struct lzma_mt (128 bytes): flags@0 threads@4 block_size@8 timeout@16 preset@20 filters@24 check@32
// memlimit_threading@64 memlimit_stop@72
const MT_SIZE = 128;

interface Loaded {
  path: string;
  version: string;
  multithreaded: boolean;
  symbols: ReturnType<typeof dlopen<typeof MT_SYMBOLS>>["symbols"] | ReturnType<typeof dlopen<typeof BASE_SYMBOLS>>["symbols"];
}
let loaded: Loaded | undefined;

function load(): Loaded {
  if (loaded) return loaded;
  const override = process.env.HAVM_LIBLZMA;
  const candidates = override ? [override] : liblzmaCandidates();
  const tried: string[] = [];
  for (const path of candidates) {
    if (!path.startsWith("/")) continue;
    // The dyld shared cache has no file: let dlopen decide on macOS's /usr/lib.
    if (!existsSync(path) && !(process.platform === "darwin" && path.startsWith("/usr/lib/"))) continue;
    tried.push(path);
    for (const mt of [true, false]) {
      try {
        const lib = mt ? dlopen(path, MT_SYMBOLS) : dlopen(path, BASE_SYMBOLS);
        const version = String(lib.symbols.lzma_version_string());
        loaded = { path, version, multithreaded: mt, symbols: lib.symbols };
        log.debug("liblzma loaded", { path, version, multithreaded: mt });
        return loaded;
      } catch {
        // Missing symbol (old liblzma without the MT decoder) or not loadable: try the next way.
      }
    }
  }
  throw new HavmError("liblzma (the .xz library) could not be loaded", {
    hint: `Install xz (Debian: apt-get install liblzma5; macOS: brew install xz). Tried: ${tried.join(", ") || candidates.join(", ")}.`,
    exitCode: ExitCode.unsupported,
    code: "xz.liblzma",
  });
}

export function liblzmaInfo(): { path: string; version: string; multithreaded: boolean } {
  const l = load();
  return { path: l.path, version: l.version, multithreaded: l.multithreaded };
}

export class XzDecodeError extends HavmError {
  constructor(ret: number, where: string) {
    super(`cannot decode ${where}: ${RET_TEXT[ret] ?? `liblzma error ${ret}`}`, {
      hint: "The file is damaged or incomplete. Delete it (havm cleanup) and download it again.",
      code: ret === 10 ? "xz.truncated" : ret === 7 ? "xz.format" : "xz.corrupt",
    });
  }
}

export interface XzDecoderOptions {
  /** Decoder threads (MT decoder only); default: available cores, at most 8. */
  threads?: number;
  /** Output buffer size; 1 MiB by default. */
  outSize?: number;
  /**
   * Memory the MT decoder may use for its threads before it runs fewer of them. Each thread of an `xz -3`
   * file (12 MiB blocks) needs about 30 MiB; the default (at most 128 MiB) keeps havm under ~200 MB RSS.
   */
  memlimitThreading?: number;
  /** Force the single-threaded decoder (benchmarks). */
  singleThreaded?: boolean;
  /** Name of the thing decoded, for error messages. */
  name?: string;
}

/**
 * A streaming .xz decoder. feed() each compressed chunk, then finish(). Decoded bytes are handed to
 * onOutput as a view of an internal buffer that is reused after the callback returns (copy to keep).
 * Call end() always (it joins the decoder threads); it is idempotent.
 */
export class XzDecoder {
  readonly multithreaded: boolean;
  private readonly lib: Loaded;
  private readonly strm = new Uint8Array(new ArrayBuffer(STREAM_SIZE));
  private readonly view = new DataView(this.strm.buffer);
  private readonly strmPtr: Pointer;
  private readonly out: Uint8Array;
  private readonly outPtr: Pointer;
  private ended = false;
  private finished = false;
  private readonly name: string;

  constructor(private readonly onOutput: (chunk: Uint8Array) => void, opts: XzDecoderOptions = {}) {
    this.lib = load();
    this.name = opts.name ?? "the .xz file";
    this.strmPtr = ptr(this.strm);
    this.out = new Uint8Array(new ArrayBuffer(opts.outSize ?? 1024 * 1024));
    this.outPtr = ptr(this.out);
    const flags = LZMA_CONCATENATED;
    let ret: number;
    const syms = this.lib.symbols;
    if (this.lib.multithreaded && !opts.singleThreaded && "lzma_stream_decoder_mt" in syms) {
      const mt = new Uint8Array(new ArrayBuffer(MT_SIZE));
      const dv = new DataView(mt.buffer);
      const threads = Math.max(1, Math.min(opts.threads ?? availableParallelism(), 8));
      dv.setUint32(0, flags, true);
      dv.setUint32(4, threads, true);
      dv.setUint32(16, 0, true); // timeout: block until progress
      dv.setBigUint64(64, BigInt(opts.memlimitThreading ?? Math.min(48 * 1024 * 1024 * threads, 128 * 1024 * 1024)), true);
      dv.setBigUint64(72, 0xffffffffffffffffn, true); // memlimit_stop: never refuse
      ret = syms.lzma_stream_decoder_mt(this.strmPtr, mt);
      this.multithreaded = true;
    } else {
      ret = syms.lzma_stream_decoder(this.strmPtr, 0xffffffffffffffffn, flags);
      this.multithreaded = false;
    }
    if (ret !== LZMA_OK) {
      this.end();
      throw new XzDecodeError(ret, this.name);
    }
    this.resetOut();
  }

  private resetOut(): void {
    this.view.setBigUint64(24, BigInt(this.outPtr), true);
    this.view.setBigUint64(32, BigInt(this.out.length), true);
  }

  private flush(): void {
    const produced = this.out.length - Number(this.view.getBigUint64(32, true));
    if (produced > 0) this.onOutput(this.out.subarray(0, produced));
    this.resetOut();
  }

  /** Total decoded bytes so far. */
  get totalOut(): number {
    return Number(this.view.getBigUint64(40, true));
  }

  /** Total compressed bytes consumed so far. */
  get totalIn(): number {
    return Number(this.view.getBigUint64(16, true));
  }

  /** Decode one compressed chunk; returns true when the stream ended (further input is an error). */
  feed(chunk: Uint8Array): boolean {
    if (chunk.length === 0) return this.finished;
    if (this.finished) throw new XzDecodeError(9, this.name);
    return this.run(chunk, LZMA_RUN);
  }

  /** Signal the end of input; throws when the data is truncated or corrupt. */
  finish(): void {
    if (!this.finished) this.run(null, LZMA_FINISH);
    if (!this.finished) throw new XzDecodeError(10, this.name);
  }

  private run(chunk: Uint8Array | null, action: number): boolean {
    if (this.ended) throw new Error("XzDecoder used after end()");
    const syms = this.lib.symbols;
    if (chunk) {
      this.view.setBigUint64(0, BigInt(ptr(chunk)), true);
      this.view.setBigUint64(8, BigInt(chunk.length), true);
    } else {
      this.view.setBigUint64(0, 0n, true);
      this.view.setBigUint64(8, 0n, true);
    }
    for (;;) {
      const ret = syms.lzma_code(this.strmPtr, action);
      const availIn = Number(this.view.getBigUint64(8, true));
      const availOut = Number(this.view.getBigUint64(32, true));
      if (ret === LZMA_STREAM_END) {
        this.flush();
        this.finished = true;
        if (availIn > 0) throw new XzDecodeError(9, `${this.name} (data after the end of the stream)`);
        return true;
      }
      if (ret !== LZMA_OK) {
        this.flush();
        throw new XzDecodeError(ret, this.name);
      }
      if (availOut === 0) {
        this.flush();
        continue;
      }
      // Input used up: come back with more (RUN), or keep draining (FINISH) until STREAM_END or an error.
      if (availIn === 0 && action === LZMA_RUN) {
        // Keep the partly filled output buffer; the decoder continues writing after it.
        this.view.setBigUint64(0, 0n, true);
        return false;
      }
    }
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.lib.symbols.lzma_end(this.strmPtr);
  }
}
