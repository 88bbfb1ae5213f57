import { describe, expect, test, afterAll, beforeAll } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { acquireVmLock, inspectVmLock, isProcessAlive, isVmRunning, processStartTime, psProcessInfo, readVmLock } from "../../src/supervise/lock.ts";
import { HavmError } from "../../src/util/errors.ts";
import { configureLogger, loggerOptions } from "../../src/util/log.ts";

const LOCK_MODULE = resolve(import.meta.dir, "../../src/supervise/lock.ts");
const dir = mkdtempSync(join(tmpdir(), "havm-lock-"));
let n = 0;
const freshLock = () => join(dir, `vm${n++}`, "havm.pid");

const lines: string[] = [];
let savedLog = { ...loggerOptions() };
beforeAll(() => {
  savedLog = { ...loggerOptions() };
  configureLogger({ write: (l) => lines.push(l), format: "text", color: false, level: "info" });
});

const children: Subprocess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill(9);
  configureLogger(savedLog);
  rmSync(dir, { recursive: true, force: true });
});

// A separate bun process that takes the lock and reports one JSON line, then holds it.
const HOLDER = `
const { acquireVmLock } = await import(process.env.LOCK_MODULE);
const startAt = Number(process.env.START_AT ?? 0);
if (startAt > Date.now()) Bun.sleepSync(startAt - Date.now());
try {
  const lock = acquireVmLock(process.env.LOCK_PATH);
  console.log(JSON.stringify({ ok: true, pid: process.pid }));
  // Hold until RELEASE_FILE appears (the test decides), or for HOLD_MS.
  const until = Date.now() + Number(process.env.HOLD_MS ?? 600000);
  const release = process.env.RELEASE_FILE;
  while (Date.now() < until && !(release && (await Bun.file(release).exists()))) await Bun.sleep(20);
  lock.release();
} catch (e) {
  console.log(JSON.stringify({ ok: false, exitCode: e.exitCode, message: e.message }));
}
`;

interface Report {
  ok: boolean;
  pid?: number;
  exitCode?: number;
  message?: string;
}

function spawnHolder(lockPath: string, env: Record<string, string> = {}): Subprocess<"ignore", "pipe", "pipe"> {
  const p = Bun.spawn([process.execPath, "-e", HOLDER], {
    env: { ...process.env, LOCK_MODULE, LOCK_PATH: lockPath, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  children.push(p);
  return p;
}

async function firstLine(p: Subprocess<"ignore", "pipe", "pipe">): Promise<Report> {
  const reader = p.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  if (!text.includes("\n")) throw new Error(`holder printed nothing; stderr: ${await new Response(p.stderr).text()}`);
  return JSON.parse(text.slice(0, text.indexOf("\n"))) as Report;
}

async function deadPid(): Promise<number> {
  const p = Bun.spawn(["true"]);
  await p.exited;
  return p.pid;
}

function expectBusy(fn: () => unknown, pid: number): HavmError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(HavmError);
  const h = err as HavmError;
  expect(h.exitCode).toBe(3);
  expect(h.message).toContain(`pid ${pid}`);
  expect(h.hint).toContain("havm stop");
  return h;
}

describe("processStartTime", () => {
  test("defined and stable for a live process, different for another, undefined for a dead one", async () => {
    const mine = processStartTime(process.pid);
    expect(mine).toBeDefined();
    expect(processStartTime(process.pid)).toBe(mine);
    const sleeper = Bun.spawn(["sleep", "30"]);
    children.push(sleeper);
    Bun.sleepSync(20); // start ticks have 10 ms resolution
    const other = processStartTime(sleeper.pid);
    expect(other).toBeDefined();
    expect(other).not.toBe(mine);
    expect(isProcessAlive(sleeper.pid, other)).toBe(true);
    expect(isProcessAlive(sleeper.pid, "not-its-start-time")).toBe(false);
    sleeper.kill(9);
    await sleeper.exited;
    expect(processStartTime(sleeper.pid)).toBeUndefined();
    expect(isProcessAlive(sleeper.pid)).toBe(false);
  });
});

describe("psProcessInfo (the macOS path, run here with procps)", () => {
  const hasPs = Bun.spawnSync(["sh", "-c", "command -v ps"]).exitCode === 0;
  test.skipIf(!hasPs)("lstart of a live process, zombie state, undefined when gone", async () => {
    const mine = psProcessInfo(process.pid);
    expect(mine?.zombie).toBe(false);
    // lstart looks like "Wed Nov 25 03:35:01 2026" and agrees with the clock to within a day.
    expect(mine?.start).toMatch(/^[A-Z][a-z]{2} [A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d \d{4}$/);
    expect(Math.abs(Date.parse(mine!.start + " UTC") - Date.now())).toBeLessThan(86_400_000);
    expect(psProcessInfo(process.pid)?.start).toBe(mine!.start);
    // A zombie: a child that exited but was not reaped yet by its parent (`sleep`, exec-ed in its place, never reaps it).
    const sh = Bun.spawn(["sh", "-c", "true & exec sleep 2"], { stdout: "ignore" });
    children.push(sh);
    Bun.sleepSync(300);
    const kids = Bun.spawnSync(["sh", "-c", `ps -o pid= --ppid ${sh.pid}`]).stdout.toString().trim().split(/\s+/).map(Number);
    const zombies = kids.filter((k) => psProcessInfo(k)?.zombie);
    expect(zombies.length).toBe(1);
    expect(isProcessAlive(zombies[0]!)).toBe(false);
    sh.kill(9);
    await sh.exited;
    expect(psProcessInfo(sh.pid)).toBeUndefined();
  });
});

describe("acquireVmLock", () => {
  test("writes who holds it, update adds the child, release removes it", () => {
    const path = freshLock();
    expect(inspectVmLock(path)).toEqual({ state: "free" });
    const lock = acquireVmLock(path);
    const info = JSON.parse(readFileSync(path, "utf8"));
    expect(info.pid).toBe(process.pid);
    expect(info.procStart).toBe(processStartTime(process.pid));
    expect(typeof info.hostname).toBe("string");
    expect(Number.isNaN(Date.parse(info.startedAt))).toBe(false);
    expect(isVmRunning(path)).toBe(true);
    // Held by this very process: a second acquire is refused too.
    expectBusy(() => acquireVmLock(path), process.pid);

    lock.update({ childPid: 4242, childProcStart: "x" });
    expect(readVmLock(path)).toMatchObject({ pid: process.pid, childPid: 4242, childProcStart: "x" });
    lock.release();
    expect(existsSync(path)).toBe(false);
    expect(isVmRunning(path)).toBe(false);
    lock.release(); // idempotent
    expect(readdirSync(join(path, ".."))).toEqual([]); // no temp or guard files left
  });

  test("a second acquirer is refused while a real process holds it; kill -9 leaves a lock that is recovered", async () => {
    const path = freshLock();
    const holder = spawnHolder(path);
    const report = await firstLine(holder);
    expect(report).toEqual({ ok: true, pid: holder.pid });
    expect(isVmRunning(path)).toBe(true);
    expect(readVmLock(path)?.pid).toBe(holder.pid);
    expectBusy(() => acquireVmLock(path), holder.pid);

    holder.kill(9);
    await holder.exited;
    expect(existsSync(path)).toBe(true); // kill -9 cannot clean up
    expect(inspectVmLock(path)).toMatchObject({ state: "stale", reason: "owner is gone" });
    lines.length = 0;
    const lock = acquireVmLock(path);
    expect(readVmLock(path)?.pid).toBe(process.pid);
    expect(lines.join("\n")).toMatch(/WARN\s+recovered a stale run lock \(owner is gone\)/);
    lock.release();
  });

  test("a holder that exits normally removes its lock", async () => {
    const path = freshLock();
    const holder = spawnHolder(path, { HOLD_MS: "0" });
    expect((await firstLine(holder)).ok).toBe(true);
    expect(await holder.exited).toBe(0);
    expect(existsSync(path)).toBe(false);
  });

  test("a recycled pid (live, unrelated, different start time) is stale; the same start time is held", async () => {
    const sleeper = Bun.spawn(["sleep", "30"]);
    children.push(sleeper);
    const path = freshLock();
    const base = { pid: sleeper.pid, startedAt: new Date().toISOString(), hostname: "h" };

    acquireVmLock(path).release(); // creates the VM dir

    writeFileSync(path, JSON.stringify({ ...base, procStart: processStartTime(sleeper.pid) }));
    expect(isVmRunning(path)).toBe(true);
    expectBusy(() => acquireVmLock(path), sleeper.pid);

    writeFileSync(path, JSON.stringify({ ...base, procStart: "boot:1" }));
    expect(isVmRunning(path)).toBe(false);
    expect(inspectVmLock(path)).toMatchObject({ state: "stale", reason: "pid reused by another process" });
    const lock = acquireVmLock(path);
    expect(readVmLock(path)?.pid).toBe(process.pid);
    lock.release();
    sleeper.kill(9);
  });

  test("a corrupt lock file is treated as stale, with a warning", () => {
    const path = freshLock();
    acquireVmLock(path).release();
    writeFileSync(path, "{ not json");
    const old = (Date.now() - 60_000) / 1000;
    utimesSync(path, old, old);
    expect(inspectVmLock(path)).toEqual({ state: "stale", reason: "corrupt" });
    expect(readVmLock(path)).toBeUndefined();
    lines.length = 0;
    const lock = acquireVmLock(path);
    expect(lines.join("\n")).toMatch(/WARN\s+the run lock was corrupt/);
    expect(readVmLock(path)?.pid).toBe(process.pid);
    lock.release();
  });

  test("a plain pid file (the original tool's) counts while that pid lives", async () => {
    const path = freshLock();
    acquireVmLock(path).release();
    const sleeper = Bun.spawn(["sleep", "30"]);
    children.push(sleeper);
    writeFileSync(path, `${sleeper.pid}\n`);
    expect(readVmLock(path)).toMatchObject({ pid: sleeper.pid });
    const h = expectBusy(() => acquireVmLock(path), sleeper.pid);
    expect(h.hint).toContain(`remove ${path}`);
    sleeper.kill(9);
    await sleeper.exited;
    const lock = acquireVmLock(path);
    expect(readVmLock(path)?.pid).toBe(process.pid);
    lock.release();
  });

  // Four real processes start acquiring at the same instant; exactly one may win.
  test.each([
    ["over a stale lock", true],
    ["with no lock", false],
  ])("racing starters %s: exactly one owner", async (_, stale) => {
    const path = freshLock();
    acquireVmLock(path).release();
    if (stale) writeFileSync(path, JSON.stringify({ pid: await deadPid(), startedAt: "", procStart: "gone", hostname: "h" }));
    const startAt = String(Date.now() + 1500);
    const releaseFile = join(dir, `release-${n++}`);
    const racers = Array.from({ length: 4 }, () => spawnHolder(path, { START_AT: startAt, RELEASE_FILE: releaseFile }));
    const reports = await Promise.all(racers.map(firstLine));
    const holder = readVmLock(path)?.pid;
    writeFileSync(releaseFile, ""); // every racer has reported: now the winner may let go
    const winners = reports.filter((r) => r.ok);
    expect(winners.length).toBe(1);
    expect(holder).toBe(winners[0]!.pid!);
    for (const r of reports.filter((r) => !r.ok)) {
      expect(r.exitCode).toBe(3);
      expect(r.message).toContain(`pid ${winners[0]!.pid}`);
    }
    await Promise.all(racers.map((r) => r.exited));
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(join(path, ".."))).toEqual([]);
  }, 30_000);
});
