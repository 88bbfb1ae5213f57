// `havm usb` as a user runs it (sources through bun, temp HOME), against no supervisor and against a
// control server that serves a UsbService over a fake sysfs and a recording VM.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { resolvePaths } from "../../src/config/paths.ts";
import { startControlServer } from "../../src/supervise/control.ts";
import { UsbService } from "../../src/usb/service.ts";
import { UsbRegistry } from "../../src/usb/registry.ts";
import { listHostUsbDevices } from "../../src/usb/host.ts";
import type { UsbDeviceRef } from "../../src/vm/spec.ts";
import { formatUsbList } from "../../src/commands/usb.ts";

const ROOT = join(import.meta.dir, "../..");
const BUN = process.execPath;
const root = mkdtempSync(join(tmpdir(), "havm-usbcli-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function havm(home: string, ...args: string[]) {
  const p = Bun.spawn([BUN, join(ROOT, "src/main.ts"), ...args], {
    cwd: home,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, TMPDIR: tmpdir(), NO_COLOR: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, exitCode };
}

function homeWith(config?: string) {
  const home = mkdtempSync(join(root, "home-"));
  const paths = resolvePaths({ HOME: home }, "linux");
  if (config) {
    mkdirSync(dirname(paths.configFile), { recursive: true });
    writeFileSync(paths.configFile, config);
  }
  mkdirSync(paths.vm.dir, { recursive: true });
  return { home, paths };
}

describe("havm usb without a running supervisor", () => {
  test("list shows the host and says the VM is not running", async () => {
    const { home, paths } = homeWith();
    new UsbRegistry(paths.vm.usbRegistry).add({ vendorId: 0x10c4, productId: 0xea60, serial: "A1", name: "Sonoff" });
    const r = await havm(home, "usb", "list");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("The VM is not running");
    expect(r.stdout).toContain("10c4:ea60:A1");
    const j = await havm(home, "usb", "list", "--json");
    const parsed = JSON.parse(j.stdout);
    expect(parsed.running).toBe(false);
    expect(parsed.devices.some((d: { selector: string; remembered: boolean }) => d.selector === "10c4:ea60:A1" && d.remembered)).toBe(true);
  }, 20_000);

  test("attach/detach are refused: not running (1), bad selector (2), USB disabled (2)", async () => {
    const { home } = homeWith();
    const a = await havm(home, "usb", "attach", "10c4:ea60");
    expect(a.exitCode).toBe(1);
    expect(a.stderr).toContain("the VM is not running");
    expect(a.stderr).toContain("havm run");
    const bad = await havm(home, "usb", "detach", "nonsense");
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("not a USB device selector");
    const off = homeWith("usb:\n  enabled: false\n");
    const d = await havm(off.home, "usb", "attach", "10c4:ea60");
    expect(d.exitCode).toBe(2);
    expect(d.stderr).toContain("usb.enabled: false");
  }, 20_000);
});

describe("havm usb against a supervisor", () => {
  test("attach, list, refuse a second attach, detach", async () => {
    const { home, paths } = homeWith();
    const sysfs = join(root, "sys-" + Math.random().toString(16).slice(2));
    const dev = join(sysfs, "..", "dev-" + Math.random().toString(16).slice(2));
    mkdirSync(join(sysfs, "1-1.2"), { recursive: true });
    for (const [k, v] of Object.entries({ idVendor: "10c4", idProduct: "ea60", busnum: "1", devnum: "5", bDeviceClass: "00", serial: "A1", product: "Sonoff Zigbee" })) {
      writeFileSync(join(sysfs, "1-1.2", k), v + "\n");
    }
    mkdirSync(join(dev, "001"), { recursive: true });
    writeFileSync(join(dev, "001", "005"), "");
    const calls: string[] = [];
    const svc = new UsbService({
      vm: {
        attachUsb: async (d: UsbDeviceRef) => void calls.push(`attach ${d.hostBus}/${d.hostAddr}`),
        detachUsb: async (d: UsbDeviceRef) => void calls.push(`detach ${d.hostBus}/${d.hostAddr}`),
      },
      registry: new UsbRegistry(paths.vm.usbRegistry),
      listHost: () => listHostUsbDevices({ platform: "linux", sysfsRoot: sysfs, devRoot: dev }),
      enabled: true,
      log: { info() {}, warn() {} },
    });
    const server = await startControlServer(paths.vm.controlSocket, svc.handlers());
    try {
      const a = await havm(home, "usb", "attach", "10c4:ea60");
      expect(a.stderr).toBe("");
      expect(a.exitCode).toBe(0);
      expect(a.stdout).toBe("attached 10c4:ea60:A1 (port 1-1.2) Sonoff Zigbee\n");
      const l = await havm(home, "usb", "list");
      expect(l.stdout).toMatch(/^1-1\.2\s+10c4:ea60:A1\s+Sonoff Zigbee\s+attached$/m);
      expect(l.stdout).not.toContain("not running");
      const again = await havm(home, "usb", "attach", "1-1.2");
      expect(again.exitCode).toBe(2);
      expect(again.stderr).toContain("already attached");
      expect(again.stderr).toContain("hint: Nothing to do");
      const unknown = await havm(home, "usb", "attach", "dead:beef");
      expect(unknown.exitCode).toBe(2);
      expect(unknown.stderr).toContain("no USB device matches dead:beef");
      const d = await havm(home, "usb", "detach", "10c4:ea60:A1", "--json");
      expect(d.exitCode).toBe(0);
      expect(JSON.parse(d.stdout)).toMatchObject({ action: "detach", device: { port: "1-1.2" } });
      expect(calls).toEqual(["attach undefined/undefined", "detach undefined/undefined"]); // unique ids: QEMU matches by ids, no pinned address
    } finally {
      await server.close();
    }
  }, 30_000);
});

test("formatUsbList marks access problems and remembered devices that are not plugged in", () => {
  const text = formatUsbList({
    enabled: true,
    running: true,
    devices: [
      { port: "1-1", selector: "10c4:ea60", vendorId: "10c4", productId: "ea60", name: "CP2102", present: true, attached: false, remembered: false, accessible: false, accessProblem: "/dev/bus/usb/001/002 is not readable" },
      { port: "", selector: "0658:0200", vendorId: "0658", productId: "0200", name: "Z-Stick", present: false, attached: false, remembered: true, accessible: false },
    ],
  });
  expect(text).toContain("no access (see below)");
  expect(text).toContain("1-1 (10c4:ea60): /dev/bus/usb/001/002 is not readable");
  expect(text).toMatch(/^-\s+0658:0200\s+Z-Stick\s+remembered \(not attached\), not plugged in$/m);
});
