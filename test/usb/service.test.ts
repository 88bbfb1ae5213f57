import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsbService, type UsbServiceDeps } from "../../src/usb/service.ts";
import { UsbRegistry } from "../../src/usb/registry.ts";
import { listHostUsbDevices } from "../../src/usb/host.ts";
import type { UsbDeviceRef } from "../../src/vm/spec.ts";
import { HavmError } from "../../src/util/errors.ts";
import { startControlServer, controlRequest } from "../../src/supervise/control.ts";

const root = mkdtempSync(join(tmpdir(), "havm-usbsvc-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

interface Plugged { port: string; vid: string; pid: string; bus: number; addr: number; serial?: string; product?: string }

/** A fake sysfs whose contents the test changes between "boots"; device nodes exist (accessible). */
function world() {
  const base = mkdtempSync(join(root, "w-"));
  const sysfs = join(base, "sys");
  const dev = join(base, "dev");
  mkdirSync(sysfs, { recursive: true });
  const plug = (p: Plugged) => {
    const dir = join(sysfs, p.port);
    mkdirSync(dir, { recursive: true });
    const attrs: Record<string, string> = { idVendor: p.vid, idProduct: p.pid, busnum: String(p.bus), devnum: String(p.addr), bDeviceClass: "00" };
    if (p.serial) attrs.serial = p.serial;
    if (p.product) attrs.product = p.product;
    for (const [k, v] of Object.entries(attrs)) writeFileSync(join(dir, k), v + "\n");
    const nodeDir = join(dev, String(p.bus).padStart(3, "0"));
    mkdirSync(nodeDir, { recursive: true });
    writeFileSync(join(nodeDir, String(p.addr).padStart(3, "0")), "");
  };
  const unplug = (port: string) => rmSync(join(sysfs, port), { recursive: true, force: true });
  return { plug, unplug, listHost: () => listHostUsbDevices({ platform: "linux", sysfsRoot: sysfs, devRoot: dev }) };
}

class FakeVm {
  calls: string[] = [];
  attached: UsbDeviceRef[] = [];
  failNext?: string;
  async attachUsb(d: UsbDeviceRef) {
    if (this.failNext) {
      const m = this.failNext;
      this.failNext = undefined;
      throw new Error(m);
    }
    this.calls.push(`attach ${d.vendorId.toString(16)}:${d.productId.toString(16)} bus=${d.hostBus} addr=${d.hostAddr}`);
    this.attached.push(d);
  }
  async detachUsb(d: UsbDeviceRef) {
    this.calls.push(`detach ${d.vendorId.toString(16)}:${d.productId.toString(16)} bus=${d.hostBus} addr=${d.hostAddr}`);
    this.attached = this.attached.filter((a) => a !== d && !(a.hostBus === d.hostBus && a.hostAddr === d.hostAddr));
  }
}

function setup(opts: Partial<UsbServiceDeps> = {}) {
  const w = world();
  const vm = new FakeVm();
  const registry = new UsbRegistry(join(mkdtempSync(join(root, "vm-")), "usb.json"));
  const logs: string[] = [];
  let gauge = -1;
  const deps: UsbServiceDeps = {
    vm,
    registry,
    listHost: w.listHost,
    enabled: true,
    log: { info: (m, f) => logs.push(`info ${m} ${JSON.stringify(f)}`), warn: (m, f) => logs.push(`warn ${m} ${JSON.stringify(f)}`) },
    metrics: { setUsbAccessories: (n) => (gauge = n) },
    ...opts,
  };
  const svc = new UsbService(deps);
  return { w, vm, registry, logs, svc, deps, gauge: () => gauge };
}

const SONOFF: Plugged = { port: "1-1.2", vid: "10c4", pid: "ea60", bus: 1, addr: 5, serial: "A1", product: "Sonoff Zigbee" };
const ZSTICK: Plugged = { port: "2-1", vid: "0658", pid: "0200", bus: 2, addr: 3, product: "Z-Stick" };

async function refusal(p: Promise<unknown>): Promise<HavmError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(HavmError);
    return e as HavmError;
  }
  throw new Error("expected a refusal");
}

describe("UsbService", () => {
  test("over the control socket: attach hot-plugs, remembers, counts; detach unplugs and forgets", async () => {
    const { w, vm, registry, svc, gauge } = setup();
    w.plug(SONOFF);
    w.plug(ZSTICK);
    const sock = join(mkdtempSync(join(root, "s-")), "havm.sock");
    const server = await startControlServer(sock, svc.handlers());
    const ask = (req: { cmd: string; [k: string]: unknown }) => controlRequest(sock, req, { timeoutMs: 5000 });
    try {
      const res = (await ask({ cmd: "usb.attach", selector: "10c4:ea60" })) as { ok: boolean; device: { port: string } };
      expect(res.ok).toBe(true);
      expect(res.device.port).toBe("1-1.2");
      expect(svc.attached()).toEqual([{ selector: "10c4:ea60:A1", port: "1-1.2", name: "Sonoff Zigbee", vendorId: "10c4", productId: "ea60", serial: "A1" }]);
      // A refusal comes back as a HavmError with its hint and exit code.
      const refused = await ask({ cmd: "usb.attach", selector: "10c4:ea60" }).catch((e) => e as HavmError);
      expect(refused).toBeInstanceOf(HavmError);
      expect((refused as HavmError).message).toContain("already attached");
      expect((refused as HavmError).hint).toContain("havm usb detach");
      expect((refused as HavmError).exitCode).toBe(2);
      const listed = (await ask({ cmd: "usb.list" })) as unknown as { devices: { port: string; attached: boolean; remembered: boolean }[] };
      expect(listed.devices.map((d) => [d.port, d.attached, d.remembered])).toEqual([["1-1.2", true, true], ["2-1", false, false]]);
    } finally {
      await server.close();
    }
    expect(vm.calls).toEqual(["attach 10c4:ea60 bus=undefined addr=undefined"]);
    expect(registry.list()).toMatchObject([{ vendorId: 0x10c4, productId: 0xea60, serial: "A1", name: "Sonoff Zigbee" }]);
    expect(gauge()).toBe(1);
    expect(svc.attachedCount()).toBe(1);

    await svc.handlers()["usb.detach"]!({ cmd: "usb.detach", selector: "1-1.2" });
    expect(vm.calls[1]).toBe("detach 10c4:ea60 bus=undefined addr=undefined");
    expect(registry.list()).toEqual([]);
    expect(gauge()).toBe(0);
  });

  test("refusals: unknown device, already attached, not attached, bad selector, disabled", async () => {
    const { w, vm, svc } = setup();
    w.plug(SONOFF);
    expect((await refusal(svc.attach("dead:beef"))).code).toBe("usb.unknown");
    await svc.attach("10c4:ea60:A1");
    const again = await refusal(svc.attach("10c4:ea60"));
    expect(again.code).toBe("usb.already-attached");
    expect(again.message).toContain("already attached");
    expect(again.hint).toContain("havm usb detach 10c4:ea60:A1");
    expect((await refusal(svc.detach("0658:0200"))).code).toBe("usb.not-attached");
    expect((await refusal(svc.attach("nonsense"))).code).toBe("usb.selector");
    expect((await refusal(svc.handlers()["usb.attach"]!({ cmd: "usb.attach" }))).code).toBe("usb.selector");
    expect(vm.calls.length).toBe(1);

    const off = setup({ enabled: false });
    off.w.plug(SONOFF);
    const disabled = await refusal(off.svc.attach("10c4:ea60"));
    expect(disabled.code).toBe("usb.disabled");
    expect(disabled.hint).toContain("usb");
    expect((await refusal(off.svc.detach("10c4:ea60"))).code).toBe("usb.disabled");
    expect(off.vm.calls).toEqual([]);
    expect(await off.svc.reattachRemembered()).toEqual({ attached: [], missing: [], failed: [] });
  });

  test("two identical sticks: ids are ambiguous, ports pick; the second attach by ids takes the free one", async () => {
    const { w, vm, svc } = setup();
    w.plug({ port: "1-3", vid: "1a86", pid: "55d4", bus: 1, addr: 7 });
    w.plug({ port: "1-4", vid: "1a86", pid: "55d4", bus: 1, addr: 8 });
    expect((await refusal(svc.attach("1a86:55d4"))).code).toBe("usb.ambiguous");
    await svc.attach("1-4");
    await svc.attach("1a86:55d4"); // only 1-3 is free now
    expect(vm.calls).toEqual(["attach 1a86:55d4 bus=1 addr=8", "attach 1a86:55d4 bus=1 addr=7"]);
    expect((await refusal(svc.attach("1a86:55d4"))).code).toBe("usb.already-attached");
  });

  test("an inaccessible device node is refused with what to change, before touching the VM", async () => {
    const { w, vm, svc, deps } = setup();
    w.plug(SONOFF);
    const listHost = deps.listHost;
    deps.listHost = async () => {
      const l = await listHost();
      return { devices: l.devices.map((d) => ({ ...d, accessible: false, accessProblem: "/dev/bus/usb/001/005 is not readable and writable ... udev rule" })) };
    };
    const e = await refusal(svc.attach("10c4:ea60"));
    expect(e.code).toBe("usb.permission");
    expect(e.message).toContain("udev rule");
    expect(vm.calls).toEqual([]);
  });

  test("a failed attach is not remembered and not counted", async () => {
    const { w, vm, registry, svc, gauge } = setup();
    w.plug(SONOFF);
    vm.failNext = "QMP: Could not open '/dev/bus/usb/001/005': Permission denied";
    await expect(svc.attach("10c4:ea60")).rejects.toThrow("Permission denied");
    expect(registry.list()).toEqual([]);
    expect(svc.attachedCount()).toBe(0);
    expect(gauge()).toBe(0);
  });

  test("remembered devices are re-attached on the next run; absent ones are logged and kept", async () => {
    const first = setup();
    first.w.plug(SONOFF);
    first.w.plug(ZSTICK);
    await first.svc.attach("10c4:ea60");
    await first.svc.attach("0658:0200");

    // Next run: a new supervisor, same registry; the Sonoff moved to another port, the Z-Stick is unplugged.
    const w2 = world();
    w2.plug({ ...SONOFF, port: "3-2", bus: 3, addr: 9 });
    const vm2 = new FakeVm();
    const logs: string[] = [];
    let gauge = -1;
    const svc2 = new UsbService({
      vm: vm2,
      registry: first.registry,
      listHost: w2.listHost,
      enabled: true,
      log: { info: (m, f) => logs.push(`${m} ${JSON.stringify(f)}`), warn: (m, f) => logs.push(`WARN ${m} ${JSON.stringify(f)}`) },
      metrics: { setUsbAccessories: (n) => (gauge = n) },
    });
    const summary = await svc2.reattachRemembered();
    expect(summary).toEqual({ attached: ["10c4:ea60:A1"], missing: ["0658:0200"], failed: [] });
    expect(vm2.calls).toEqual(["attach 10c4:ea60 bus=undefined addr=undefined"]);
    expect(gauge).toBe(1);
    expect(logs.some((l) => l.includes("not plugged in") && l.includes("0658:0200"))).toBe(true);
    expect(first.registry.list().length).toBe(2);

    // Running it again (e.g. after a watchdog restart without vmStopped) does not double-attach.
    expect((await svc2.reattachRemembered()).attached).toEqual([]);
    // After the VM stops everything is detached; a new boot attaches again.
    svc2.vmStopped();
    expect(gauge).toBe(0);
    expect((await svc2.reattachRemembered()).attached).toEqual(["10c4:ea60:A1"]);

    // Detaching a remembered-but-absent device forgets it.
    await svc2.detach("0658:0200");
    expect(first.registry.list().map((d) => d.vendorId)).toEqual([0x10c4]);
  });

  test("a corrupt registry at boot is logged, not thrown, and the file is kept", async () => {
    const { w, registry, svc, logs } = setup();
    w.plug(SONOFF);
    writeFileSync(registry.path, "{oops");
    const s = await svc.reattachRemembered();
    expect(s.failed.length).toBe(1);
    expect(logs.some((l) => l.startsWith("warn") && l.includes(registry.path))).toBe(true);
  });

  test("concurrent attaches are serialized: one wins, the other is refused as already attached", async () => {
    const { w, vm, svc } = setup();
    w.plug(SONOFF);
    const results = await Promise.allSettled([svc.attach("10c4:ea60"), svc.attach("10c4:ea60")]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    expect(vm.calls.length).toBe(1);
  });
});
