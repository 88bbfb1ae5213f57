import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync, chownSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listHostUsbDevices, usbRoots, DARWIN_UNAVAILABLE } from "../../src/usb/host.ts";

const root = mkdtempSync(join(tmpdir(), "havm-sysfs-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function fakeDevice(sysfs: string, name: string, attrs: Record<string, string>): void {
  const dir = join(sysfs, name);
  mkdirSync(dir, { recursive: true });
  for (const [k, v] of Object.entries(attrs)) writeFileSync(join(dir, k), v + "\n");
}

function fakeTree(): { sysfs: string; dev: string } {
  const base = mkdtempSync(join(root, "t-"));
  const sysfs = join(base, "sys");
  const dev = join(base, "dev");
  // Root hub, an interface, an external hub, and three devices (one without serial or names).
  fakeDevice(sysfs, "usb1", { idVendor: "1d6b", idProduct: "0002", busnum: "1", devnum: "1", bDeviceClass: "09" });
  fakeDevice(sysfs, "1-0:1.0", { bInterfaceClass: "09" });
  fakeDevice(sysfs, "1-1", { idVendor: "05e3", idProduct: "0608", busnum: "1", devnum: "2", bDeviceClass: "09", product: "USB2.0 Hub" });
  fakeDevice(sysfs, "1-1.2", {
    idVendor: "10c4", idProduct: "ea60", busnum: "1", devnum: "5", bDeviceClass: "00",
    manufacturer: "ITead", product: "Sonoff Zigbee 3.0 USB Dongle Plus", serial: "c0ffee42",
  });
  fakeDevice(sysfs, "1-1.2:1.0", { bInterfaceClass: "ff" });
  fakeDevice(sysfs, "2-1", { idVendor: "0658", idProduct: "0200", busnum: "2", devnum: "3", bDeviceClass: "02" });
  fakeDevice(sysfs, "1-3", {
    idVendor: "1a86", idProduct: "55d4", busnum: "1", devnum: "4", bDeviceClass: "02",
    product: "SONOFF Zigbee 3.0 USB Dongle Plus V2", serial: "20231112",
  });
  // A device that disappeared mid-read: no attributes.
  mkdirSync(join(sysfs, "3-1"), { recursive: true });
  for (const [bus, addr] of [["001", "005"], ["002", "003"], ["001", "004"]] as const) {
    mkdirSync(join(dev, bus), { recursive: true });
    writeFileSync(join(dev, bus, addr), "");
  }
  return { sysfs, dev };
}

describe("listHostUsbDevices (linux, fake sysfs)", () => {
  test("lists devices, skips hubs, root hubs, interfaces and vanished devices", () => {
    const { sysfs, dev } = fakeTree();
    const { devices, unavailable } = listHostUsbDevices({ platform: "linux", sysfsRoot: sysfs, devRoot: dev, canOpen: () => "ok" });
    expect(unavailable).toBeUndefined();
    expect(devices.map((d) => d.port)).toEqual(["1-3", "1-1.2", "2-1"]);
    const sonoff = devices.find((d) => d.port === "1-1.2")!;
    expect(sonoff).toMatchObject({
      vendorId: 0x10c4, productId: 0xea60, serial: "c0ffee42", bus: 1, address: 5,
      devNode: join(dev, "001", "005"), accessible: true, name: "ITead Sonoff Zigbee 3.0 USB Dongle Plus",
    });
    const zstick = devices.find((d) => d.port === "2-1")!;
    expect(zstick.serial).toBeUndefined();
    expect(zstick.name).toBe("0658:0200");
  });

  test("the default access check sees real files: a missing node is explained", () => {
    const { sysfs, dev } = fakeTree();
    rmSync(join(dev, "002"), { recursive: true });
    const { devices } = listHostUsbDevices({ platform: "linux", sysfsRoot: sysfs, devRoot: dev });
    expect(devices.find((d) => d.port === "1-1.2")!.accessible).toBe(true);
    const z = devices.find((d) => d.port === "2-1")!;
    expect(z.accessible).toBe(false);
    expect(z.accessProblem).toContain("does not exist");
  });

  test("a denied node explains the udev rule and the group", () => {
    const { sysfs, dev } = fakeTree();
    const node = join(dev, "001", "005");
    chmodSync(node, 0o660);
    const groupFile = join(root, "group");
    writeFileSync(groupFile, "root:x:0:\nplugdev:x:46:\ndialout:x:20:alice\n");
    try {
      chownSync(node, process.getuid!(), 20);
    } catch {
      // Not root: the group stays ours; the message still names a group.
    }
    const { devices } = listHostUsbDevices({
      platform: "linux", sysfsRoot: sysfs, devRoot: dev, groupFile,
      canOpen: (p) => (p === node ? "denied" : "ok"),
    });
    const s = devices.find((d) => d.port === "1-1.2")!;
    expect(s.accessible).toBe(false);
    expect(s.accessProblem).toContain(`${node} is not readable and writable`);
    expect(s.accessProblem).toContain('ATTR{idVendor}=="10c4", ATTR{idProduct}=="ea60"');
    expect(s.accessProblem).toContain("udevadm");
    expect(s.accessProblem).toContain("mode 660");
    if (process.getuid!() === 0) expect(s.accessProblem).toContain('GROUP="dialout"');
  });

  test("no sysfs is reported, not thrown", () => {
    const r = listHostUsbDevices({ platform: "linux", sysfsRoot: join(root, "nope") });
    expect(r.devices).toEqual([]);
    expect(r.unavailable).toContain("shows no USB bus");
  });

  test("darwin explains the vz backend requirement", () => {
    const r = listHostUsbDevices({ platform: "darwin" });
    expect(r.unavailable).toBe(DARWIN_UNAVAILABLE);
    expect(r.unavailable).toContain("macOS 27");
    expect(r.unavailable).toContain("entitlement");
  });

  test.skipIf(!require("node:fs").existsSync("/sys/bus/usb/devices"))("the real sysfs lists without throwing", () => {
    const r = listHostUsbDevices({ platform: "linux" });
    for (const d of r.devices) expect(d.devNode).toMatch(/^\/dev\/bus\/usb\/\d{3}\/\d{3}$/);
  });
});

describe("usbRoots: where the host USB inventory is read", () => {
  test("the kernel's paths unless HAVM_USB_SYSFS_ROOT / HAVM_USB_DEV_ROOT say otherwise", () => {
    expect(usbRoots({})).toEqual({ sysfsRoot: "/sys/bus/usb/devices", devRoot: "/dev/bus/usb" });
    expect(usbRoots({ HAVM_USB_SYSFS_ROOT: "", HAVM_USB_DEV_ROOT: "" })).toEqual({ sysfsRoot: "/sys/bus/usb/devices", devRoot: "/dev/bus/usb" });
    expect(usbRoots({ HAVM_USB_SYSFS_ROOT: "/x/sys", HAVM_USB_DEV_ROOT: "/x/dev" })).toEqual({ sysfsRoot: "/x/sys", devRoot: "/x/dev" });
  });

  test("the listing (which the QEMU backend's attach also uses) follows the override", () => {
    const { sysfs, dev } = fakeTree();
    const saved = { s: process.env.HAVM_USB_SYSFS_ROOT, d: process.env.HAVM_USB_DEV_ROOT };
    process.env.HAVM_USB_SYSFS_ROOT = sysfs;
    process.env.HAVM_USB_DEV_ROOT = dev;
    try {
      const listed = listHostUsbDevices({ platform: "linux", canOpen: () => "ok" }).devices;
      expect(listed.length).toBeGreaterThan(0);
      expect(listed.every((d) => d.devNode.startsWith(dev + "/"))).toBe(true);
    } finally {
      for (const [k, v] of [["HAVM_USB_SYSFS_ROOT", saved.s], ["HAVM_USB_DEV_ROOT", saved.d]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
