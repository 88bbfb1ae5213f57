// Copy a (large, mostly empty) disk image: a copy-on-write clone where the filesystem can (APFS, btrfs, XFS),
// else a sparse-aware copy that writes only data (holes and all-zero blocks stay holes). Either way the copy
// is made under a temp name next to dst and moved into place only when complete, so a crash never leaves a
// half-copied dst.
import { closeSync, fstatSync, fsyncSync, ftruncateSync, linkSync, openSync, renameSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { cloneFile, copySparseRange } from "../ffi/fsops.ts";
import { HavmError, errnoCode } from "../util/errors.ts";
import { exists, fsyncDir, tempPathFor } from "../util/fs.ts";
import { log } from "../util/log.ts";

export interface CopyOptions {
  onProgress?(done: number, total: number): void;
  /** Replace an existing dst (atomically). Without it an existing dst is an error and is left alone. */
  overwrite?: boolean;
}

/** How much one native call copies before control returns to JS (progress, event loop). */
const SLICE = 64 * 1024 * 1024;

export async function copyFileSparse(src: string, dst: string, opts: CopyOptions = {}): Promise<{ method: "clone" | "sparse" }> {
  if (!opts.overwrite && exists(dst)) {
    throw new HavmError(`${dst} already exists; havm will not replace it`, {
      hint: "Move it away first if you really want a fresh copy.",
      code: "copy.exists",
    });
  }
  const total = fstatOf(src);
  const tmp = tempPathFor(dst);
  try {
    let method: "clone" | "sparse";
    if (cloneFile(src, tmp)) {
      method = "clone";
      opts.onProgress?.(total, total);
    } else {
      method = "sparse";
      await sparseCopy(src, tmp, total, opts.onProgress);
    }
    place(tmp, dst, opts.overwrite === true);
    fsyncDir(dirname(dst));
    log.debug("copied disk image", { src, dst, method, bytes: total });
    return { method };
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

function fstatOf(path: string): number {
  const fd = openSync(path, "r");
  try {
    return fstatSync(fd).size;
  } finally {
    closeSync(fd);
  }
}

async function sparseCopy(src: string, tmp: string, total: number, onProgress?: (done: number, total: number) => void): Promise<void> {
  const srcFd = openSync(src, "r");
  let dstFd: number | undefined;
  try {
    dstFd = openSync(tmp, "wx", fstatSync(srcFd).mode & 0o777);
    ftruncateSync(dstFd, total);
    for (let off = 0; off < total; off += SLICE) {
      copySparseRange(srcFd, dstFd, off, Math.min(SLICE, total - off));
      onProgress?.(Math.min(off + SLICE, total), total);
      // Let timers, signals and progress output run between slices.
      await new Promise((r) => setImmediate(r));
    }
    if (total === 0) onProgress?.(0, 0);
    fsyncSync(dstFd);
  } finally {
    if (dstFd !== undefined) closeSync(dstFd);
    closeSync(srcFd);
  }
}

/** Move the finished temp file to dst. Without overwrite, link() makes "create only if absent" atomic. */
function place(tmp: string, dst: string, overwrite: boolean): void {
  if (overwrite) {
    renameSync(tmp, dst);
    return;
  }
  try {
    linkSync(tmp, dst);
  } catch (e) {
    const code = errnoCode(e);
    if (code === "EEXIST") {
      throw new HavmError(`${dst} appeared while it was being copied; havm will not replace it`, {
        hint: "Another process created it. Check what else is using this directory.",
        code: "copy.exists",
      });
    }
    // Filesystems without hard links: check, then rename (a tiny race, but never a partial file).
    if (exists(dst)) throw e;
    renameSync(tmp, dst);
    return;
  }
  rmSync(tmp, { force: true });
}
