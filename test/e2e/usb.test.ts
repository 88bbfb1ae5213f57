// End to end: USB accessories through the real havm CLI on the qemu backend. This machine has no USB bus, so
// only the host inventory is redirected (HAVM_USB_SYSFS_ROOT / HAVM_USB_DEV_ROOT: a fake sysfs entry and device
// node for a Zigbee-like CP210x stick); everything else is the real path: the supervisor, the registry, and
// QEMU's own `device_add usb-host vendorid=0x10c4 productid=0xea60` on the VM's XHCI controller. QEMU 7.2
// accepts a usb-host device whose host device is absent (realized, `attached` false) and takes the device
// over once it shows up on the host, which is what makes the attach assertable here.
//
// havm holds the VM's QMP socket (QEMU serves one client per monitor), so qemu.binary is a wrapper that runs
// the real QEMU with havm's argv plus a second QMP monitor; the test asks that one, read-only (qom-list,
// qom-get), what is on the VM.
// Three boots: attach + refusals; the remembered re-attach, then detach; usb.enabled: false.
// Opt-in like run.test.ts: HAVM_E2E=1 (HAVM_BIN for the compiled binary, HAVM_E2E_KEEP=1 keeps the HOME).
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { QmpClient } from "../../src/vm/qemu/qmp.ts";
import { listHostUsbDevices } from "../../src/usb/host.ts";
import { e2eUnavailableReason, havm, havmDone, killLeftovers, makeHome, metric, startWorld, until, waitHaUp, within, type E2eHome, type E2eWorld, type HavmProcess } from "./harness.ts";

const STICK = { vendor: "10c4", product: "ea60", serial: "ZB-E2E-0001", manufacturer: "Silicon Labs", product_name: "CP2102N USB to UART Bridge Controller" };
const STICK_SELECTOR = `${STICK.vendor}:${STICK.product}:${STICK.serial}`;
const STICK_NAME = `${STICK.manufacturer} ${STICK.product_name}`;
const QEMU_NAME = process.arch === "arm64" ? "qemu-system-aarch64" : "qemu-system-x86_64";

/**
 * QEMU matches usb-host by vendor/product on the real host bus: with a real 10c4:ea60 plugged in (and
 * accessible), the test VM would take it over. Refuse to run rather than grab someone's coordinator.
 */
function realStickReason(): string | undefined {
  const real = listHostUsbDevices({ sysfsRoot: "/sys/bus/usb/devices", devRoot: "/dev/bus/usb" });
  return real.devices.some((d) => d.vendorId === 0x10c4 && d.productId === 0xea60)
    ? "a real 10c4:ea60 device is plugged in; QEMU would pass it to the test VM"
    : undefined;
}

const skip = e2eUnavailableReason() ?? (Bun.which(QEMU_NAME) ? realStickReason() : `${QEMU_NAME} is not installed`);
let world: E2eWorld;

/** A fake host USB inventory: sysfs attributes as the kernel shows them, and the /dev/bus/usb node. */
function fakeHost(base: string): { sysfsRoot: string; devRoot: string } {
  const sysfsRoot = join(base, "sys", "bus", "usb", "devices");
  const devRoot = join(base, "dev", "bus", "usb");
  const stick = join(sysfsRoot, "1-1");
  mkdirSync(stick, { recursive: true });
  const attrs: Record<string, string> = {
    idVendor: STICK.vendor, idProduct: STICK.product, busnum: "1", devnum: "5", bDeviceClass: "00",
    serial: STICK.serial, manufacturer: STICK.manufacturer, product: STICK.product_name,
  };
  for (const [k, v] of Object.entries(attrs)) writeFileSync(join(stick, k), v + "\n");
  // The root hub is in sysfs too (as "usb1"); havm must not offer it.
  mkdirSync(join(sysfsRoot, "usb1"), { recursive: true });
  for (const [k, v] of Object.entries({ idVendor: "1d6b", idProduct: "0002", busnum: "1", devnum: "1", bDeviceClass: "09" })) writeFileSync(join(sysfsRoot, "usb1", k), v + "\n");
  mkdirSync(join(devRoot, "001"), { recursive: true });
  writeFileSync(join(devRoot, "001", "005"), "");
  chmodSync(join(devRoot, "001", "005"), 0o660);
  return { sysfsRoot, devRoot };
}

/** qemu.binary: the real QEMU with havm's argv, plus a second QMP monitor for the test (only for VM runs, which carry havm's monitor). */
function qemuWrapper(dir: string, testQmp: string): string {
  const real = Bun.which(QEMU_NAME)!;
  const path = join(dir, "qemu-with-test-monitor.sh");
  writeFileSync(
    path,
    [
      "#!/bin/sh",
      'case " $* " in',
      `  *" chardev=qmp0,mode=control "*) exec '${real}' "$@" -chardev 'socket,id=qmptest,path=${testQmp},server=on,wait=off' -mon chardev=qmptest,mode=control ;;`,
      "esac",
      `exec '${real}' "$@"`,
      "",
    ].join("\n"),
  );
  chmodSync(path, 0o755);
  return path;
}

interface UsbHostOnVm {
  id: string;
  vendorid: number;
  productid: number;
  hostbus: number;
  hostaddr: number;
  /** True once QEMU opened the host device; false while it waits for it to appear. */
  attached: boolean;
}

/** The usb-host devices QEMU has on the VM, read over the test's own QMP monitor. */
async function usbHostDevices(sock: string): Promise<UsbHostOnVm[]> {
  const qmp = await QmpClient.connect(sock, { timeoutMs: 5000 });
  try {
    const children = await qmp.execute<{ name: string; type: string }[]>("qom-list", { path: "/machine/peripheral" });
    const out: UsbHostOnVm[] = [];
    for (const c of children.filter((c) => c.type === "child<usb-host>")) {
      const get = (property: string) => qmp.execute("qom-get", { path: `/machine/peripheral/${c.name}`, property });
      out.push({
        id: c.name,
        vendorid: Number(await get("vendorid")),
        productid: Number(await get("productid")),
        hostbus: Number(await get("hostbus")),
        hostaddr: Number(await get("hostaddr")),
        attached: Boolean(await get("attached")),
      });
    }
    return out;
  } finally {
    qmp.close();
  }
}

function registryDevices(home: E2eHome): Record<string, unknown>[] {
  return (JSON.parse(readFileSync(home.paths.vm.usbRegistry, "utf8")) as { devices: Record<string, unknown>[] }).devices;
}

/** `havm status --json`'s USB list. */
async function statusUsb(home: E2eHome): Promise<{ name: string; attached: boolean }[]> {
  const r = await havmDone(home, ["status", "--json"], 30_000);
  expect(r.code).toBe(0);
  const line = r.output.split("\n").find((l) => l.startsWith("{"));
  return (JSON.parse(line!) as { usb: { name: string; attached: boolean }[] }).usb;
}

/** `havm usb list --json`'s row for the stick. */
async function stickRow(home: E2eHome): Promise<Record<string, unknown> | undefined> {
  const r = await havmDone(home, ["usb", "list", "--json"], 30_000);
  expect(r.code).toBe(0);
  const line = r.output.split("\n").find((l) => l.startsWith("{"));
  const list = JSON.parse(line!) as { devices: Record<string, unknown>[] };
  return list.devices.find((d) => d.selector === STICK_SELECTOR);
}

const theStick = (d: UsbHostOnVm) => d.vendorid === 0x10c4 && d.productid === 0xea60;

describe.skipIf(!!skip)(`havm usb end to end on qemu${skip ? ` (skipped: ${skip})` : ""}`, () => {
  let home: E2eHome;
  let testQmp: string;

  beforeAll(async () => {
    world = await startWorld();
    home = await makeHome(world, "usb", { usbEnabled: true });
    const roots = fakeHost(join(home.dir, "fake-host"));
    home.env.HAVM_USB_SYSFS_ROOT = roots.sysfsRoot;
    home.env.HAVM_USB_DEV_ROOT = roots.devRoot;
    testQmp = join(home.dir, "qmp-test.sock");
    home.writeConfig({ usbEnabled: true, qemuBinary: qemuWrapper(home.dir, testQmp) });
  }, 600_000);
  afterAll(async () => {
    await world?.stop();
  });
  afterEach(() => killLeftovers());

  async function runUntilUp(): Promise<HavmProcess> {
    const p = havm(home, ["run"]);
    await waitHaUp(home, p);
    return p;
  }

  async function stop(p: HavmProcess): Promise<void> {
    p.signal("SIGTERM");
    expect(await within(p.exited, 90_000, "havm exit after SIGTERM")).toBe(0);
  }

  test("with no havm running: `usb list` shows the stick (not the root hub); attach is refused as not running (exit 1)", async () => {
    const list = await havmDone(home, ["usb", "list"], 30_000);
    expect(list.code).toBe(0);
    expect(list.output).toMatch(new RegExp(`^1-1 +${STICK_SELECTOR} +${STICK_NAME} +available$`, "m"));
    expect(list.output).not.toContain("1d6b:0002");
    expect(list.output).toContain("The VM is not running");

    const attach = await havmDone(home, ["usb", "attach", "10c4:ea60"], 30_000);
    expect(attach.output).toContain("the VM is not running");
    expect(attach.code).toBe(1);
  }, 120_000);

  test("boot 1: attach hot-plugs usb-host on the VM, remembers it, counts it; attach again and an unknown device are refused (exit 2)", async () => {
    const p = await runUntilUp();
    expect(await usbHostDevices(testQmp)).toEqual([]);
    expect((await stickRow(home))?.attached).toBe(false);

    const a = await havmDone(home, ["usb", "attach", "10c4:ea60"], 60_000);
    expect(a.output).toContain(`attached ${STICK_SELECTOR} (port 1-1) ${STICK_NAME}`);
    expect(a.code).toBe(0);
    const onVm = await usbHostDevices(testQmp);
    expect(onVm).toHaveLength(1);
    // Matched by ids only (one such stick): no hostbus/hostaddr pin, so a re-plugged stick is followed.
    expect(onVm[0]).toMatchObject({ vendorid: 0x10c4, productid: 0xea60, hostbus: 0, hostaddr: 0 });
    // No such device on this host's real bus: QEMU holds the slot and waits for it.
    expect(onVm[0]!.attached).toBe(false);
    expect(registryDevices(home)).toMatchObject([{ vendorId: "10c4", productId: "ea60", serial: STICK.serial, name: STICK_NAME }]);
    expect(await statusUsb(home)).toEqual([{ name: STICK_NAME, attached: true }]);
    expect(await metric(home, "havm_usb_accessories")).toBe(1);
    expect(await stickRow(home)).toMatchObject({ attached: true, remembered: true, present: true });

    const again = await havmDone(home, ["usb", "attach", STICK_SELECTOR], 60_000);
    expect(again.output).toContain("is already attached to the VM");
    expect(again.code).toBe(2);
    const unknown = await havmDone(home, ["usb", "attach", "dead:beef"], 60_000);
    expect(unknown.output).toContain("no USB device matches dead:beef");
    expect(unknown.code).toBe(2);
    // The refusals changed nothing on the VM or in the registry.
    expect((await usbHostDevices(testQmp)).filter(theStick)).toHaveLength(1);
    expect(await usbHostDevices(testQmp)).toHaveLength(1);
    expect(registryDevices(home)).toHaveLength(1);
    expect(await metric(home, "havm_usb_accessories")).toBe(1);

    await stop(p);
  }, 300_000);

  test("boot 2: the remembered stick is attached again by itself; detach unplugs it from the VM and forgets it", async () => {
    const p = havm(home, ["run"]);
    // A new QEMU starts without it (nothing on the command line); the supervisor hot-plugs it after boot.
    const onVm = await until("usb-host back on the VM", async () => {
      const d = await usbHostDevices(testQmp);
      return d.some(theStick) ? d : undefined;
    }, 180_000, p);
    expect(onVm).toHaveLength(1);
    expect(onVm[0]).toMatchObject({ vendorid: 0x10c4, productid: 0xea60, hostbus: 0, hostaddr: 0 });
    await waitHaUp(home, p);
    expect(await statusUsb(home)).toEqual([{ name: STICK_NAME, attached: true }]);
    expect(await metric(home, "havm_usb_accessories")).toBe(1);
    expect(p.output()).toContain("remembered usb accessory attached");

    const d = await havmDone(home, ["usb", "detach", "10c4:ea60"], 60_000);
    expect(d.output).toContain(`detached ${STICK_SELECTOR} (port 1-1) ${STICK_NAME}`);
    expect(d.code).toBe(0);
    expect(await usbHostDevices(testQmp)).toEqual([]); // detach waited for QEMU's DEVICE_DELETED
    expect(registryDevices(home)).toEqual([]);
    expect(await statusUsb(home)).toEqual([]);
    expect(await metric(home, "havm_usb_accessories")).toBe(0);
    expect((await stickRow(home))?.attached).toBe(false);

    // Attach it once more, so the next run starts with a remembered stick (and must leave it alone).
    expect((await havmDone(home, ["usb", "attach", "1-1"], 60_000)).code).toBe(0);
    expect((await usbHostDevices(testQmp)).filter(theStick)).toHaveLength(1);
    await stop(p);
  }, 300_000);

  test("boot 3, usb.enabled: false: the remembered stick is not attached, and attach is refused (exit 2)", async () => {
    home.writeConfig({ usbEnabled: false, qemuBinary: qemuWrapper(home.dir, testQmp) });
    expect(registryDevices(home)).toHaveLength(1);
    const p = await runUntilUp();
    await Bun.sleep(2000); // the re-attach runs right after boot: give it the chance to do wrong
    expect(await usbHostDevices(testQmp)).toEqual([]);

    const a = await havmDone(home, ["usb", "attach", "10c4:ea60"], 60_000);
    expect(a.output).toContain("USB passthrough is turned off (usb.enabled: false)");
    expect(a.code).toBe(2);
    expect(await usbHostDevices(testQmp)).toEqual([]);
    expect(await statusUsb(home)).toEqual([]);
    expect(await metric(home, "havm_usb_accessories")).toBe(0);
    // Turned off is not forgotten: the registry still has the stick for when USB is on again.
    expect(registryDevices(home)).toMatchObject([{ vendorId: "10c4", productId: "ea60", serial: STICK.serial }]);
    await stop(p);
  }, 300_000);
});
