// The remembered USB accessories of a VM (paths.vm.usbRegistry): what the user attached, so the next run
// attaches it again shortly after boot. A small JSON file, rewritten atomically on every change so a crash
// mid-write leaves the old or the new list, never half of one. A file that does not parse is an error that
// names it: silently emptying it would make the user's Zigbee stick vanish from Home Assistant.
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { writeFileAtomic } from "../util/fs.ts";
import { errnoCode, HavmError, ExitCode } from "../util/errors.ts";
import { formatUsbId, hex4 } from "./selector.ts";

export const USB_REGISTRY_VERSION = 1;

export interface RememberedUsbDevice {
  vendorId: number;
  productId: number;
  serial?: string;
  name?: string;
  /** ISO time of the attach that remembered it. */
  addedAt?: string;
}

/** On disk ids are hex strings, as people read them ("10c4"). */
interface StoredDevice {
  vendorId: string;
  productId: string;
  serial?: string;
  name?: string;
  addedAt?: string;
}

interface StoredRegistry {
  version: number;
  devices: StoredDevice[];
}

/** Identity of an accessory across runs and ports: vendor, product and serial (when it has one). */
export function usbKey(dev: { vendorId: number; productId: number; serial?: string }): string {
  return formatUsbId(dev.vendorId, dev.productId) + (dev.serial ? `:${dev.serial}` : "");
}

export class UsbRegistry {
  constructor(
    readonly path: string,
    private readonly now: () => Date = () => new Date(),
  ) {}

  /** The remembered accessories; a missing file is an empty list. Read from disk each time: it is the truth. */
  list(): RememberedUsbDevice[] {
    let text: string;
    try {
      text = readFileSync(this.path, "utf8");
    } catch (e) {
      if (errnoCode(e) === "ENOENT") return [];
      throw new HavmError(`cannot read the USB accessory registry ${this.path}: ${errnoCode(e) ?? String(e)}`, {
        hint: "Check the permissions of the VM directory.",
        code: "usb.registry-unreadable",
      });
    }
    return parseUsbRegistry(text, this.path);
  }

  has(dev: { vendorId: number; productId: number; serial?: string }): boolean {
    const key = usbKey(dev);
    return this.list().some((d) => usbKey(d) === key);
  }

  /** Remember an accessory. Idempotent: returns false (and only refreshes the name) when it is already known. */
  add(dev: RememberedUsbDevice): boolean {
    const devices = this.list();
    const key = usbKey(dev);
    const known = devices.find((d) => usbKey(d) === key);
    if (known) {
      if (dev.name && known.name !== dev.name) {
        known.name = dev.name;
        this.write(devices);
      }
      return false;
    }
    const entry: RememberedUsbDevice = { vendorId: dev.vendorId, productId: dev.productId };
    if (dev.serial) entry.serial = dev.serial;
    if (dev.name) entry.name = dev.name;
    entry.addedAt = dev.addedAt ?? this.now().toISOString();
    devices.push(entry);
    this.write(devices);
    return true;
  }

  /** Forget an accessory. Idempotent: returns false when it was not remembered. */
  remove(dev: { vendorId: number; productId: number; serial?: string }): boolean {
    const devices = this.list();
    const key = usbKey(dev);
    const kept = devices.filter((d) => usbKey(d) !== key);
    if (kept.length === devices.length) return false;
    this.write(kept);
    return true;
  }

  /** Replace the whole list (atomic). */
  write(devices: RememberedUsbDevice[]): void {
    writeFileAtomic(this.path, formatUsbRegistry(devices), 0o644);
    this.sweepStaleTemps();
  }

  /** Temp files of writers that died mid-write (their pid is gone): harmless, but they would pile up. */
  private sweepStaleTemps(): void {
    const prefix = `.${basename(this.path)}.`;
    try {
      for (const name of readdirSync(dirname(this.path))) {
        if (!name.startsWith(prefix) || !name.endsWith(".tmp")) continue;
        const pid = Number(name.slice(prefix.length).split(".")[0]);
        if (Number.isInteger(pid) && pid !== process.pid && !processAlive(pid)) rmSync(join(dirname(this.path), name), { force: true });
      }
    } catch {
      // Best effort.
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoCode(e) === "EPERM";
  }
}

export function formatUsbRegistry(devices: readonly RememberedUsbDevice[]): string {
  const stored: StoredRegistry = {
    version: USB_REGISTRY_VERSION,
    devices: devices.map((d) => {
      const s: StoredDevice = { vendorId: hex4(d.vendorId), productId: hex4(d.productId) };
      if (d.serial) s.serial = d.serial;
      if (d.name) s.name = d.name;
      if (d.addedAt) s.addedAt = d.addedAt;
      return s;
    }),
  };
  return JSON.stringify(stored, null, 2) + "\n";
}

/** Parse the registry file's text. Anything unexpected is an error naming the file, with what to do. */
export function parseUsbRegistry(text: string, path: string): RememberedUsbDevice[] {
  const corrupt = (why: string) =>
    new HavmError(`the USB accessory registry ${path} is damaged: ${why}`, {
      hint: `Fix it by hand, or delete it (havm then forgets the remembered accessories; attach them again with \`havm usb attach\`).`,
      exitCode: ExitCode.failure,
      code: "usb.registry-corrupt",
    });
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw corrupt(`not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw corrupt("expected a JSON object with a devices list");
  const obj = raw as Record<string, unknown>;
  if (obj.version !== USB_REGISTRY_VERSION) {
    throw corrupt(`version ${JSON.stringify(obj.version)} is not ${USB_REGISTRY_VERSION} (written by another havm release?)`);
  }
  if (!Array.isArray(obj.devices)) throw corrupt("expected a devices list");
  return obj.devices.map((d: unknown, i: number) => {
    if (typeof d !== "object" || d === null) throw corrupt(`device ${i + 1} is not an object`);
    const e = d as Record<string, unknown>;
    const id = (k: "vendorId" | "productId") => {
      const v = e[k];
      if (typeof v !== "string" || !/^[0-9a-f]{4}$/i.test(v)) throw corrupt(`device ${i + 1}: ${k} must be 4 hex digits such as "10c4"`);
      return parseInt(v, 16);
    };
    const opt = (k: "serial" | "name" | "addedAt") => {
      const v = e[k];
      if (v === undefined) return undefined;
      if (typeof v !== "string") throw corrupt(`device ${i + 1}: ${k} must be a string`);
      return v;
    };
    const dev: RememberedUsbDevice = { vendorId: id("vendorId"), productId: id("productId") };
    const serial = opt("serial");
    const name = opt("name");
    const addedAt = opt("addedAt");
    if (serial) dev.serial = serial;
    if (name) dev.name = name;
    if (addedAt) dev.addedAt = addedAt;
    return dev;
  });
}
