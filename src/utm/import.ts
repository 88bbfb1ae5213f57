// `havm import-utm`: copy (never move) a UTM VM into havm's VM dir and merge its settings into config.yml.
//
// Order matters for "an interrupted import leaves the previous state untouched": everything is read and
// decided first (bundle, plan, running VM, existing data, free space, the merged config text); then every
// new file is written under a temp name next to its final one; only when all of them are complete are
// they renamed into place. A crash or Ctrl-C before that point leaves only temp files (removed on
// Ctrl-C, and by the next import otherwise); the bundle itself is only ever read.
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statfsSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { arch as hostArch } from "node:os";
import type { HavmPaths } from "../config/paths.ts";
import { formatSize } from "../config/units.ts";
import { copyFileSparse } from "../disk/copy.ts";
import { HavmError, ExitCode, errnoCode, inputError } from "../util/errors.ts";
import { exists, fsyncDir, tempPathFor } from "../util/fs.ts";
import { log } from "../util/log.ts";
import { createProgress } from "../util/progress.ts";
import { acquireVmLock, isVmRunning } from "../supervise/lock.ts";
import { gatherFileFacts, readUtmBundle } from "./bundle.ts";
import { prepareConfigMerge, writeConfigText } from "./config-merge.ts";
import { conversionCommand } from "./format.ts";
import { bundleBackend, busyError, planImport, referencedFiles, type ImportPlan } from "./plan.ts";

export interface ImportUtmOptions {
  /** Path of the `Name.utm` bundle. */
  bundle: string;
  paths: HavmPaths;
  /** config.yml to merge into (the --config path, or paths.configFile). */
  configFile: string;
  /** Replace an existing havm VM (disk, NVRAM, MachineIdentifier). */
  force?: boolean;
  /** The host the VM will run on (decides which NVRAM/identifier can be reused). Default: this one. */
  host?: { platform: NodeJS.Platform; arch: string };
  /** Path of qemu-img; null = unavailable; undefined = look it up on PATH. */
  qemuImg?: string | null;
  /** Is a havm supervisor holding this lock file? Default: isVmRunning (src/supervise/lock.ts). */
  isRunning?: (lockPath: string) => boolean;
  onProgress?: (done: number, total: number) => void;
  /** Called once the plan is made, before anything is written (to show warnings before a long copy). */
  onPlan?: (plan: ImportPlan) => void;
}

export interface ImportResult {
  plan: ImportPlan;
  /** One line per thing written, for the summary. */
  imported: string[];
  notImported: string[];
  warnings: string[];
  diskMethod: "clone" | "sparse" | "qemu-img";
}

export async function importUtm(opts: ImportUtmOptions): Promise<ImportResult> {
  const vm = opts.paths.vm;
  const host = opts.host ?? { platform: process.platform, arch: hostArch() };

  // 1. Read and decide: nothing is written until all of this has passed.
  const bundle = readUtmBundle(opts.bundle);
  bundleBackend(bundle.plist, bundle.configPath); // refuse legacy configs before touching Data/
  const files = gatherFileFacts(bundle, referencedFiles(bundle.plist));
  const qemuImg = opts.qemuImg === undefined ? (Bun.which("qemu-img") ?? null) : opts.qemuImg;
  const plan = planImport({ bundlePath: bundle.path, configPath: bundle.configPath, plist: bundle.plist, files, host, canConvert: qemuImg !== null });

  if ((opts.isRunning ?? isVmRunning)(vm.lock)) throw busyError(vm.dir);
  opts.onPlan?.(plan);
  // Hold the run lock while importing so `havm run` cannot start on a half-imported VM.
  const lock = acquireVmLock(vm.lock);
  let diskMethod: ImportResult["diskMethod"];
  let applied: [string[], unknown][];
  try {
    ({ diskMethod, applied } = await copyAndCommit(opts, plan, qemuImg));
  } finally {
    lock.release();
  }

  const imported = [
    `disk: Data/${plan.disk.name} (${plan.disk.format}, ${formatSize(plan.disk.logicalSize)}) -> ${vm.disk} (${diskMethod === "qemu-img" ? "converted to raw with qemu-img" : diskMethod === "clone" ? "cloned" : "sparse copy"})`,
    ...(plan.nvram.action === "copy" ? [`EFI variables: Data/${plan.nvram.name} -> ${vm.nvram}`] : []),
    ...(plan.machineIdentifier.action === "write" ? [`machine identifier -> ${vm.machineIdentifier}`] : []),
    `settings -> ${opts.configFile}: ${applied.map(([p, v]) => `${p.join(".")}=${String(v)}`).join(", ")}`,
  ];
  return { plan, imported, notImported: plan.notImported, warnings: plan.warnings, diskMethod };
}

/** With the run lock held: refuse to replace a VM without --force, write temps (2), rename them into place (3). */
async function copyAndCommit(
  opts: ImportUtmOptions,
  plan: ImportPlan,
  qemuImg: string | null,
): Promise<{ diskMethod: ImportResult["diskMethod"]; applied: [string[], unknown][] }> {
  const vm = opts.paths.vm;
  const existing = [vm.disk, vm.nvram, vm.machineIdentifier].filter(exists);
  if (existing.length > 0 && !opts.force) {
    throw new HavmError(`havm already has a VM in ${vm.dir} (${existing.map((p) => p.slice(vm.dir.length + 1)).join(", ")}); importing would replace it`, {
      hint: "Add --force to replace it with the UTM VM (the UTM bundle is never changed). Copy that directory somewhere first if you want to keep the current VM.",
      exitCode: ExitCode.badInput,
      code: "utm.exists",
    });
  }
  const merged = prepareConfigMerge(opts.configFile, plan.config);
  mkdirSync(vm.dir, { recursive: true, mode: 0o700 });
  removeStaleTemps(vm.dir);
  checkFreeSpace(vm.dir, plan);

  // 2. Write everything under temp names.
  const temps: string[] = [];
  const tempFor = (p: string) => {
    const t = tempPathFor(p);
    temps.push(t);
    return t;
  };
  const cleanup = () => {
    for (const t of temps) rmSync(t, { force: true });
    // copyFileSparse writes to a temp of our temp (".<tmp name>.<pid>.<hex>.tmp") until it is complete.
    const nested = temps.map((t) => `.${basename(t)}.`);
    for (const name of readdirSync(vm.dir)) {
      if (nested.some((prefix) => name.startsWith(prefix))) rmSync(join(vm.dir, name), { force: true });
    }
  };
  const onSignal = (signal: NodeJS.Signals) => {
    cleanup();
    log.warn(`import interrupted by ${signal}; nothing was changed in ${vm.dir}`);
    process.exit(ExitCode.interrupted);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const diskTmp = tempFor(vm.disk);
  const nvramTmp = plan.nvram.action === "copy" ? tempFor(vm.nvram) : undefined;
  const midTmp = plan.machineIdentifier.action === "write" ? tempFor(vm.machineIdentifier) : undefined;
  let diskMethod: ImportResult["diskMethod"];
  const reporter = opts.onProgress ? undefined : createProgress(`copying ${plan.disk.name}`, { total: plan.disk.logicalSize });
  const progress = opts.onProgress ?? ((done: number, total: number) => reporter!.update(done, total));
  try {
    if (plan.disk.method === "qemu-img") {
      await convertWithQemuImg(qemuImg!, plan, diskTmp, progress);
      fsyncFile(diskTmp); // qemu-img does not: the rename below must not outrun the data
      diskMethod = "qemu-img";
    } else {
      diskMethod = (await copyFileSparse(plan.disk.path, diskTmp, { onProgress: progress })).method;
    }
    if (nvramTmp && plan.nvram.action === "copy") await copyFileSparse(plan.nvram.path, nvramTmp);
    if (midTmp && plan.machineIdentifier.action === "write") writeNewFile(midTmp, plan.machineIdentifier.bytes);
  } catch (e) {
    cleanup();
    throw writeError(e, vm.dir);
  } finally {
    reporter?.finish();
    process.removeListener("SIGINT", onSignal);
    process.removeListener("SIGTERM", onSignal);
  }

  // 3. Commit: rename into place; with --force, old files the import does not replace go away too
  //    (a fresh NVRAM/identity belongs with the imported disk, not the old VM's).
  try {
    if (nvramTmp) renameSync(nvramTmp, vm.nvram);
    else rmSync(vm.nvram, { force: true });
    if (midTmp) renameSync(midTmp, vm.machineIdentifier);
    else rmSync(vm.machineIdentifier, { force: true });
    renameSync(diskTmp, vm.disk);
    fsyncDir(vm.dir);
    writeConfigText(opts.configFile, merged.text, merged.mode);
  } catch (e) {
    cleanup();
    throw writeError(e, vm.dir);
  }
  return { diskMethod, applied: merged.applied };
}

/** Temp files of an import (or copy) that was killed: `.haos.img.<pid>.<hex>.tmp` and nested ones. */
const STALE_TEMP_RE = /^\.\.?(?:haos\.img|NVRAM|MachineIdentifier)\.(\d+)\.[0-9a-f]{8}\.tmp/;

function removeStaleTemps(dir: string): void {
  for (const name of readdirSync(dir)) {
    const m = STALE_TEMP_RE.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue; // its writer still runs
    } catch (e) {
      if (errnoCode(e) === "EPERM") continue;
    }
    log.debug("removing a temp file left by an interrupted import", { file: name });
    rmSync(join(dir, name), { force: true });
  }
}

function checkFreeSpace(dir: string, plan: ImportPlan): void {
  // A sparse copy needs about what the source has allocated; a qcow2 -> raw conversion about the same.
  const needed = plan.disk.allocated;
  let free: number;
  try {
    const st = statfsSync(dir);
    free = Number(st.bavail) * Number(st.bsize);
  } catch {
    return; // cannot tell: let the copy report ENOSPC if it comes to that
  }
  if (free < needed) {
    throw new HavmError(`not enough free space in ${dir}: the disk needs about ${formatSize(needed)}, ${formatSize(free)} is free`, {
      hint: "Free some space on that volume and run havm import-utm again.",
      exitCode: ExitCode.failure,
      code: "utm.space",
    });
  }
}

function fsyncFile(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function writeNewFile(path: string, bytes: Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, "wx", 0o644);
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function writeError(e: unknown, dir: string): unknown {
  if (e instanceof HavmError) return e;
  const code = errnoCode(e);
  if (code === "ENOSPC") {
    return new HavmError(`the volume holding ${dir} filled up during the import; nothing was changed`, {
      hint: "Free some space and run havm import-utm again.",
      code: "utm.space",
      cause: e,
    });
  }
  return new HavmError(`import failed: ${(e as Error).message}; nothing was changed in ${dir}`, {
    hint: code === "EACCES" || code === "EPERM" ? `Check the permissions of ${dir}.` : "Run again with -v for details.",
    code: "utm.write",
    cause: e,
  });
}

/** qcow2/VMDK/VHDX/VDI -> raw. qemu-img writes a sparse raw file (zero clusters stay holes). */
async function convertWithQemuImg(qemuImg: string, plan: ImportPlan, dst: string, onProgress: (done: number, total: number) => void): Promise<void> {
  log.info(`converting ${plan.disk.name} from ${plan.disk.format} to raw with qemu-img`);
  const proc = Bun.spawn([qemuImg, "convert", "-p", "-f", plan.disk.format, "-O", "raw", plan.disk.path, dst], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const total = plan.disk.logicalSize;
  // `-p` prints "    (12.34/100%)\r" on stdout.
  const reader = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) {
      const text = decoder.decode(chunk, { stream: true });
      const matches = [...text.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)];
      const last = matches.at(-1);
      if (last) onProgress(Math.round((Number(last[1]) / 100) * total), total);
    }
  })();
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text(), reader]);
  if (code !== 0) {
    throw inputError(
      `qemu-img could not convert ${plan.disk.path}: ${stderr.trim().split("\n").at(-1) ?? `exit code ${code}`}`,
      `The image may be damaged; check it with: qemu-img check ${plan.disk.path}. Or convert it yourself: ${conversionCommand(plan.disk.format, plan.disk.path, "disk.img")}`,
      "utm.convert",
    );
  }
}
