// Typed wrapper over libhavm's portable filesystem part (shim/fs.c, prototypes in shim/havm_fs.h).
// FS_SYMBOLS must match havm_fs.h exactly: the ABI test compares them.
import { dlopen, type FFIFunction } from "bun:ffi";
import { constants } from "node:os";
import { nativeLibraryPath } from "./native.ts";
import { callChecked, cstr } from "./status.ts";

export const FS_SYMBOLS = {
  havm_fs_clone: { args: ["ptr", "ptr", "ptr", "u32"], returns: "i32" },
  havm_fs_copy_sparse_range: { args: ["i32", "i32", "u64", "u64", "ptr", "ptr", "u32"], returns: "i32" },
  havm_fs_free_bytes: { args: ["ptr", "ptr", "ptr", "u32"], returns: "i32" },
  havm_fs_allocated_bytes: { args: ["i32", "ptr", "ptr", "u32"], returns: "i32" },
} as const satisfies Record<string, FFIFunction>;

export const HAVM_FS_OK = 0;
export const HAVM_FS_UNSUPPORTED = 1;

const ERR_LEN = 1024;

type FsLib = ReturnType<typeof dlopen<typeof FS_SYMBOLS>>["symbols"];
let lib: FsLib | undefined;

function symbols(): FsLib {
  lib ??= dlopen(nativeLibraryPath(), FS_SYMBOLS).symbols;
  return lib;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** An Error shaped like Node's system errors (code "ENOSPC", errno), so callers can use errnoCode(). */
export class NativeFsError extends Error {
  readonly code: string;
  readonly errno: number;
  constructor(status: number, message: string) {
    const errno = -status;
    const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
    super(message || `native filesystem call failed (${code})`);
    this.name = "NativeFsError";
    this.code = code;
    this.errno = errno;
  }
}

const fsError = (status: number, message: string) => new NativeFsError(status, message);
const checked = (f: (err: Buffer, len: number) => number) => callChecked(f, fsError, ERR_LEN);

/** Clone src to the new file dst (copy-on-write). false when the filesystem cannot clone (nothing created). */
export function cloneFile(src: string, dst: string): boolean {
  return checked((err, len) => symbols().havm_fs_clone(cstr(src), cstr(dst), err, len)) === HAVM_FS_OK;
}

/** Copy a range sparsely (holes and zero blocks skipped); dst must already have its final size. Returns data bytes written. */
export function copySparseRange(srcFd: number, dstFd: number, offset: number, length: number): number {
  const out = new BigUint64Array(1);
  checked((err, len) => symbols().havm_fs_copy_sparse_range(srcFd, dstFd, offset, length, out, err, len));
  return Number(out[0]);
}

/** Bytes free for an unprivileged user on the filesystem holding path. */
export function freeBytes(path: string): number {
  const out = new BigUint64Array(1);
  checked((err, len) => symbols().havm_fs_free_bytes(cstr(path), out, err, len));
  return Number(out[0]);
}

/** Bytes a file really occupies on disk (st_blocks * 512). */
export function allocatedBytes(fd: number): number {
  const out = new BigUint64Array(1);
  checked((err, len) => symbols().havm_fs_allocated_bytes(fd, out, err, len));
  return Number(out[0]);
}
