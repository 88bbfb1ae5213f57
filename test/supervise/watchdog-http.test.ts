// The health loop with the real liveness probe (probeHa: GET / without credentials) against an HTTP server on
// 127.0.0.1 that plays Home Assistant and stops answering; scheduling runs on an injected clock, so five
// "minutes" of failed probes take milliseconds. The restart brings the server back, as a VM restart would.
import { afterEach, describe, expect, test } from "bun:test";
import { probeHa } from "../../src/guest/ha-api.ts";
import { HealthMonitor } from "../../src/supervise/health.ts";
import { Watchdog } from "../../src/supervise/watchdog.ts";
import { HavmMetrics } from "../../src/metrics/havm-metrics.ts";
import { FakeClock } from "./fake-clock.ts";

const MIN = 60_000;
const INTERVAL = 15_000;
let server: ReturnType<typeof Bun.serve> | undefined;
afterEach(() => {
  server?.stop(true);
  server = undefined;
});

function startHa(port = 0) {
  // Like HA's frontend: any path answers without credentials; /api/ would want a token (never probed).
  server = Bun.serve({ hostname: "127.0.0.1", port, fetch: (req) => (new URL(req.url).pathname.startsWith("/api/") ? new Response("401", { status: 401 }) : new Response("<html>Home Assistant</html>")) });
  return server.port!;
}

async function run(enabled: boolean) {
  const clock = new FakeClock(Date.UTC(2026, 10, 25, 3, 0, 0));
  const port = startHa();
  const url = `http://127.0.0.1:${port}`;
  const metrics = new HavmMetrics({ version: "test", backend: "qemu", now: () => clock.now() });
  const restarts: { at: number; reason: string }[] = [];
  const health = new HealthMonitor({
    probe: () => probeHa([url], { timeoutMs: 2000 }),
    clock,
    intervalMs: INTERVAL,
    timeoutMs: INTERVAL - 1000,
    metrics,
  });
  const watchdog = new Watchdog({
    config: { enabled, unhealthy_after: 5 * MIN, action: "restart", max_restarts_per_hour: 3, probe_interval: INTERVAL },
    health,
    clock,
    log: { info() {}, warn() {}, error() {} },
    onRestart: async (reason) => {
      restarts.push({ at: clock.now(), reason });
      metrics.vmRestarted(reason);
      startHa(port); // the rebooted guest answers again
      health.vmRestarted();
    },
  });
  health.start();
  watchdog.start();
  /** Advance one probe interval and wait (real time) for that probe's HTTP exchange to finish. */
  const step = async () => {
    const before = health.state().probes;
    await clock.advance(INTERVAL);
    for (let i = 0; i < 400 && health.state().probes === before; i++) await Bun.sleep(5);
    await clock.settle();
  };
  await clock.advance(0); // the first probe runs at once
  for (let i = 0; i < 400 && health.state().probes === 0; i++) await Bun.sleep(5);
  return { clock, health, restarts, metrics, step, stopHa: () => server!.stop(true), stopAll: () => { health.stop(); watchdog.stop(); } };
}

describe("watchdog with probeHa against a 127.0.0.1 HTTP server", () => {
  test("HA that stops answering is restarted after unhealthy_after, then answers again", async () => {
    const h = await run(true);
    expect(h.health.state()).toMatchObject({ up: true, everUp: true });
    for (let i = 0; i < 4; i++) await h.step();
    expect(h.restarts).toEqual([]);
    h.stopHa();
    const stoppedAt = h.clock.now();
    for (let i = 0; i < 30 && h.restarts.length === 0; i++) await h.step();
    expect(h.restarts.length).toBe(1);
    expect(h.restarts[0]!.reason).toBe("watchdog");
    const after = h.restarts[0]!.at - stoppedAt;
    expect(after).toBeGreaterThanOrEqual(5 * MIN);
    expect(after).toBeLessThanOrEqual(5 * MIN + 2 * INTERVAL);
    expect(h.health.state().lastError).toMatch(/127\.0\.0\.1/);
    await h.step();
    expect(h.health.state().up).toBe(true);
    expect(h.metrics.render()).toMatch(/^havm_vm_restarts_total\{reason="watchdog"\} 1$/m);
    h.stopAll();
  }, 30_000);

  test("with the watchdog off, nothing restarts; metrics still show HA down", async () => {
    const h = await run(false);
    h.stopHa();
    for (let i = 0; i < 30; i++) await h.step();
    expect(h.restarts).toEqual([]);
    expect(h.metrics.render()).toMatch(/^havm_ha_up 0$/m);
    h.stopAll();
  }, 30_000);
});
