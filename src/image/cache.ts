// The download cache (paths.cacheDir): release .img.xz files, decoded .img files, and work in progress.
//
// How "a running havm is writing this file" is detected, portably and without locks that a kill -9 could
// leave behind: every file being written carries its writer's pid.
//  - decoded images and copies are written to temp names `.<name>.<pid>.<random>.tmp` (util/fs tempPathFor);
//  - a resumable download `<asset>.part` keeps a stable name (so any later run can resume it) and its writer
//    records its pid in `<asset>.part.pid` for as long as it writes.
// A file counts as busy when that pid is alive (kill(pid, 0) succeeds or fails with EPERM). A dead pid means a
// crashed run: its temp files are garbage, its .part is resumable.
import { closeSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { basename, join } from "node:path";
import { HavmError, ExitCode, errnoCode } from "../util/errors.ts";
import { log } from "../util/log.ts";

export const PART_SUFFIX = ".part";
export const OWNER_SUFFIX = ".part.pid";
/** Sidecar written next to a verified download: the sha256 it matched. */
export const VERIFIED_SUFFIX = ".sha256";

const TEMP_RE = /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/;

export function isPidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoCode(e) === "EPERM";
  }
}

/** The writer pid encoded in a temp file name, if it is one. */
export function tempOwnerPid(fileName: string): number | undefined {
  const m = TEMP_RE.exec(fileName);
  return m ? Number(m[1]) : undefined;
}

/** The pid recorded as writing a .part file, if any. */
export function partOwnerPid(partPath: string): number | undefined {
  try {
    const n = Number(readFileSync(partPath.slice(0, -PART_SUFFIX.length) + OWNER_SUFFIX, "utf8").trim());
    return Number.isSafeInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Record this process as the writer of `<final>.part`. Throws "busy" when another live havm holds it.
 * Returns a release function that removes the record.
 */
export function claimPartial(finalPath: string): () => void {
  const owner = finalPath + OWNER_SUFFIX;
  const other = partOwnerPid(finalPath + PART_SUFFIX);
  if (other !== undefined && other !== process.pid && isPidAlive(other)) {
    throw new HavmError(`another havm (pid ${other}) is downloading ${basename(finalPath)}`, {
      hint: "Wait for it to finish, or stop it first.",
      exitCode: ExitCode.busy,
      code: "image.busy",
    });
  }
  rmSync(owner, { force: true });
  const fd = openSync(owner, "wx", 0o644);
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
  return () => {
    if (partOwnerPid(finalPath + PART_SUFFIX) === process.pid) rmSync(owner, { force: true });
  };
}

/** Delete temp files left by dead writers in dir (crashed or killed runs). Returns the names removed. */
export function removeStaleTemps(dir: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const pid = tempOwnerPid(name);
    if (pid !== undefined && pid !== process.pid && !isPidAlive(pid)) {
      rmSync(join(dir, name), { force: true });
      removed.push(name);
    }
  }
  return removed;
}

export interface CleanupResult {
  freedBytes: number;
  removed: string[];
  /** Files left alone because a running havm is writing them. */
  busy: Array<{ file: string; pid: number }>;
}

/** Empty the download cache, except files a live havm is writing. Never touches anything outside cacheDir. */
export function cleanupCache(cacheDir: string): CleanupResult {
  const result: CleanupResult = { freedBytes: 0, removed: [], busy: [] };
  let names: string[];
  try {
    names = readdirSync(cacheDir);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return result;
    throw e;
  }
  const busyParts = new Set<string>();
  for (const name of names) {
    if (!name.endsWith(PART_SUFFIX)) continue;
    const pid = partOwnerPid(join(cacheDir, name));
    if (pid !== undefined && pid !== process.pid && isPidAlive(pid)) {
      busyParts.add(name);
      busyParts.add(name.slice(0, -PART_SUFFIX.length) + OWNER_SUFFIX);
      result.busy.push({ file: name, pid });
    }
  }
  for (const name of names) {
    const path = join(cacheDir, name);
    if (busyParts.has(name)) continue;
    const tempPid = tempOwnerPid(name);
    if (tempPid !== undefined && tempPid !== process.pid && isPidAlive(tempPid)) {
      result.busy.push({ file: name, pid: tempPid });
      continue;
    }
    let st;
    try {
      st = statSync(path);
    } catch {
      continue;
    }
    if (!st.isFile()) continue; // the cache holds only files; leave anything else to the user
    rmSync(path, { force: true });
    // Sparse files free what they occupy, not their apparent size.
    result.freedBytes += st.blocks * 512;
    result.removed.push(name);
  }
  if (result.busy.length > 0) log.warn("left files a running havm is writing", { files: result.busy.map((b) => `${b.file} (pid ${b.pid})`) });
  return result;
}
