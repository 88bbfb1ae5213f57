// The vz backend's JS half (src/vm/vz/vz.ts) over a fake shim: Virtualization.framework cannot run
// here, so the fake emits the same NDJSON-shaped events the Objective-C shim queues.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { BackendEvent } from "../../src/vm/backend.ts";
import type { VmSpec } from "../../src/vm/spec.ts";
import { VM_SPEC_VERSION } from "../../src/vm/spec.ts";
import { VzNativeError, VzStatus, type VzNative, type VzVmNative } from "../../src/ffi/vz.ts";
import { createVzBackend, mapVzState } from "../../src/vm/vz/vz.ts";

class FakeVm implements VzVmNative {
  raw = 0;
  queue: Record<string, unknown>[] = [];
  calls: string[] = [];
  balloon = 0;
  destroyed = false;
  canRequestStop = true;
  private push(...e: Record<string, unknown>[]) {
    this.queue.push(...e);
  }
  start() {
    this.calls.push("start");
    this.raw = 1;
    this.push({ type: "state", state: 4 }, { type: "state", state: 1 }, { type: "start", ok: true });
  }
  requestStop() {
    this.calls.push("requestStop");
    if (!this.canRequestStop) throw new VzNativeError("havm_vm_request_stop", VzStatus.state, "not running");
  }
  stop() {
    this.calls.push("stop");
    this.raw = 0;
    this.push({ type: "state", state: 0 }, { type: "stop", ok: true });
  }
  rawState() {
    return this.raw;
  }
  drainEvents() {
    const out = this.queue;
    this.queue = [];
    return out;
  }
  setBalloonTarget(bytes: number) {
    this.balloon = bytes;
  }
  balloonTarget() {
    return this.balloon;
  }
  usbAttach(d: { vendorId: number; productId: number }) {
    this.calls.push(`attach ${d.vendorId}:${d.productId}`);
    this.push({ type: "usb", action: "attach", ok: d.vendorId !== 0xdead, vendorId: d.vendorId, productId: d.productId, registryId: "42", message: "device busy" });
  }
  usbDetach(d: { vendorId: number; productId: number }) {
    this.push({ type: "usb", action: "detach", ok: true, vendorId: d.vendorId, productId: d.productId, registryId: "42" });
  }
  destroy() {
    this.destroyed = true;
  }
}

function fakeNative(vm: FakeVm, seen: string[] = []): VzNative {
  return {
    abiVersion: () => 1,
    isSupported: () => true,
    limits: () => ({ minCpus: 1, maxCpus: 10, minMemoryBytes: 128 << 20, maxMemoryBytes: 64 * 2 ** 30 }),
    entitlements: () => 1,
    createMachineIdentifier: () => new Uint8Array([1, 2, 3]),
    validateMachineIdentifier: () => true,
    validate: () => {},
    create: (json: string) => {
      seen.push(json);
      return vm;
    },
    usbList: () => [],
  };
}

const spec: VmSpec = {
  version: VM_SPEC_VERSION,
  name: "havm",
  arch: "aarch64",
  cpus: 2,
  memoryBytes: 2 * 2 ** 30,
  efi: { varsPath: "/vm/NVRAM", create: false },
  machineIdentifier: { path: "/vm/MachineIdentifier", uuid: "u", vzDataBase64: "AAEC" },
  disks: [{ id: "root", path: "/vm/haos.img", readOnly: false, caching: "cached", sync: "full", bus: "virtio" }],
  network: { mode: "nat", mac: "02:1a:0b:3c:4d:05", forwards: [] },
  serialLogPath: "/vm/serial.log",
  entropy: true,
  balloon: true,
  usbController: true,
  watchdog: false,
};

const LEASES = readFileSync(join(import.meta.dir, "fixtures/dhcpd_leases.mac"), "utf8");
const ARP = readFileSync(join(import.meta.dir, "fixtures/arp-an.txt"), "utf8");

function setup(over: { leases?: string; arp?: string } = {}) {
  const vm = new FakeVm();
  const seen: string[] = [];
  const backend = createVzBackend(
    {
      native: () => fakeNative(vm, seen),
      readLeases: () => over.leases,
      arp: async () => over.arp ?? "",
      now: () => 0x67458000 * 1000,
      pollMs: 5,
    },
    "darwin",
  );
  return { vm, seen, backend };
}

describe("mapVzState", () => {
  test("every raw VZVirtualMachineState maps; Saving/Restoring/Pausing/Resuming are paused", () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 42].map(mapVzState)).toEqual([
      "stopped", "running", "paused", "error", "starting", "paused", "paused", "stopping", "paused", "paused", "error",
    ]);
  });
});

describe("vz backend over a fake shim", () => {
  test("create hands the translated JSON to the shim; start resolves on the start event; events flow", async () => {
    const { vm, seen, backend } = setup();
    const h = await backend.create(spec);
    expect(JSON.parse(seen[0]!)).toMatchObject({ version: 1, cpus: 2, network: { mode: "nat" } });
    const events: BackendEvent[] = [];
    h.onEvent((e) => events.push(e));
    expect(h.state()).toBe("stopped");
    await h.start();
    expect(h.state()).toBe("running");
    expect(events).toEqual([
      { type: "state", state: "starting" },
      { type: "state", state: "running" },
    ]);
    vm.queue.push({ type: "network-disconnected", message: "cable" }, { type: "dropped", count: 3 });
    const stopped = h.stopped();
    vm.queue.push({ type: "guest-stopped" }, { type: "state", state: 0 });
    await stopped;
    expect(events.slice(2)).toEqual([
      { type: "network-disconnected", message: "cable" },
      { type: "log", level: "warning", message: "3 VM events were dropped (queue full)" },
      { type: "guest-stopped" },
      { type: "state", state: "stopped" },
    ]);
    await h.close();
    expect(vm.destroyed).toBe(true);
  });

  test("a failed start rejects with the framework's message", async () => {
    const { vm, backend } = setup();
    vm.start = () => {
      vm.queue.push({ type: "start", ok: false, message: "Internal Virtualization error. The virtual machine failed to start." });
    };
    const h = await backend.create(spec);
    await expect(h.start()).rejects.toThrow(/failed to start: Internal Virtualization error/);
    await h.close();
  });

  test("requestStop reports whether the request was delivered; forceStop waits for the stop event", async () => {
    const { vm, backend } = setup();
    const h = await backend.create(spec);
    await h.start();
    expect(await h.requestStop()).toBe(true);
    vm.canRequestStop = false;
    expect(await h.requestStop()).toBe(false);
    await h.forceStop();
    expect(h.state()).toBe("stopped");
    expect(vm.calls).toEqual(["start", "requestStop", "requestStop", "stop"]);
    await h.close();
  });

  test("USB attach/detach resolve on their events; a failed attach rejects with the message", async () => {
    const { vm, backend } = setup();
    const h = await backend.create(spec);
    const events: BackendEvent[] = [];
    h.onEvent((e) => events.push(e));
    await h.attachUsb({ vendorId: 0x10c4, productId: 0xea60, name: "Sonoff" });
    await h.detachUsb({ vendorId: 0x10c4, productId: 0xea60 });
    await expect(h.attachUsb({ vendorId: 0xdead, productId: 1 })).rejects.toThrow(/USB attach failed: device busy/);
    expect(events).toEqual([
      { type: "usb", action: "attached", device: { vendorId: 0x10c4, productId: 0xea60 } },
      { type: "usb", action: "detached", device: { vendorId: 0x10c4, productId: 0xea60 } },
    ]);
    expect(vm.calls).toContain(`attach ${0x10c4}:${0xea60}`);
    await h.close();
  });

  test("endpoint: guest IP from the leases file, else from arp, else null", async () => {
    for (const [over, want] of [
      [{ leases: LEASES }, "192.168.64.7"],
      [{ arp: ARP }, "192.168.64.7"],
      [{}, null],
    ] as const) {
      const { backend } = setup(over);
      const h = await backend.create(spec);
      const ep = await h.endpoint(8123);
      expect(ep).toEqual(want === null ? null : { host: want, port: 8123 });
      await h.close();
    }
  });

  test("balloon target goes to the shim; memoryStats reads it back", async () => {
    const { backend } = setup();
    const h = await backend.create(spec);
    await h.setBalloonTarget(1.5 * 2 ** 30);
    expect(await h.memoryStats()).toEqual({ targetBytes: 1.5 * 2 ** 30 });
    await h.close();
  });

  test("probe and limits come from the shim; probe off macOS says unusable", async () => {
    const { backend } = setup();
    const p = await backend.probe();
    expect(p.usable).toBe(true);
    expect(p.details.join("\n")).toMatch(/build tier 1/);
    expect(backend.limits()).toMatchObject({ minCpus: 1, maxCpus: 10, minMemoryBytes: 128 << 20 });
    const linux = createVzBackend({}, "linux");
    expect((await linux.probe()).usable).toBe(false);
  });
});
