// A VM process left running by a killed havm is stopped before the next run takes the lock.
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { reapOrphanedVm } from "../../src/supervise/orphan.ts";
import { processStartTime, isProcessAlive } from "../../src/supervise/lock.ts";

function deadPid(): number {
  const p = Bun.spawnSync(["true"]);
  return p.pid;
}

function lockWith(child: { pid: number; start?: string }, owner = { pid: deadPid(), start: "0" }): string {
  const dir = mkdtempSync(join(tmpdir(), "havm-orphan-"));
  const path = join(dir, "havm.pid");
  writeFileSync(
    path,
    JSON.stringify({ pid: owner.pid, procStart: owner.start, startedAt: new Date().toISOString(), hostname: "h", childPid: child.pid, childProcStart: child.start }),
  );
  return path;
}

describe("reapOrphanedVm", () => {
  test("kills the recorded child of a dead supervisor", async () => {
    const child = Bun.spawn(["sleep", "60"]);
    const lock = lockWith({ pid: child.pid, start: processStartTime(child.pid)! });
    expect(reapOrphanedVm(lock, 3000)).toBe(true);
    await child.exited;
    expect(child.signalCode).toBe("SIGTERM");
  });

  test("escalates to SIGKILL when the child ignores SIGTERM", async () => {
    const child = Bun.spawn(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done"], { stdout: "pipe" });
    const reader = child.stdout.getReader();
    await reader.read(); // the trap is installed
    const lock = lockWith({ pid: child.pid, start: processStartTime(child.pid)! });
    expect(reapOrphanedVm(lock, 500)).toBe(true);
    await child.exited;
    expect(child.signalCode).toBe("SIGKILL");
  });

  test("leaves a process alone whose start time differs (a recycled pid)", () => {
    const child = Bun.spawn(["sleep", "60"]);
    try {
      const lock = lockWith({ pid: child.pid, start: "not-its-start-time" });
      expect(reapOrphanedVm(lock, 500)).toBe(false);
      expect(isProcessAlive(child.pid)).toBe(true);
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("leaves the child of a live supervisor alone", () => {
    const child = Bun.spawn(["sleep", "60"]);
    try {
      const lock = lockWith({ pid: child.pid, start: processStartTime(child.pid)! }, { pid: process.pid, start: processStartTime(process.pid)! });
      expect(reapOrphanedVm(lock, 500)).toBe(false);
      expect(isProcessAlive(child.pid)).toBe(true);
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("no lock, or a lock without a child: nothing to do", () => {
    const dir = mkdtempSync(join(tmpdir(), "havm-orphan-"));
    expect(reapOrphanedVm(join(dir, "havm.pid"))).toBe(false);
    const lock = join(dir, "l");
    writeFileSync(lock, JSON.stringify({ pid: deadPid(), startedAt: "x", hostname: "h" }));
    expect(reapOrphanedVm(lock)).toBe(false);
  });
});
