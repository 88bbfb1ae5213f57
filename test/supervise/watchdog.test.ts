import { describe, expect, test } from "bun:test";
import { createWatchdog, decideWatchdog, unhealthyThresholdMs, formatDuration, Watchdog, watchdogPolicy, HOUR_MS, type WatchdogPolicy, type RestartReason } from "../../src/supervise/watchdog.ts";
import { HealthMonitor, createHealthMonitor } from "../../src/supervise/health.ts";
import { HavmMetrics } from "../../src/metrics/havm-metrics.ts";
import { defaultConfig } from "../../src/config/schema.ts";
import { FakeClock } from "./fake-clock.ts";

const MIN = 60_000;
const T0 = Date.UTC(2026, 10, 25, 3, 0, 0);
const on: WatchdogPolicy = { enabled: true, unhealthyAfterMs: 5 * MIN, action: "restart", maxRestartsPerHour: 3, bootGraceMs: 10 * MIN };

describe("decideWatchdog (pure)", () => {
  const down = (since: number) => ({ up: false, everUp: true, unhealthySince: since });
  const rows: [string, WatchdogPolicy, Parameters<typeof decideWatchdog>[1], number[], number, string][] = [
    ["off", { ...on, enabled: false }, down(0), [], 60 * MIN, "off"],
    ["healthy", on, { up: true, everUp: true }, [], 60 * MIN, "healthy"],
    ["never up (booting)", on, { up: false, everUp: false }, [], 60 * MIN, "never-up"],
    ["unhealthy, not long enough", on, down(0), [], 5 * MIN - 1, "waiting"],
    ["unhealthy long enough", on, down(0), [], 5 * MIN, "restart"],
    ["action none reports", { ...on, action: "none" }, down(0), [], 6 * MIN, "report"],
    ["one recent restart doubles the wait", on, down(0), [10 * MIN], 19 * MIN, "waiting"],
    ["... and then restarts", on, down(0), [10 * MIN], 20 * MIN, "restart"],
    ["cap reached", { ...on, maxRestartsPerHour: 2 }, down(0), [10 * MIN, 25 * MIN], 50 * MIN, "capped"],
    ["restarts older than an hour do not count", { ...on, maxRestartsPerHour: 1 }, down(0), [10 * MIN], 10 * MIN + HOUR_MS + 1, "restart"],
    ["the stretch never counts from before the last restart", on, down(0), [30 * MIN], 39 * MIN, "waiting"],
    ["a restarted guest gets its boot grace before HA answered once", { ...on, unhealthyAfterMs: MIN }, { ...down(0), upSinceBoot: false }, [], 9 * MIN, "waiting"],
    ["... and is restarted when it never comes back", { ...on, unhealthyAfterMs: MIN }, { ...down(0), upSinceBoot: false }, [], 10 * MIN, "restart"],
    ["once HA answered after the boot, unhealthy_after applies again", { ...on, unhealthyAfterMs: MIN }, { ...down(0), upSinceBoot: true }, [], MIN, "restart"],
  ];
  for (const [name, policy, health, restarts, now, want] of rows) {
    test(name, () => expect(decideWatchdog(policy, health, restarts, now).kind).toBe(want as never));
  }

  test("capped says when the next restart may happen", () => {
    const d = decideWatchdog({ ...on, maxRestartsPerHour: 2 }, down(0), [10 * MIN, 25 * MIN], 50 * MIN);
    expect(d.kind === "capped" && d.retryAt).toBe(10 * MIN + HOUR_MS);
    expect(d.kind === "capped" && d.message).toContain("max_restarts_per_hour: 2");
  });

  test("backoff doubles per recent restart and stops at an hour", () => {
    expect([0, 1, 2, 3, 4, 10].map((n) => unhealthyThresholdMs(on, n) / MIN)).toEqual([5, 10, 20, 40, 60, 60]);
    expect(unhealthyThresholdMs({ ...on, unhealthyAfterMs: 2 * HOUR_MS }, 3)).toBe(2 * HOUR_MS);
  });

  test("policy from config", () => {
    expect(watchdogPolicy(defaultConfig().watchdog)).toEqual({ enabled: false, unhealthyAfterMs: 5 * MIN, action: "restart", maxRestartsPerHour: 3, bootGraceMs: 10 * MIN });
  });

  test("formatDuration", () => {
    expect([0, 45_000, 5 * MIN, 62 * MIN + 5000].map(formatDuration)).toEqual(["0s", "45s", "5m", "1h 2m 5s"]);
  });
});

/**
 * A simulated VM + guest: HA answers while `frozen` is false; a restart takes `restartMs` of (fake) time and
 * unfreezes the guest unless `brokenForever`. The supervisor-side restart counts and resets health, as
 * the real supervisor will.
 */
function harness(policy: WatchdogPolicy, opts: { brokenForever?: boolean; restartMs?: number } = {}) {
  const clock = new FakeClock(T0);
  const metrics = new HavmMetrics({ version: "test", backend: "qemu", now: () => clock.now() });
  const guest = { frozen: false, restarts: [] as number[] };
  const logs: string[] = [];
  const log = { info: (m: string) => logs.push(`info ${m}`), warn: (m: string) => logs.push(`warn ${m}`), error: (m: string) => logs.push(`error ${m}`), debug() {} };
  const health = new HealthMonitor({
    probe: async (signal) => {
      if (guest.frozen) return new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason)));
      return true;
    },
    clock,
    intervalMs: 15_000,
    timeoutMs: 5_000,
    log,
    metrics,
  });
  const restart = async (reason: RestartReason) => {
    guest.restarts.push(clock.now());
    metrics.vmRestarted(reason);
    // The shutdown chain and boot take time; nothing answers meanwhile.
    await new Promise<void>((resolve) => clock.setTimeout(resolve, opts.restartMs ?? 90_000));
    if (!opts.brokenForever) guest.frozen = false;
    health.vmRestarted();
  };
  const watchdog = new Watchdog({ policy, health, clock, onRestart: restart, log });
  health.start();
  watchdog.start();
  return { clock, metrics, guest, logs, health, watchdog };
}

describe("Watchdog driver (injected clock, no real hours)", () => {
  test("a guest that stops answering is restarted after unhealthy_after, once", async () => {
    const h = harness(on);
    await h.clock.advance(10 * MIN);
    expect(h.guest.restarts).toEqual([]);
    h.guest.frozen = true;
    const frozeAt = h.clock.now();
    await h.clock.advance(30 * MIN);
    expect(h.guest.restarts.length).toBe(1);
    const after = h.guest.restarts[0]! - frozeAt;
    // 5 min after the first failed probe, which comes within one interval + timeout of the freeze.
    expect(after).toBeGreaterThanOrEqual(5 * MIN);
    expect(after).toBeLessThanOrEqual(5 * MIN + 15_000 + 2 * 5_000 + 15_000);
    expect(h.health.state().up).toBe(true);
    expect(h.metrics.render()).toMatch(/^havm_vm_restarts_total\{reason="watchdog"\} 1$/m);
    expect(h.logs.some((l) => l.startsWith("warn watchdog: Home Assistant has not answered for 5m"))).toBe(true);
  });

  test("the restart cap holds for a guest that never recovers, with growing gaps", async () => {
    const h = harness({ ...on, maxRestartsPerHour: 2 }, { brokenForever: true });
    await h.clock.advance(2 * MIN);
    h.guest.frozen = true;
    await h.clock.advance(5 * HOUR_MS);
    const r = h.guest.restarts;
    expect(r.length).toBeGreaterThanOrEqual(3);
    // In any sliding hour at most max_restarts_per_hour restarts.
    for (const t of r) expect(r.filter((x) => x >= t && x < t + HOUR_MS).length).toBeLessThanOrEqual(2);
    // Backoff: each gap at least the threshold for the restarts before it.
    const gaps = r.slice(1).map((t, i) => t - r[i]!);
    expect(gaps[0]!).toBeGreaterThanOrEqual(10 * MIN);
    expect(gaps[1]!).toBeGreaterThanOrEqual(20 * MIN);
    // It keeps trying occasionally (not given up forever) but far less than once per unhealthy_after.
    expect(r.length).toBeLessThanOrEqual(5 * 2);
    expect(r.length).toBeLessThan((5 * HOUR_MS) / (5 * MIN) / 4);
    expect(h.logs.some((l) => l.includes("max_restarts_per_hour: 2"))).toBe(true);
  });

  test("nothing restarts when the watchdog is off", async () => {
    const h = harness({ ...on, enabled: false });
    await h.clock.advance(MIN);
    h.guest.frozen = true;
    await h.clock.advance(3 * HOUR_MS);
    expect(h.guest.restarts).toEqual([]);
    expect(h.metrics.render()).toMatch(/^havm_ha_up 0$/m);
    expect(h.metrics.render()).not.toContain('reason="watchdog"');
  });

  test("action none only logs, once per unhealthy stretch", async () => {
    const h = harness({ ...on, action: "none" });
    await h.clock.advance(MIN);
    h.guest.frozen = true;
    await h.clock.advance(HOUR_MS);
    expect(h.guest.restarts).toEqual([]);
    expect(h.logs.filter((l) => l.includes("watchdog action: none")).length).toBe(1);
    h.guest.frozen = false;
    await h.clock.advance(MIN);
    h.guest.frozen = true;
    await h.clock.advance(HOUR_MS);
    expect(h.logs.filter((l) => l.includes("watchdog action: none")).length).toBe(2);
  });

  test("a guest that never came up is left alone (not the watchdog's business)", async () => {
    const h = harness(on);
    h.guest.frozen = true;
    await h.clock.advance(2 * HOUR_MS);
    expect(h.guest.restarts).toEqual([]);
  });

  test("a failing restart is logged and still counts toward the cap", async () => {
    const clock = new FakeClock(T0);
    let answering = true;
    const health = new HealthMonitor({ probe: async () => answering, clock, intervalMs: 15_000, log: { info() {}, warn() {}, debug() {} } });
    const errors: string[] = [];
    let calls = 0;
    const wd = new Watchdog({
      policy: { ...on, maxRestartsPerHour: 2 },
      health,
      clock,
      onRestart: async () => {
        calls++;
        throw new Error("shutdown chain: SSH refused");
      },
      log: { info() {}, warn() {}, error: (m, f) => errors.push(`${m} ${JSON.stringify(f)}`) },
    });
    health.start();
    wd.start();
    await clock.advance(MIN);
    answering = false;
    await clock.advance(HOUR_MS);
    expect(calls).toBe(2);
    expect(errors[0]).toContain("SSH refused");
  });
});

describe("per-boot monitors, as the supervisor wires them", () => {
  /**
   * The supervisor builds a new health monitor and watchdog at every boot, and onRestart only asks for the
   * restart (fire and forget). A flapping guest answers for 2 minutes after each boot and then freezes.
   * The shared history keeps the hourly cap across boots.
   */
  async function flapping(shareHistory: boolean) {
    const clock = new FakeClock(T0);
    const history: number[] = [];
    const restarts: number[] = [];
    let bootAt = 0;
    const quiet = { info() {}, warn() {}, error() {}, debug() {} };
    const boot = () => {
      bootAt = clock.now();
      const health = createHealthMonitor({
        probe: async (signal) =>
          clock.now() - bootAt < 2 * MIN ? true : new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
        clock,
        intervalMs: 15_000,
        timeoutMs: 5_000,
      });
      const watchdog = createWatchdog({
        config: { enabled: true, unhealthy_after: 5 * MIN, action: "restart", max_restarts_per_hour: 3, probe_interval: 15_000 },
        health,
        clock,
        log: quiet,
        ...(shareHistory ? { history } : {}),
        onRestart: () => {
          restarts.push(clock.now());
          health.stop();
          watchdog.stop();
          // shutdown chain + boot: 1 minute, then a new boot with new monitors
          clock.setTimeout(boot, MIN);
        },
      });
    };
    boot();
    await clock.advance(4 * HOUR_MS);
    return restarts;
  }

  test("the cap holds across boots when the history is shared", async () => {
    const r = await flapping(true);
    for (const t of r) expect(r.filter((x) => x >= t && x < t + HOUR_MS).length).toBeLessThanOrEqual(3);
    expect(r.length).toBeGreaterThanOrEqual(4); // it does keep trying, hour after hour
  });

  test("(without a shared history every boot starts afresh: many more restarts)", async () => {
    const shared = await flapping(true);
    const fresh = await flapping(false);
    expect(fresh.length).toBeGreaterThan(shared.length * 2);
  });
});
