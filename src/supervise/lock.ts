// The run lock (tart-style): the file exists while `havm run` owns the VM dir, and says who owns it.
// Bun has no flock(), so liveness is proven by the owner's pid AND its process start time (pid reuse
// defeated), and a lock left by a killed process is recovered automatically.
//
// Creating: the JSON is written to a temp file first and hard-linked to the lock path. link(2) fails with
// EEXIST when the lock exists, like O_EXCL, but a reader can never see a half-written lock. (Filesystems
// without hard links fall back to O_EXCL + write; a corrupt lock younger than a few seconds is then treated
// as "being written", not as stale.)
// Taking over a stale lock: only the holder of a small guard file (`<lock>.takeover`, O_EXCL) may delete a
// stale lock, and only after re-reading it unchanged under the guard. Creation itself stays the atomic link,
// so two starters racing for a stale lock end with exactly one owner: the loser sees the winner's live lock.
// A guard left by a process killed inside that microsecond window is removed once it is 10 s old.
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, rmSync, statSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { hostname } from "node:os";
import { HavmError, ExitCode, errnoCode } from "../util/errors.ts";
import { tempPathFor, writeFileAtomic } from "../util/fs.ts";
import { log } from "../util/log.ts";

export interface LockInfo {
  pid: number;
  /** ISO time the lock was taken. */
  startedAt: string;
  /** The owner's process start time (see processStartTime); absent when it could not be read. */
  procStart?: string;
  hostname: string;
  /** The VM process (qemu) the owner started, for orphan cleanup. */
  childPid?: number;
  childProcStart?: string;
}

export interface VmLock {
  path: string;
  readonly info: LockInfo;
  update(fields: { childPid?: number; childProcStart?: string }): void;
  release(): void;
}

export type LockState =
  | { state: "free" }
  | { state: "held"; info: LockInfo }
  | { state: "stale"; info?: LockInfo; reason: string };

const GUARD_STALE_MS = 10_000;
const YOUNG_CORRUPT_MS = 3_000;
const ACQUIRE_DEADLINE_MS = 5_000;

// ---------------------------------------------------------------------------------------------------------
// Processes

let bootId: string | undefined;
function linuxBootId(): string {
  if (bootId === undefined) {
    try {
      bootId = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    } catch {
      bootId = "";
    }
  }
  return bootId;
}

export interface ProcInfo {
  start: string;
  zombie: boolean;
}

function procInfo(pid: number): ProcInfo | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  if (process.platform !== "linux") return psProcessInfo(pid);
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ... starttime(22nd field) ...": comm may contain spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = fields[19];
  if (ticks === undefined) return undefined;
  return { start: `${linuxBootId()}:${ticks}`, zombie: fields[0] === "Z" };
}

/**
 * Start time and zombie state from ps(1) (macOS; also works with procps on Linux, which the tests use).
 * Separate -o flags: in `-o stat=,lstart=` the text after `=` would be a header, not a second column.
 * TZ=UTC and LC_ALL=C keep the lstart text independent of the caller's locale and time zone.
 */
export function psProcessInfo(pid: number): ProcInfo | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const r = Bun.spawnSync(["ps", "-o", "stat=", "-o", "lstart=", "-p", String(pid)], {
    env: { ...process.env, LC_ALL: "C", TZ: "UTC" },
    stdout: "pipe",
    stderr: "ignore",
  });
  const m = /^\s*(\S+)\s+(\S.*?)\s*$/.exec(r.stdout.toString());
  if (r.exitCode !== 0 || !m) return undefined;
  return { start: m[2]!.replace(/\s+/g, " "), zombie: m[1]!.startsWith("Z") };
}

/**
 * When the process started, as an opaque comparable string: Linux = boot id + start ticks from
 * /proc/<pid>/stat; macOS = `ps -o lstart=`. Undefined when the process does not exist.
 */
export function processStartTime(pid: number): string | undefined {
  return procInfo(pid)?.start;
}

/** Is `pid` a running process (not a zombie), and the same one that had start time `procStart`? */
export function isProcessAlive(pid: number, procStart?: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if (errnoCode(e) !== "EPERM") return false; // ESRCH: gone. EPERM: exists, owned by someone else.
  }
  const info = procInfo(pid);
  if (info === undefined) return true; // exists per kill(), start time unreadable: assume it is the owner
  if (info.zombie) return false;
  return procStart === undefined || info.start === procStart;
}

// ---------------------------------------------------------------------------------------------------------
// Reading

function parseLock(raw: string): LockInfo | undefined {
  // The original tool's pid file held just the pid: no start time, so only pid liveness can be checked.
  if (/^\s*\d+\s*$/.test(raw)) {
    const pid = Number(raw.trim());
    return pid > 0 ? { pid, startedAt: "", hostname: "" } : undefined;
  }
  try {
    const o = JSON.parse(raw) as Partial<LockInfo> | null;
    if (!o || typeof o !== "object" || !Number.isInteger(o.pid) || (o.pid as number) <= 0) return undefined;
    return {
      pid: o.pid as number,
      startedAt: typeof o.startedAt === "string" ? o.startedAt : "",
      procStart: typeof o.procStart === "string" ? o.procStart : undefined,
      hostname: typeof o.hostname === "string" ? o.hostname : "",
      childPid: Number.isInteger(o.childPid) ? o.childPid : undefined,
      childProcStart: typeof o.childProcStart === "string" ? o.childProcStart : undefined,
    };
  } catch {
    return undefined;
  }
}

function readRaw(lockPath: string): string | undefined {
  try {
    return readFileSync(lockPath, "utf8");
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return undefined;
    throw new HavmError(`cannot read the run lock ${lockPath} (${errnoCode(e) ?? String(e)})`, {
      hint: "Check the permissions of the VM directory.",
      code: "lock.read",
    });
  }
}

function judge(raw: string): Exclude<LockState, { state: "free" }> {
  const info = parseLock(raw);
  if (!info) return { state: "stale", reason: "corrupt" };
  if (isProcessAlive(info.pid, info.procStart)) return { state: "held", info };
  const now = procInfo(info.pid);
  const reason = now === undefined ? "owner is gone" : now.zombie ? "owner exited" : "pid reused by another process";
  return { state: "stale", info, reason };
}

/** The lock's state: free, held by a live process, or stale (dead owner, reused pid, corrupt file). */
export function inspectVmLock(lockPath: string): LockState {
  const raw = readRaw(lockPath);
  return raw === undefined ? { state: "free" } : judge(raw);
}

/** The lock's content (whether or not its owner still lives); undefined when absent or corrupt. */
export function readVmLock(lockPath: string): LockInfo | undefined {
  const raw = readRaw(lockPath);
  return raw === undefined ? undefined : parseLock(raw);
}

/** True when a live `havm run` holds the lock. */
export function isVmRunning(lockPath: string): boolean {
  return inspectVmLock(lockPath).state === "held";
}

// ---------------------------------------------------------------------------------------------------------
// Acquiring

function writeAll(fd: number, data: string): void {
  const buf = Buffer.from(data);
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

/** Create the lock with `body` atomically; false when it already exists. */
function tryCreate(lockPath: string, body: string): boolean {
  const tmp = tempPathFor(lockPath);
  const fd = openSync(tmp, "wx", 0o644);
  try {
    writeAll(fd, body);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, lockPath);
    return true;
  } catch (e) {
    const code = errnoCode(e);
    if (code === "EEXIST") return false;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "EXDEV") throw e;
  } finally {
    rmSync(tmp, { force: true });
  }
  // No hard links here: plain O_EXCL.
  let fd2: number;
  try {
    fd2 = openSync(lockPath, "wx", 0o644);
  } catch (e) {
    if (errnoCode(e) === "EEXIST") return false;
    throw e;
  }
  try {
    writeAll(fd2, body);
    fsyncSync(fd2);
  } finally {
    closeSync(fd2);
  }
  return true;
}

function ageMs(path: string): number | undefined {
  try {
    return Date.now() - statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Take the takeover guard; false when another process holds it. */
function takeGuard(guardPath: string): boolean {
  try {
    closeSync(openSync(guardPath, "wx", 0o644));
    return true;
  } catch (e) {
    if (errnoCode(e) !== "EEXIST") throw e;
  }
  const age = ageMs(guardPath);
  if (age !== undefined && age > GUARD_STALE_MS) {
    log.warn("removing an abandoned lock takeover guard", { path: guardPath });
    rmSync(guardPath, { force: true });
  }
  return false;
}

function busyError(lockPath: string, info: LockInfo): HavmError {
  const vmDir = dirname(lockPath);
  const since = info.startedAt ? `, running since ${info.startedAt}` : "";
  return new HavmError(`another havm is already running the VM in ${vmDir} (pid ${info.pid}${since})`, {
    hint:
      `Stop it with \`havm stop\` (or \`kill ${info.pid}\`), or wait for it to exit. Two havm processes must never run the same VM.` +
      (info.procStart === undefined ? ` If pid ${info.pid} is not havm, remove ${lockPath}.` : ""),
    exitCode: ExitCode.busy,
    code: "vm.busy",
  });
}

/** Take the run lock of a VM dir; throws HavmError(busy) when a live process holds it. */
export function acquireVmLock(lockPath: string): VmLock {
  mkdirSync(dirname(lockPath), { recursive: true });
  const guardPath = `${lockPath}.takeover`;
  const info: LockInfo = {
    pid: process.pid,
    startedAt: new Date().toISOString(),
    procStart: processStartTime(process.pid),
    hostname: hostname(),
  };
  const deadline = Date.now() + ACQUIRE_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (tryCreate(lockPath, JSON.stringify(info) + "\n")) return handle(lockPath, info);
    const raw = readRaw(lockPath);
    if (raw === undefined) continue; // released in between: try again
    const state = judge(raw);
    if (state.state === "held") throw busyError(lockPath, state.info);
    if (state.reason === "corrupt" && (ageMs(lockPath) ?? Infinity) < YOUNG_CORRUPT_MS) {
      Bun.sleepSync(50); // maybe being written by an O_EXCL fallback: give it time
      continue;
    }
    if (!takeGuard(guardPath)) {
      Bun.sleepSync(10 + Math.random() * 20);
      continue;
    }
    try {
      if (readRaw(lockPath) === raw) {
        unlinkSync(lockPath);
        if (state.reason === "corrupt") log.warn("the run lock was corrupt; treating it as stale and replacing it", { path: lockPath });
        else log.warn(`recovered a stale run lock (${state.reason})`, { path: lockPath, pid: state.info?.pid });
      }
    } finally {
      rmSync(guardPath, { force: true });
    }
  }
  throw new HavmError(`could not take the run lock ${lockPath}: other processes keep contending for it`, {
    hint: "Retry in a moment; if it persists, check which havm processes run for this VM.",
    exitCode: ExitCode.busy,
    code: "vm.busy",
  });
}

function handle(lockPath: string, initial: LockInfo): VmLock {
  let info = { ...initial };
  let released = false;
  const owned = (): boolean => {
    const current = readVmLock(lockPath);
    return current !== undefined && current.pid === initial.pid && current.procStart === initial.procStart && current.startedAt === initial.startedAt;
  };
  const onExit = () => lock.release();
  const lock: VmLock = {
    path: lockPath,
    get info() {
      return info;
    },
    update(fields) {
      if (released) throw new Error("run lock already released");
      info = { ...info, ...fields };
      if (!owned()) {
        log.warn("the run lock no longer belongs to this process; not updating it", { path: lockPath });
        return;
      }
      writeFileAtomic(lockPath, JSON.stringify(info) + "\n", 0o644);
    },
    release() {
      if (released) return;
      released = true;
      process.removeListener("exit", onExit);
      try {
        if (owned()) unlinkSync(lockPath);
        else log.warn("the run lock no longer belongs to this process; leaving it", { path: lockPath });
      } catch (e) {
        if (errnoCode(e) !== "ENOENT") log.warn("could not remove the run lock", { path: lockPath, error: errnoCode(e) ?? String(e) });
      }
    },
  };
  // A normal exit (even an uncaught error) removes the lock; kill -9 leaves it for stale recovery.
  process.once("exit", onExit);
  return lock;
}
