// The persistent disk (vm/haos.img): created once from the decoded release image, then only ever grown.
// Never replaced, never shrunk. Growth only enlarges the raw file (sparse); HAOS grows its data partition
// itself at the next boot (hassos-expand).
import { closeSync, fsyncSync, ftruncateSync, linkSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { formatSize } from "../config/units.ts";
import { freeBytes } from "../ffi/fsops.ts";
import { HavmError, ExitCode, errnoCode, inputError } from "../util/errors.ts";
import { exists, fsyncDir, tempPathFor } from "../util/fs.ts";
import { log } from "../util/log.ts";
import { isPidAlive, tempOwnerPid } from "../image/cache.ts";
import { createProgress } from "../util/progress.ts";
import { copyFileSparse } from "./copy.ts";

export interface PersistentDiskOptions {
  /** The decoded HAOS image; only read when the disk does not exist yet. */
  imagePath: string | undefined;
  diskPath: string;
  diskSizeBytes: number;
  onProgress?(done: number, total: number): void;
}

export interface PersistentDiskResult {
  created: boolean;
  grownFrom?: number;
  sizeBytes: number;
}

/** Room kept free beyond the copy itself, so the host does not end up at 0 bytes. */
const FREE_SPACE_MARGIN = 64 * 1024 * 1024;

export async function preparePersistentDisk(opts: PersistentDiskOptions): Promise<PersistentDiskResult> {
  const { imagePath, diskPath, diskSizeBytes } = opts;
  const dir = dirname(diskPath);
  mkdirSync(dir, { recursive: true });
  removeStaleDiskTemps(diskPath);

  if (exists(diskPath)) {
    const current = statSync(diskPath).size;
    refuseShrink(diskSizeBytes, current, "the current disk");
    if (diskSizeBytes === current) return { created: false, sizeBytes: current };
    grow(diskPath, diskSizeBytes);
    log.info("grew the disk", { disk: diskPath, from: formatSize(current), to: formatSize(diskSizeBytes) });
    return { created: false, grownFrom: current, sizeBytes: diskSizeBytes };
  }

  if (!imagePath) throw new Error(`preparePersistentDisk: ${diskPath} does not exist and no image was given`);
  const image = statSync(imagePath);
  refuseShrink(diskSizeBytes, image.size, "the Home Assistant OS image");
  // A clone costs nothing, but whether one is possible shows only when it is tried: ask for room for a full
  // (sparse) copy, which is what the image really occupies.
  const need = image.blocks * 512 + FREE_SPACE_MARGIN;
  const free = freeBytes(dir);
  if (free < need) throw noSpace(dir, need, free);

  const tmp = tempPathFor(diskPath);
  try {
    const progress = opts.onProgress ? undefined : createProgress("Creating the disk", { total: image.size });
    const { method } = await copyFileSparse(imagePath, tmp, { onProgress: opts.onProgress ?? ((d, t) => progress?.update(d, t)) });
    progress?.finish();
    if (diskSizeBytes > image.size) grow(tmp, diskSizeBytes);
    placeWithoutReplacing(tmp, diskPath);
    fsyncDir(dir);
    log.info("created the disk", { disk: diskPath, size: formatSize(diskSizeBytes), method });
    return { created: true, sizeBytes: Math.max(diskSizeBytes, image.size) };
  } catch (e) {
    rmSync(tmp, { force: true });
    if (errnoCode(e) === "ENOSPC") throw noSpace(dir, need, safeFree(dir));
    if (errnoCode(e) === "EEXIST") {
      throw new HavmError(`${diskPath} appeared while havm was creating it; havm will not replace it`, {
        hint: "Another havm may be preparing the same VM. Run havm again.",
        exitCode: ExitCode.busy,
        code: "disk.exists",
      });
    }
    throw e;
  }
}

/** link() fails if a disk appeared meanwhile: never replace one. Filesystems without hard links: check, rename. */
function placeWithoutReplacing(tmp: string, diskPath: string): void {
  try {
    linkSync(tmp, diskPath);
  } catch (e) {
    if (errnoCode(e) === "EEXIST" || exists(diskPath)) throw e;
    renameSync(tmp, diskPath);
    return;
  }
  rmSync(tmp, { force: true });
}

function refuseShrink(wanted: number, current: number, what: string): void {
  if (wanted < current) {
    throw inputError(
      `vm.disk_size (${formatSize(wanted)}) is smaller than ${what} (${formatSize(current)}); havm never shrinks a disk`,
      `Set vm.disk_size to at least ${formatSize(current)} in the config.`,
      "disk.shrink",
    );
  }
}

function grow(path: string, size: number): void {
  const fd = openSync(path, "r+");
  try {
    ftruncateSync(fd, size); // sparse: the new tail is a hole
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function safeFree(dir: string): number | undefined {
  try {
    return freeBytes(dir);
  } catch {
    return undefined;
  }
}

function noSpace(dir: string, need: number, free: number | undefined): HavmError {
  return new HavmError(
    `not enough free space in ${dir} for the disk: it needs ${formatSize(need)}, ${free === undefined ? "less" : formatSize(free)} is free`,
    { hint: "Free some space (havm cleanup removes old downloads) and run havm again.", exitCode: ExitCode.failure, code: "disk.nospace" },
  );
}

/** Temp copies of this disk left by a killed run (their writer's pid is dead). */
function removeStaleDiskTemps(diskPath: string): void {
  const dir = dirname(diskPath);
  // copyFileSparse's own temp sits next to ours: ".<our temp name>.<pid>.<random>.tmp".
  const marker = `.${basename(diskPath)}.`;
  for (const name of readdirSync(dir)) {
    if (!name.includes(marker)) continue;
    const pid = tempOwnerPid(name);
    if (pid !== undefined && pid !== process.pid && !isPidAlive(pid)) rmSync(join(dir, name), { force: true });
  }
}
