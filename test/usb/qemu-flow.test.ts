// The USB service's hot-plug flow against a real QEMU over QMP. A real host stick cannot be assumed here,
// so the VM side maps the attached device to QEMU's emulated FTDI serial adapter (usb-serial, 0403:6001,
// what many Zigbee/Z-Wave sticks are) carrying the host device's serial; the host side is a fake sysfs.
// The real usb-host passthrough (src/vm/qemu) is tested by the QEMU backend's own tests.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QmpClient } from "../../src/vm/qemu/qmp.ts";
import { UsbService } from "../../src/usb/service.ts";
import { UsbRegistry } from "../../src/usb/registry.ts";
import { listHostUsbDevices } from "../../src/usb/host.ts";
import type { UsbDeviceRef } from "../../src/vm/spec.ts";
import { HavmError } from "../../src/util/errors.ts";

const QEMU = Bun.which("qemu-system-x86_64");
const root = mkdtempSync(join(tmpdir(), "havm-usbqemu-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A stopped (-S) q35 machine with an XHCI controller, like havm's VM at the USB level. */
async function startQemu(name: string) {
  const sock = join(root, `${name}.qmp`);
  const proc = Bun.spawn(
    [QEMU!, "-machine", "q35", "-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none", "-S",
      "-device", "qemu-xhci,id=xhci", "-chardev", "null,id=zb0", "-chardev", `socket,id=qmp0,path=${sock},server=on,wait=off`, "-mon", "chardev=qmp0,mode=control"],
    { stdin: "ignore", stdout: "ignore", stderr: "inherit" },
  );
  let qmp: QmpClient | undefined;
  for (let i = 0; !qmp; i++) {
    try {
      qmp = await QmpClient.connect(sock, { timeoutMs: 2000 });
    } catch (e) {
      if (i > 100) throw e;
      await Bun.sleep(50);
    }
  }
  const client = qmp;
  const vm = {
    async attachUsb(d: UsbDeviceRef) {
      await client.execute("device_add", { driver: "usb-serial", bus: "xhci.0", id: `usb-${d.serial}`, chardev: "zb0", serial: d.serial });
    },
    async detachUsb(d: UsbDeviceRef) {
      const gone = client.waitEvent("DEVICE_DELETED", (e) => e.data?.device === `usb-${d.serial}`, 10_000);
      await client.execute("device_del", { id: `usb-${d.serial}` });
      await gone;
    },
  };
  /** What QEMU says is plugged into the guest's USB bus. */
  const usbInfo = async () => String(await client.execute("human-monitor-command", { "command-line": "info usb" }));
  const stop = async () => {
    client.close();
    proc.kill("SIGKILL");
    await proc.exited;
  };
  return { vm, usbInfo, stop };
}

function hostWithFtdi(serial: string) {
  const base = mkdtempSync(join(root, "host-"));
  const dir = join(base, "sys", "1-1");
  mkdirSync(dir, { recursive: true });
  const attrs = { idVendor: "0403", idProduct: "6001", busnum: "1", devnum: "4", bDeviceClass: "00", serial, manufacturer: "FTDI", product: "FT232R USB UART" };
  for (const [k, v] of Object.entries(attrs)) writeFileSync(join(dir, k), v + "\n");
  mkdirSync(join(base, "dev", "001"), { recursive: true });
  writeFileSync(join(base, "dev", "001", "004"), "");
  return () => listHostUsbDevices({ platform: "linux", sysfsRoot: join(base, "sys"), devRoot: join(base, "dev") });
}

const quiet = { info() {}, warn() {} };

describe.skipIf(!QEMU)("USB service over QMP (real qemu-system-x86_64, emulated usb-serial)", () => {
  test("attach, refusals, remembered re-attach after a reboot, detach", async () => {
    const registry = new UsbRegistry(join(mkdtempSync(join(root, "vm-")), "usb.json"));
    const listHost = hostWithFtdi("ZB0001");
    let gauge = -1;
    const metrics = { setUsbAccessories: (n: number) => (gauge = n) };

    const boot1 = await startQemu("boot1");
    try {
      const svc = new UsbService({ vm: boot1.vm, registry, listHost, enabled: true, log: quiet, metrics });
      expect(await boot1.usbInfo()).not.toContain("ID: usb-ZB0001");
      await svc.attach("0403:6001");
      expect(await boot1.usbInfo()).toContain("ID: usb-ZB0001");
      expect(gauge).toBe(1);
      expect(registry.list()).toMatchObject([{ vendorId: 0x0403, productId: 0x6001, serial: "ZB0001" }]);
      const again = await svc.attach("0403:6001:ZB0001").catch((e) => e as HavmError);
      expect((again as HavmError).code).toBe("usb.already-attached");
      const unknown = await svc.attach("10c4:ea60").catch((e) => e as HavmError);
      expect((unknown as HavmError).code).toBe("usb.unknown");
      // Still exactly one device on the guest's bus.
      expect((await boot1.usbInfo()).match(/ID: usb-ZB0001/g)?.length).toBe(1);
    } finally {
      await boot1.stop();
    }

    // Next run: a new VM process and a new service; the registry brings the stick back.
    const boot2 = await startQemu("boot2");
    try {
      const svc = new UsbService({ vm: boot2.vm, registry, listHost, enabled: true, log: quiet, metrics });
      expect(gauge).toBe(0);
      expect(await boot2.usbInfo()).not.toContain("ID: usb-ZB0001");
      expect(await svc.reattachRemembered()).toEqual({ attached: ["0403:6001:ZB0001"], missing: [], failed: [] });
      expect(await boot2.usbInfo()).toContain("ID: usb-ZB0001");
      expect(gauge).toBe(1);
      await svc.detach("1-1");
      expect(await boot2.usbInfo()).not.toContain("ID: usb-ZB0001");
      expect(registry.list()).toEqual([]);
      expect(gauge).toBe(0);

      // USB turned off: refused, and QEMU is not touched.
      const off = new UsbService({ vm: boot2.vm, registry, listHost, enabled: false, log: quiet });
      const disabled = await off.attach("0403:6001").catch((e) => e as HavmError);
      expect((disabled as HavmError).code).toBe("usb.disabled");
      expect(await boot2.usbInfo()).not.toContain("ID: usb-ZB0001");
    } finally {
      await boot2.stop();
    }
  }, 60_000);
});
