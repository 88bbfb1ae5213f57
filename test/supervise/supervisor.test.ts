// The supervisor end to end with everything real except the hypervisor: a fake VM (the real one is covered
// by the QEMU boot and e2e tests), a real HTTP "HA", the real control socket, metrics, watchdog and chain.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { supervise } from "../../src/supervise/supervisor.ts";
import { acquireVmLock } from "../../src/supervise/lock.ts";
import { controlRequest } from "../../src/supervise/control.ts";
import { parseConfigText } from "../../src/config/load.ts";
import { resolvePaths } from "../../src/config/paths.ts";
import { HavmMetrics } from "../../src/metrics/havm-metrics.ts";
import { buildVmSpec } from "../../src/vm/build-spec.ts";
import type { Backend, BackendEvent, VmHandle } from "../../src/vm/backend.ts";
import { FakeVm } from "./fixtures.ts";

/** A backend whose VMs are FakeVms; `make` decides how each boot behaves. */
class FakeBackend implements Backend {
  readonly name = "qemu" as const;
  readonly vms: FakeVm[] = [];
  constructor(private readonly make: (boot: number) => FakeVm) {}
  async probe() {
    return { backend: "qemu" as const, usable: true, details: ["fake"] };
  }
  limits() {
    return { cpus: 2, memoryBytes: 8 << 30, minCpus: 1, maxCpus: 8, minMemoryBytes: 512 << 20, maxMemoryBytes: 8 << 30 };
  }
  async create(): Promise<VmHandle> {
    const vm = this.make(this.vms.length + 1);
    this.vms.push(vm);
    return vm;
  }
}

/** A FakeVm that can also report a crash through its event stream. */
class CrashingVm extends FakeVm {
  private listeners = new Set<(e: BackendEvent) => void>();
  override onEvent(l: (e: BackendEvent) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  crash(message: string): void {
    for (const l of this.listeners) l({ type: "stopped-with-error", message });
    this.powerOff();
  }
}

function setup(yaml: string) {
  const home = mkdtempSync(join(tmpdir(), "havm-sup-"));
  const paths = resolvePaths({ HOME: home }, "linux");
  const loaded = parseConfigText(yaml, join(home, "config.yml"));
  const ctx = { paths, loaded, config: loaded.config };
  const spec = buildVmSpec({
    config: loaded.config,
    vm: paths.vm,
    arch: "x86_64",
    resources: { cpus: 1, memoryBytes: 512 << 20, notes: [] },
    identity: { uuid: "00000000-0000-4000-8000-000000000000", mac: "02:00:00:00:00:01", nvramCreate: true },
    forwards: [],
  });
  require("node:fs").mkdirSync(paths.vm.dir, { recursive: true });
  const lock = acquireVmLock(paths.vm.lock);
  const metrics = new HavmMetrics({ version: "test", backend: "qemu" });
  return { ctx, paths, spec, lock, metrics };
}

/** An HTTP server standing in for HA's port; `answering` switches it between 200 and a closed door. */
function fakeHaPort() {
  const state = { answering: true, shutdowns: 0 };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      if (!state.answering) return new Promise<Response>(() => {}); // frozen HA: never answers
      if (req.method === "POST" && new URL(req.url).pathname === "/api/services/hassio/host_shutdown") {
        state.shutdowns++;
        return Response.json([]);
      }
      return new Response("<html>HA</html>");
    },
  });
  return { state, server, endpoint: { host: "127.0.0.1", port: server.port! } };
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe("supervisor", () => {
  test("the guest powering itself off ends havm with exit 0 and releases the control socket", async () => {
    const s = setup("");
    const backend = new FakeBackend(() => new FakeVm());
    const run = supervise({ ...s, backend });
    await Bun.sleep(200);
    const status = await controlRequest(s.paths.vm.controlSocket, { cmd: "status" }, { timeoutMs: 2000 });
    expect(status.state).toBe("running");
    expect(status.pid).toBe(process.pid);
    backend.vms[0]!.powerOff();
    expect(await run).toBe(0);
    await expect(controlRequest(s.paths.vm.controlSocket, { cmd: "status" }, { timeoutMs: 500 })).rejects.toThrow();
    s.lock.release();
  });

  test("a VM that stops with an error ends havm with exit 1", async () => {
    const s = setup("");
    const backend = new FakeBackend(() => new CrashingVm());
    const run = supervise({ ...s, backend });
    await Bun.sleep(200);
    (backend.vms[0] as CrashingVm).crash("hypervisor died");
    expect(await run).toBe(1);
    s.lock.release();
  });

  test("`havm stop` runs the chain through HA's API with the token and answers after the VM is down", async () => {
    const ha = fakeHaPort();
    cleanups.push(() => ha.server.stop(true));
    const s = setup(`ha:\n  api_token: secret-token\n`);
    const backend = new FakeBackend(() => new FakeVm({ 8123: ha.endpoint }));
    const run = supervise({ ...s, backend });
    await Bun.sleep(300);
    // The API call powers the fake guest off shortly after, like HA would.
    const vm = backend.vms[0]!;
    const poll = setInterval(() => ha.state.shutdowns > 0 && vm.powerOff(), 50);
    const reply = await controlRequest(s.paths.vm.controlSocket, { cmd: "stop" }, { timeoutMs: 20_000 });
    clearInterval(poll);
    expect(reply).toMatchObject({ ok: true, clean: true, stoppedBy: "ha-api" });
    expect(await run).toBe(0);
    expect(s.metrics.render()).toMatch(/havm_shutdown_step_total\{step="ha-api",result="stopped"\} 1/);
    s.lock.release();
  });

  test("a guest that ignores everything is forced off within the bound, and havm exits 1", async () => {
    const s = setup(`shutdown:\n  timeout_seconds: 3\n`);
    const backend = new FakeBackend(() => new FakeVm());
    const run = supervise({ ...s, backend });
    await Bun.sleep(200);
    const t0 = performance.now();
    const reply = await controlRequest(s.paths.vm.controlSocket, { cmd: "stop" }, { timeoutMs: 20_000 });
    expect(reply).toMatchObject({ ok: true, clean: false, stoppedBy: "force" });
    expect(await run).toBe(1);
    expect(performance.now() - t0).toBeLessThan(3000 + 2000);
    expect(backend.vms[0]!.calls).toContain("requestStop");
    expect(backend.vms[0]!.calls).toContain("forceStop");
    s.lock.release();
  });

  test("`havm stop --timeout` bounds the chain instead of shutdown.timeout_seconds", async () => {
    const s = setup(`shutdown:\n  timeout_seconds: 600\n`);
    const backend = new FakeBackend(() => new FakeVm());
    const run = supervise({ ...s, backend });
    await Bun.sleep(200);
    const t0 = performance.now();
    const reply = await controlRequest(s.paths.vm.controlSocket, { cmd: "stop", timeoutSeconds: 2 }, { timeoutMs: 20_000 });
    expect(reply).toMatchObject({ ok: true, clean: false, stoppedBy: "force" });
    expect(performance.now() - t0).toBeLessThan(2000 + 2000);
    expect(await run).toBe(1);
    s.lock.release();
  });

  test("the watchdog restarts a VM whose HA stopped answering, and counts it", async () => {
    const ha = fakeHaPort();
    cleanups.push(() => ha.server.stop(true));
    const s = setup(
      `watchdog:\n  enabled: true\n  unhealthy_after: 600ms\n  probe_interval: 100ms\nshutdown:\n  timeout_seconds: 2\n`,
    );
    const backend = new FakeBackend(() => new FakeVm({ 8123: ha.endpoint }, { honourAcpiAfterMs: 20 }));
    const run = supervise({ ...s, backend });
    // HA answers, then freezes: after unhealthy_after the watchdog asks for a restart.
    await Bun.sleep(500);
    expect(s.metrics.render()).toMatch(/^havm_ha_up 1$/m);
    ha.state.answering = false;
    const deadline = Date.now() + 15_000;
    while (backend.vms.length < 2 && Date.now() < deadline) await Bun.sleep(100);
    expect(backend.vms.length).toBe(2);
    expect(backend.vms[0]!.state()).toBe("stopped");
    expect(s.metrics.render()).toMatch(/havm_vm_restarts_total\{reason="watchdog"\} 1/);
    expect(s.metrics.render()).toMatch(/^havm_vm_starts_total 2$/m);
    // Stop for good: the second VM honours the power button.
    backend.vms[1]!.powerOff();
    expect(await run).toBe(0);
    s.lock.release();
  });

  test("nothing restarts when the watchdog is off", async () => {
    const ha = fakeHaPort();
    cleanups.push(() => ha.server.stop(true));
    const s = setup(`watchdog:\n  unhealthy_after: 300ms\n  probe_interval: 100ms\n`);
    const backend = new FakeBackend(() => new FakeVm({ 8123: ha.endpoint }));
    const run = supervise({ ...s, backend });
    await Bun.sleep(400);
    ha.state.answering = false;
    await Bun.sleep(1500);
    expect(backend.vms.length).toBe(1);
    expect(s.metrics.render()).toMatch(/^havm_ha_up 0$/m);
    backend.vms[0]!.powerOff();
    expect(await run).toBe(0);
    s.lock.release();
  });
});
