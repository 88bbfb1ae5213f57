import { describe, expect, test } from "bun:test";
import { HealthMonitor, type HaProbe } from "../../src/supervise/health.ts";
import { HavmMetrics } from "../../src/metrics/havm-metrics.ts";
import { FakeClock } from "./fake-clock.ts";

const quiet = { info() {}, warn() {}, debug() {} };
const T0 = Date.UTC(2026, 10, 25, 3, 0, 0);

/** A guest whose HTTP port answers (after `latencyMs`) while `answering`, and hangs otherwise. */
function fakeGuest(clock: FakeClock) {
  const g = {
    answering: true,
    latencyMs: 20,
    aborted: 0,
    probe: (async (signal) => {
      if (!g.answering) {
        return new Promise<boolean>((_, reject) =>
          signal.addEventListener("abort", () => {
            g.aborted++;
            reject(signal.reason);
          }),
        );
      }
      clock.jump(g.latencyMs);
      return true;
    }) as HaProbe,
  };
  return g;
}

describe("HealthMonitor", () => {
  test("tracks up, latency, and unhealthy time only after HA was up once", async () => {
    const clock = new FakeClock(T0);
    const guest = fakeGuest(clock);
    guest.answering = false;
    const metrics = new HavmMetrics({ version: "test", backend: "qemu", now: () => clock.now() });
    const h = new HealthMonitor({ probe: guest.probe, clock, intervalMs: 15_000, timeoutMs: 5_000, log: quiet, metrics });
    h.start();
    await clock.advance(60_000); // booting: HA never answered
    expect(h.state()).toMatchObject({ up: false, everUp: false });
    expect(h.state().consecutiveFailures).toBeGreaterThanOrEqual(3);
    expect(h.state().lastError).toContain("no answer within 5000 ms");
    expect(guest.aborted).toBeGreaterThanOrEqual(3); // timed-out probes are aborted, not leaked
    expect(h.unhealthyMs()).toBe(0);

    guest.answering = true;
    await clock.advance(20_000);
    const up = h.state();
    expect(up).toMatchObject({ up: true, everUp: true, consecutiveFailures: 0, lastLatencyMs: 20 });
    expect(metrics.render()).toMatch(/^havm_ha_up 1$/m);

    guest.answering = false;
    const beforeFail = clock.now();
    await clock.advance(5 * 60_000);
    const s = h.state();
    expect(s.up).toBe(false);
    expect(s.unhealthySince).toBeGreaterThan(beforeFail);
    // Failures began within one interval + timeout of the change.
    expect(h.unhealthyMs()).toBeGreaterThan(5 * 60_000 - 20_000 - 5_000);
    expect(h.unhealthyMs()).toBeLessThanOrEqual(5 * 60_000);
    expect(metrics.render()).toMatch(/^havm_ha_up 0$/m);
    expect(metrics.render()).toMatch(/^havm_ha_probe_duration_seconds_count \d+$/m);

    guest.answering = true;
    await clock.advance(20_000); // one interval + one timeout: the next probe has run
    expect(h.unhealthyMs()).toBe(0);
    h.stop();
    expect(clock.pending()).toBe(0);
  });

  test("probes are sequential and spaced by the interval", async () => {
    const clock = new FakeClock(T0);
    const guest = fakeGuest(clock);
    guest.latencyMs = 0;
    const h = new HealthMonitor({ probe: guest.probe, clock, intervalMs: 10_000, log: quiet });
    h.start();
    await clock.advance(100_000);
    expect(h.state().probes).toBe(11); // t=0, 10 s, ..., 100 s
    h.stop();
  });

  test("a probe that throws or says {up:false} is a failure with its reason", async () => {
    const clock = new FakeClock(T0);
    let mode: "ok" | "throw" | "down" = "ok";
    const h = new HealthMonitor({
      probe: async () => (mode === "throw" ? Promise.reject(new Error("ECONNREFUSED 127.0.0.1:8123")) : mode === "down" ? { up: false, detail: "HTTP 502" } : { up: true }),
      clock,
      intervalMs: 1000,
      log: quiet,
    });
    expect((await h.probeOnce()).up).toBe(true);
    mode = "throw";
    expect((await h.probeOnce()).lastError).toBe("ECONNREFUSED 127.0.0.1:8123");
    mode = "down";
    expect((await h.probeOnce()).lastError).toBe("HTTP 502");
    expect(h.state().consecutiveFailures).toBe(2);
  });

  test("vmRestarted starts a new unhealthy stretch at the restart", async () => {
    const clock = new FakeClock(T0);
    let up = true;
    const h = new HealthMonitor({ probe: async () => up, clock, intervalMs: 1000, log: quiet });
    await h.probeOnce();
    up = false;
    await h.probeOnce();
    await clock.advance(600_000);
    expect(h.unhealthyMs()).toBe(600_000);
    h.vmRestarted();
    expect(h.unhealthyMs()).toBe(0);
    await clock.advance(30_000);
    expect(h.unhealthyMs()).toBe(30_000);
  });
});

test("a probe in flight across stop() is dropped, not recorded", async () => {
  const clock = new FakeClock(T0);
  let release: (v: boolean) => void = () => {};
  const h = new HealthMonitor({ probe: () => new Promise<boolean>((r) => (release = r)), clock, intervalMs: 1000, timeoutMs: 60_000, log: quiet });
  const seen: boolean[] = [];
  h.onProbe((s) => seen.push(s.up));
  h.start();
  await clock.advance(0);
  h.stop();
  release(false);
  await clock.settle();
  expect(seen).toEqual([]);
  expect(h.state().probes).toBe(0);
  h.start();
  await clock.advance(0);
  release(true);
  await clock.settle();
  expect(seen).toEqual([true]);
  h.stop();
});
