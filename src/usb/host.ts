// Host USB devices that could be passed to the VM. Linux: read sysfs (/sys/bus/usb/devices), the same
// facts lsusb shows, plus whether this user may open the device node QEMU needs (/dev/bus/usb/BBB/DDD).
// macOS: listing belongs to the vz backend (AccessoryAccess, macOS 27); here we only say so.
import { accessSync, constants, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { errnoCode } from "../util/errors.ts";
import { formatUsbId, hex4 } from "./selector.ts";

export interface HostUsbDevice {
  /** Port path, the `ID` users can select by ("1-1.2"). */
  port: string;
  vendorId: number;
  productId: number;
  serial?: string;
  manufacturer?: string;
  product?: string;
  /** Manufacturer + product, or the ids when the device names neither. */
  name: string;
  bus: number;
  address: number;
  deviceClass: number;
  /** The node QEMU opens for usb-host passthrough. */
  devNode: string;
  /** This process can open devNode read-write. */
  accessible: boolean;
  /** Why not, and what to change (only when !accessible). */
  accessProblem?: string;
}

export interface HostUsbListing {
  devices: HostUsbDevice[];
  /** Set when this host cannot list devices at all (macOS without the vz USB support, no sysfs). */
  unavailable?: string;
}

/** Where havm reads the host's USB devices: the sysfs device links and the device nodes QEMU opens. */
export interface UsbRoots {
  /** Normally /sys/bus/usb/devices. */
  sysfsRoot: string;
  /** Normally /dev/bus/usb. */
  devRoot: string;
}

/**
 * The one place that says where the host's USB inventory lives; the listing here and the QEMU backend's
 * lookup before `device_add usb-host` both ask it. HAVM_USB_SYSFS_ROOT and HAVM_USB_DEV_ROOT are a test and
 * diagnostic override (e.g. a fake tree describing a stick, on a machine without a USB bus); they only move
 * where the inventory is read, QEMU still gets the same vendor/product ids.
 */
export function usbRoots(env: Record<string, string | undefined> = process.env): UsbRoots {
  return {
    sysfsRoot: env.HAVM_USB_SYSFS_ROOT || "/sys/bus/usb/devices",
    devRoot: env.HAVM_USB_DEV_ROOT || "/dev/bus/usb",
  };
}

export interface HostListOptions {
  platform?: NodeJS.Platform;
  /** Root of the sysfs USB device links (default: usbRoots()); tests point it at a fake tree. */
  sysfsRoot?: string;
  /** Where device nodes live (default: usbRoots(), normally /dev/bus/usb). */
  devRoot?: string;
  /** Can this process open `path` read-write? Injected so tests running as root can model a denied node. */
  canOpen?: (path: string) => "ok" | "missing" | "denied";
  /** /etc/group, to name the group that owns a denied node. */
  groupFile?: string;
}

const HUB_CLASS = 0x09;

/** The darwin answer: devices are AccessoryAccess accessories and only the vz backend can see them. */
export const DARWIN_UNAVAILABLE =
  "USB passthrough on macOS needs macOS 27 (Virtualization.framework USB passthrough through AccessoryAccess) and a havm build " +
  "signed with the com.apple.developer.accessory-access.usb entitlement from a provisioning profile (the paid-tier build); " +
  "ad-hoc signed builds cannot list or attach host USB devices.";

export function listHostUsbDevices(opts: HostListOptions = {}): HostUsbListing {
  const platform = opts.platform ?? process.platform;
  if (platform === "darwin") return { devices: [], unavailable: DARWIN_UNAVAILABLE };
  if (platform !== "linux") return { devices: [], unavailable: `USB passthrough is not supported on ${platform}` };
  const roots = usbRoots();
  const root = opts.sysfsRoot ?? roots.sysfsRoot;
  const devRoot = opts.devRoot ?? roots.devRoot;
  const canOpen = opts.canOpen ?? defaultCanOpen;
  let names: string[];
  try {
    names = readdirSync(root);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") {
      return { devices: [], unavailable: `this host shows no USB bus (${root} does not exist; in a container, pass the host's /sys and /dev/bus/usb in)` };
    }
    return { devices: [], unavailable: `cannot read ${root} (${errnoCode(e) ?? String(e)}): is sysfs mounted?` };
  }
  const devices: HostUsbDevice[] = [];
  // "usb1" are root hubs, "1-1:1.0" are interfaces; devices are "<bus>-<port>[.<port>...]".
  for (const port of names.filter((n) => /^\d+-\d+(\.\d+)*$/.test(n))) {
    const dir = join(root, port);
    const vendorId = readHex(dir, "idVendor");
    const productId = readHex(dir, "idProduct");
    const bus = readInt(dir, "busnum");
    const address = readInt(dir, "devnum");
    // A device unplugged while we read it loses its attributes: skip it rather than report half a device.
    if (vendorId === undefined || productId === undefined || bus === undefined || address === undefined) continue;
    const deviceClass = readHex(dir, "bDeviceClass") ?? 0;
    if (deviceClass === HUB_CLASS) continue;
    const manufacturer = readAttr(dir, "manufacturer");
    const product = readAttr(dir, "product");
    const serial = readAttr(dir, "serial");
    const devNode = join(devRoot, pad3(bus), pad3(address));
    const access = canOpen(devNode);
    const dev: HostUsbDevice = {
      port,
      vendorId,
      productId,
      name: [manufacturer, product].filter(Boolean).join(" ") || formatUsbId(vendorId, productId),
      bus,
      address,
      deviceClass,
      devNode,
      accessible: access === "ok",
    };
    if (serial !== undefined) dev.serial = serial;
    if (manufacturer !== undefined) dev.manufacturer = manufacturer;
    if (product !== undefined) dev.product = product;
    if (access !== "ok") dev.accessProblem = explainAccess(devNode, access, vendorId, productId, opts.groupFile ?? "/etc/group");
    devices.push(dev);
  }
  devices.sort((a, b) => a.bus - b.bus || a.address - b.address);
  return { devices };
}

/** The problem and its fix, in words a user can act on: a udev rule and a group. */
export function explainAccess(devNode: string, access: "missing" | "denied", vendorId: number, productId: number, groupFile = "/etc/group"): string {
  if (access === "missing") {
    return `${devNode} does not exist: the device node directory is not mounted here (containers need /dev/bus/usb passed in) or the device was just unplugged`;
  }
  let owner = "";
  let group = "plugdev";
  try {
    const st = statSync(devNode);
    const name = groupName(st.gid, groupFile);
    if (name && name !== "root") group = name;
    owner = ` (mode ${(st.mode & 0o777).toString(8)}, group ${name ?? st.gid})`;
  } catch {
    // Explain without the details.
  }
  const rule = `SUBSYSTEM=="usb", ATTR{idVendor}=="${hex4(vendorId)}", ATTR{idProduct}=="${hex4(productId)}", MODE="0660", GROUP="${group}"`;
  return (
    `${devNode} is not readable and writable by this user${owner}. QEMU opens it to pass the device through. ` +
    `Add a udev rule such as /etc/udev/rules.d/50-havm-usb.rules containing\n  ${rule}\n` +
    `then run \`sudo udevadm control --reload && sudo udevadm trigger\`, replug the stick, ` +
    `and make sure you are in that group (\`sudo usermod -aG ${group} $USER\`, then log in again).`
  );
}

function groupName(gid: number, groupFile: string): string | undefined {
  try {
    for (const line of readFileSync(groupFile, "utf8").split("\n")) {
      const [name, , id] = line.split(":");
      if (name && Number(id) === gid) return name;
    }
  } catch {
    // No group database: the numeric gid will do.
  }
  return undefined;
}

function defaultCanOpen(path: string): "ok" | "missing" | "denied" {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return "ok";
  } catch (e) {
    return errnoCode(e) === "ENOENT" ? "missing" : "denied";
  }
}

function readAttr(dir: string, name: string): string | undefined {
  try {
    const text = readFileSync(join(dir, name), "utf8").trim();
    return text === "" ? undefined : text;
  } catch {
    return undefined;
  }
}

function readHex(dir: string, name: string): number | undefined {
  const text = readAttr(dir, name);
  return text !== undefined && /^[0-9a-f]{1,4}$/i.test(text) ? parseInt(text, 16) : undefined;
}

function readInt(dir: string, name: string): number | undefined {
  const text = readAttr(dir, name);
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
}

function pad3(n: number): string {
  return String(n).padStart(3, "0");
}
