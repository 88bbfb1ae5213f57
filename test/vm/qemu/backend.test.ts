// The QEMU backend's failure paths and process ownership, with real QEMU where it matters.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { vmPaths } from "../../../src/config/paths.ts";
import type { VmSpec } from "../../../src/vm/spec.ts";
import type { BackendEvent } from "../../../src/vm/backend.ts";
import type { QmpClient } from "../../../src/vm/qemu/qmp.ts";
import { bridgeAclAllows, checkBridge, findQemuBinary, QemuBackend, QemuVm, usbDeviceId } from "../../../src/vm/qemu/qemu.ts";
import { findFirmware } from "../../../src/vm/qemu/firmware.ts";
import { HavmError } from "../../../src/util/errors.ts";

const QEMU = Bun.which("qemu-system-x86_64");
const HELPER = ["/usr/lib/qemu/qemu-bridge-helper", "/usr/libexec/qemu-bridge-helper"].find((p) => existsSync(p));
const canBoot = !!QEMU && existsSync("/usr/share/OVMF/OVMF_CODE_4M.fd") && process.arch === "x64";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "havm-qemu-be-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function tinySpec(vmDir: string, over: Partial<VmSpec> = {}): VmSpec {
  const p = vmPaths(vmDir);
  return {
    version: 1,
    name: "t",
    arch: "x86_64",
    cpus: 1,
    memoryBytes: 128 * 1024 * 1024,
    efi: { varsPath: p.nvram, create: true },
    machineIdentifier: { path: p.machineIdentifier, uuid: "11111111-2222-4333-8444-555555555555" },
    disks: [{ id: "root", path: p.disk, readOnly: false, caching: "cached", sync: "full", bus: "virtio" }],
    network: { mode: "nat", mac: "02:00:00:00:00:03", forwards: [{ guestPort: 8123, hostPort: 0 }] },
    serialLogPath: p.serialLog,
    entropy: true,
    balloon: true,
    usbController: true,
    watchdog: true,
    ...over,
  };
}

describe("binary and bridge checks", () => {
  test("a configured binary that does not exist is a config error", () => {
    expect(() => findQemuBinary("x86_64", join(dir, "qemu"))).toThrow(/not an executable/);
  });

  test.skipIf(!!Bun.which("qemu-system-aarch64"))("missing qemu-system-aarch64 names the Debian package", () => {
    try {
      findQemuBinary("aarch64");
      throw new Error("expected failure");
    } catch (e) {
      expect(e).toBeInstanceOf(HavmError);
      expect((e as HavmError).hint).toContain("qemu-system-arm");
    }
  });

  test("bridge.conf ACL: allow/deny/all/include", () => {
    expect(bridgeAclAllows("allow br0\n", "br0")).toBe(true);
    expect(bridgeAclAllows("allow virbr0\n", "br0")).toBe(false);
    expect(bridgeAclAllows("# allow br0\nallow all\n", "br0")).toBe(true);
    expect(bridgeAclAllows("allow all\ndeny br0\n", "br0")).toBe("denied");
    expect(bridgeAclAllows("include /etc/qemu/extra.conf\n", "br0", (p) => (p === "/etc/qemu/extra.conf" ? "allow br0" : undefined))).toBe(true);
  });

  test("checkBridge explains each missing permission", () => {
    const net = join(dir, "net");
    mkdirSync(join(net, "eth0"), { recursive: true });
    mkdirSync(join(net, "br0", "bridge"), { recursive: true });
    const helper = join(dir, "qemu-bridge-helper");
    writeFileSync(helper, "", { mode: 0o755 });
    const conf = join(dir, "bridge.conf");
    const opts = { sysClassNet: net, helperCandidates: [helper], bridgeConfPath: conf };
    expect(() => checkBridge("wlan9", { ...opts, uid: 0 })).toThrow(/does not exist/);
    expect(() => checkBridge("eth0", { ...opts, uid: 0 })).toThrow(/not a Linux bridge/);
    expect(() => checkBridge("br0", { ...opts, helperCandidates: [join(dir, "none")], uid: 0 })).toThrow(/not installed/);
    try {
      checkBridge("br0", { ...opts, uid: 1000 });
      throw new Error("expected failure");
    } catch (e) {
      expect((e as HavmError).hint).toContain(`chmod u+s ${helper}`);
    }
    try {
      checkBridge("br0", { ...opts, uid: 0 });
      throw new Error("expected failure");
    } catch (e) {
      expect((e as HavmError).message).toContain("does not exist");
      expect((e as HavmError).hint).toContain(`echo "allow br0" | sudo tee -a ${conf}`);
    }
    writeFileSync(conf, "allow virbr0\n");
    expect(() => checkBridge("br0", { ...opts, uid: 0 })).toThrow(/no "allow br0" line/);
    writeFileSync(conf, "allow br0\n");
    expect(checkBridge("br0", { ...opts, uid: 0 })).toBe(helper);
  });

  test("usb device ids are stable and QEMU-safe", () => {
    expect(usbDeviceId({ vendorId: 0x10c4, productId: 0xea60 })).toBe("usb-10c4-ea60");
    expect(usbDeviceId({ vendorId: 0x10c4, productId: 0xea60, serial: "a1:b2 c3" })).toBe("usb-10c4-ea60-a1b2c3");
    expect(usbDeviceId({ vendorId: 1, productId: 2, hostBus: 3, hostAddr: 4 })).toBe("usb-0001-0002-3-4");
  });
});

describe.skipIf(!canBoot)("QEMU process handling (real QEMU, firmware only)", () => {
  test("QEMU dies with havm when havm is SIGKILLed (setpriv --pdeathsig)", async () => {
    const holder = Bun.spawn([process.execPath, join(import.meta.dir, "fixtures", "hold-vm.ts"), join(dir, "vm")], {
      stdout: "pipe",
      stderr: "ignore",
      stdin: "ignore",
    });
    const reader = (holder.stdout as ReadableStream<Uint8Array>).getReader();
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const pid = (JSON.parse(text.trim()) as { qemuPid: number }).qemuPid;
    expect(pid).toBeGreaterThan(0);
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    holder.kill("SIGKILL");
    await holder.exited;
    let alive = true;
    for (let i = 0; i < 100 && alive; i++) {
      await Bun.sleep(50);
      alive = existsSync(`/proc/${pid}`) && !(await Bun.file(`/proc/${pid}/stat`).text().catch(() => " Z ")).includes(") Z ");
    }
    if (alive) process.kill(pid, "SIGKILL");
    expect(alive).toBe(false);
  }, 60_000);

  test("a QEMU that refuses to start gives its message, and the handle is back to stopped", async () => {
    const vmDir = join(dir, "vm");
    mkdirSync(vmDir, { recursive: true });
    // No disk file: QEMU fails opening it.
    const be = new QemuBackend({ qemu: { accel: "tcg" }, paths: vmPaths(vmDir) });
    const vm = await be.create(tinySpec(vmDir));
    const e = await vm.start().catch((x) => x);
    expect(e).toBeInstanceOf(HavmError);
    expect((e as HavmError).message).toContain("haos.img");
    expect(vm.state()).toBe("stopped");
    await vm.close();
  }, 60_000);

  test.skipIf(!HELPER)("bridge mode: when QEMU's bridge helper refuses, the error says what to change", async () => {
    const helper = HELPER!;
    const vmDir = join(dir, "vm");
    mkdirSync(vmDir, { recursive: true });
    writeFileSync(vmPaths(vmDir).disk, new Uint8Array(1024 * 1024));
    // Skip the up-front checks (create() would refuse first) to see QEMU's own failure mapped.
    const vm = new QemuVm(tinySpec(vmDir, { network: { mode: "bridge", interface: "havmnobr0", mac: "02:00:00:00:00:04", forwards: [] } }), {
      binary: QEMU!,
      firmware: findFirmware("x86_64"),
      bridgeHelper: helper,
      paths: vmPaths(vmDir),
      guestAgent: false,
      chooseAccel: async () => ({ accel: "tcg", reason: "test" }),
    });
    const e = await vm.start().catch((x) => x);
    expect(e).toBeInstanceOf(HavmError);
    expect((e as HavmError).message).toContain("bridge helper failed");
    expect((e as HavmError).hint).toContain('"allow havmnobr0"');
    await vm.close();
  }, 60_000);

  test("a forwarded port held by someone else: QEMU fails with a clear message when the port was fixed", async () => {
    const vmDir = join(dir, "vm");
    mkdirSync(vmDir, { recursive: true });
    writeFileSync(vmPaths(vmDir).disk, new Uint8Array(1024 * 1024));
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const be = new QemuBackend({ qemu: { accel: "tcg" }, paths: vmPaths(vmDir) });
      const spec = tinySpec(vmDir, { network: { mode: "nat", mac: "02:00:00:00:00:03", forwards: [{ guestPort: 8123, hostPort: server.port }] } });
      const vm = await be.create(spec);
      const e = await vm.start().catch((x) => x);
      expect(e).toBeInstanceOf(HavmError);
      expect((e as HavmError).hint).toContain("port");
      await vm.close();
    } finally {
      server.stop(true);
    }
  }, 60_000);

  test("stale sockets are replaced; QEMU killed from outside -> stopped-with-error; restart; close() kills", async () => {
    const vmDir = join(dir, "vm");
    const p = vmPaths(vmDir);
    mkdirSync(vmDir, { recursive: true });
    writeFileSync(p.disk, new Uint8Array(1024 * 1024));
    writeFileSync(p.qmpSocket, "left over by a killed run");
    const vm = (await new QemuBackend({ qemu: { accel: "tcg" }, paths: p }).create(
      tinySpec(vmDir, { balloon: false, entropy: false, watchdog: false }),
    )) as QemuVm;
    const events: BackendEvent[] = [];
    vm.onEvent((ev) => events.push(ev));
    await vm.start();
    const pid1 = vm.pid!;
    process.kill(pid1, "SIGKILL");
    await vm.stopped();
    expect(vm.state()).toBe("stopped");
    const err = events.find((ev) => ev.type === "stopped-with-error");
    expect(err && err.type === "stopped-with-error" && err.message).toContain("SIGKILL");
    await vm.start();
    const pid2 = vm.pid!;
    expect(pid2).not.toBe(pid1);
    expect(vm.state()).toBe("running");
    await vm.close();
    expect(existsSync(`/proc/${pid2}`)).toBe(false);
    expect(vm.state()).toBe("stopped");
  }, 60_000);

  test("USB: attaching a device that is not connected fails clearly; VM keeps running; balloon answers", async () => {
    const vmDir = join(dir, "vm");
    mkdirSync(vmDir, { recursive: true });
    writeFileSync(vmPaths(vmDir).disk, new Uint8Array(1024 * 1024));
    const be = new QemuBackend({ qemu: { accel: "tcg" }, paths: vmPaths(vmDir) });
    const vm = await be.create(tinySpec(vmDir));
    await vm.start();
    try {
      const e = await vm.attachUsb({ vendorId: 0xdead, productId: 0xbeef, name: "Nope" }).catch((x) => x);
      expect(e).toBeInstanceOf(HavmError);
      expect((e as HavmError).message).toContain("dead:beef");
      await vm.setBalloonTarget(64 * 1024 * 1024);
      const stats = await vm.memoryStats();
      // Firmware only: no balloon driver, so the target is requested but the size stays.
      expect(stats.targetBytes).toBe(128 * 1024 * 1024);
      expect(vm.state()).toBe("running");
      // QMP events become backend events: a host reset, and pause/resume from the monitor.
      const events: BackendEvent[] = [];
      vm.onEvent((ev) => events.push(ev));
      const monitor = (vm as unknown as { qmp: QmpClient }).qmp;
      const reset = monitor.waitEvent("RESET");
      await monitor.execute("system_reset");
      await reset;
      expect(events).toContainEqual({ type: "reset", reason: "host-qmp-system-reset" });
      const stop = monitor.waitEvent("STOP");
      await monitor.execute("stop");
      await stop;
      expect(vm.state()).toBe("paused");
      const resume = monitor.waitEvent("RESUME");
      await monitor.execute("cont");
      await resume;
      expect(vm.state()).toBe("running");
      expect(events.filter((x) => x.type === "state")).toEqual([
        { type: "state", state: "paused" },
        { type: "state", state: "running" },
      ]);
      // requestStop is delivered (the firmware ignores it); forceStop then stops it.
      expect(await vm.requestStop()).toBe(true);
      await vm.forceStop();
      await vm.stopped();
      expect(vm.state()).toBe("stopped");
      expect(await vm.requestStop()).toBe(false);
    } finally {
      await vm.close();
    }
  }, 60_000);
});
