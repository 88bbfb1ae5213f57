// Against the guest appliance (mini-HAOS under QEMU TCG): the health loop probes its HTTP port with the real
// probeHa (no credentials); the guest is frozen with QMP `stop` (a hung guest: TCP still connects, HTTP never
// answers); the watchdog restarts it (kill + boot again on the same disk) after `unhealthy_after`.
// Seconds instead of minutes (probe every 0.5 s, unhealthy after 4 s): real time, but no real hours.
// A disabled watchdog and an `action: none` watchdog watch the same probes and never restart anything.
// Then `schedule.reboot: "04:10"` with a clock injected to read 04:09:57: the guest is shut down gracefully
// through HA's API (host_shutdown) at 04:10 and booted again.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { probeHa } from "../../src/guest/ha-api.ts";
import { createHealthMonitor } from "../../src/supervise/health.ts";
import { createWatchdog, type RestartReason } from "../../src/supervise/watchdog.ts";
import { createRebootSchedule, nextDailyOccurrence } from "../../src/supervise/schedule.ts";
import { bootGuest, bootUnavailableReason, waitExit, waitFor, type BootedGuest } from "../guest/boot.ts";
import { copyDisk, ensureGuestImage, readGuestRecord } from "../guest/guest.ts";

const unavailable = bootUnavailableReason();
const dir = mkdtempSync(join(tmpdir(), "havm-wd-guest-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test.skipIf(!!unavailable)(`a frozen guest is restarted by the watchdog; off/none never restart; the scheduled reboot happens at its time${unavailable ? ` (skipped: ${unavailable})` : ""}`, async () => {
  const img = await ensureGuestImage();
  const disk = join(dir, "disk.img");
  const vars = join(dir, "vars.fd");
  await copyDisk(img.diskPath, disk);
  let boots = 0;
  let guest: BootedGuest = await bootGuest({ disk, vars, runDir: join(dir, `run${++boots}`) });
  const logs: string[] = [];
  const log = { info: (m: string) => logs.push(`info ${m}`), warn: (m: string) => logs.push(`warn ${m}`), error: (m: string) => logs.push(`error ${m}`), debug() {} };
  const restarts: { reason: RestartReason; at: number }[] = [];
  const others: string[] = [];
  try {
    const health = createHealthMonitor({
      probe: () => probeHa([`http://127.0.0.1:${guest.httpPort}`], { timeoutMs: 1000 }),
      intervalMs: 500,
      timeoutMs: 1500,
      log,
    });
    // Boot grace: a restarted guest gets 90 s to answer before unhealthy_after applies again (TCG boots in ~20 s).
    const policy = { enabled: true, unhealthyAfterMs: 4000, action: "restart" as const, maxRestartsPerHour: 3, bootGraceMs: 90_000 };
    createWatchdog({
      policy,
      health,
      log,
      onRestart: async (reason) => {
        restarts.push({ reason, at: Date.now() });
        guest.kill();
        await guest.exited;
        guest = await bootGuest({ disk, vars, runDir: join(dir, `run${++boots}`) });
        health.vmRestarted();
      },
    });
    createWatchdog({ policy: { ...policy, enabled: false }, health, log, onRestart: () => void others.push("off") });
    createWatchdog({ policy: { ...policy, action: "none" }, health, log, onRestart: () => void others.push("none") });

    await waitFor("HA up", async () => (health.state().up ? true : undefined), 150_000, 200);
    await Bun.sleep(1500);
    expect(restarts).toEqual([]);

    await guest.qmp("stop"); // frozen
    const frozenAt = Date.now();
    await waitFor("watchdog restart", async () => (restarts.length > 0 ? true : undefined), 60_000, 100);
    expect(restarts[0]!.reason).toBe("watchdog");
    expect(restarts[0]!.at - frozenAt).toBeGreaterThanOrEqual(4000);
    expect(logs.some((l) => l.includes("Home Assistant stopped answering"))).toBe(true);
    expect(logs.some((l) => l.includes("watchdog action: none"))).toBe(true);

    await waitFor("HA up after the restart", async () => (health.state().up ? true : undefined), 150_000, 200);
    expect(restarts.length).toBe(1);
    expect(boots).toBe(2);
    expect(others).toEqual([]);

    // The scheduled reboot, at an injected wall-clock time.
    const target = nextDailyOccurrence(4 * 60 + 10, Date.now());
    const offset = target - (Date.now() + 3000);
    const clockNow = () => Date.now() + offset;
    const reboots: { reason: RestartReason; at: number }[] = [];
    let shutdownRecord = "";
    const schedule = createRebootSchedule({
      at: "04:10",
      now: clockNow,
      log,
      onReboot: async (reason) => {
        reboots.push({ reason, at: clockNow() });
        health.stop();
        // The graceful path: HA's host_shutdown with the admin token, then wait for the VM to stop.
        await fetch(`http://127.0.0.1:${guest.httpPort}/api/services/hassio/host_shutdown`, {
          method: "POST",
          headers: { Authorization: `Bearer ${img.token}` },
          signal: AbortSignal.timeout(10_000),
        }).catch(() => undefined);
        await waitExit(guest, 60_000);
        shutdownRecord = (await readGuestRecord(disk)).runState;
        guest = await bootGuest({ disk, vars, runDir: join(dir, `run${++boots}`) });
        health.vmRestarted();
        health.start();
      },
    });
    expect(schedule.next()).toBe(target);
    await waitFor("scheduled reboot", async () => (reboots.length > 0 ? true : undefined), 30_000, 100);
    expect(reboots[0]!.reason).toBe("schedule");
    expect(reboots[0]!.at).toBeGreaterThanOrEqual(target);
    expect(reboots[0]!.at - target).toBeLessThan(2000);
    await waitFor("HA up after the scheduled reboot", async () => (health.state().up && boots === 3 ? true : undefined), 150_000, 200);
    expect(shutdownRecord).toBe("clean:api");
    expect(schedule.next()).toBe(nextDailyOccurrence(4 * 60 + 10, target));
    schedule.stop();
    expect(restarts.length).toBe(1); // the scheduled shutdown did not trip the watchdog
    health.stop();
  } finally {
    guest.kill();
    await guest.exited;
  }
}, 400_000);
