// USB accessories on the supervisor side: attach/detach while the VM runs (hot-plug), remember what the user
// attached, attach it again after the next boot. Dependencies are injected: the VM handle (QMP device_add on
// qemu, VZUSBController on vz), the registry, the host listing, the logger and the metrics gauge.
import type { UsbDeviceRef } from "../vm/spec.ts";
import type { VmHandle } from "../vm/backend.ts";
import { HavmError, ExitCode, errorMessage, isHavmError } from "../util/errors.ts";
import type { HostUsbDevice, HostUsbListing } from "./host.ts";
import { usbKey, type RememberedUsbDevice } from "./registry.ts";
import type { ControlHandler } from "../supervise/control.ts";
import { describeUsbDevice, filterUsbSelector, formatUsbSelector, parseUsbSelector, selectOneUsbDevice, selectorFor } from "./selector.ts";

/** The registry as the service uses it (UsbRegistry satisfies it; tests may pass an in-memory one). */
export interface UsbRegistryStore {
  list(): RememberedUsbDevice[];
  add(dev: RememberedUsbDevice): boolean;
  remove(dev: { vendorId: number; productId: number; serial?: string }): boolean;
}

export interface UsbServiceLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export interface UsbServiceDeps {
  vm: Pick<VmHandle, "attachUsb" | "detachUsb">;
  registry: UsbRegistryStore;
  listHost: () => HostUsbListing | Promise<HostUsbListing>;
  /** config.usb.enabled */
  enabled: boolean;
  log: UsbServiceLog;
  /** HavmMetrics satisfies it: havm_usb_accessories. */
  metrics?: { setUsbAccessories(count: number): void };
  now?: () => Date;
}

/** A device attached to the VM by this supervisor. */
export interface AttachedUsbDevice {
  vendorId: number;
  productId: number;
  serial?: string;
  name?: string;
  port?: string;
  /** What was passed to vm.attachUsb; detach passes the same. */
  ref: UsbDeviceRef;
  attachedAt: string;
  /** "user" (havm usb attach) or "remembered" (re-attached after boot). */
  origin: "user" | "remembered";
}

/** One row of `havm usb list` (JSON over the control socket). */
export interface UsbListRow {
  /** Port id, "" for remembered devices that are not plugged in. */
  port: string;
  /** "10c4:ea60[:serial]" */
  selector: string;
  vendorId: string;
  productId: string;
  serial?: string;
  name: string;
  present: boolean;
  attached: boolean;
  remembered: boolean;
  accessible: boolean;
  accessProblem?: string;
}

export interface UsbListResult {
  enabled: boolean;
  running: boolean;
  devices: UsbListRow[];
  /** Why this host cannot list devices (macOS without vz USB support). */
  unavailable?: string;
}

export interface ReattachSummary {
  attached: string[];
  missing: string[];
  failed: { device: string; error: string }[];
}


export const USB_DISABLED_HINT = "Set `usb: {enabled: true}` in the config file (it is the default) and restart havm.";

/** The service for one boot of the VM (the gauge starts at 0 attached). */
export function createUsbService(deps: UsbServiceDeps): UsbService {
  return new UsbService(deps);
}

export class UsbService {
  private readonly attachedMap = new Map<string, AttachedUsbDevice>();
  /** Attach/detach/re-attach run one at a time: QMP and the registry file are not safe to interleave. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: UsbServiceDeps) {
    this.publish();
  }

  /**
   * Control socket handlers: usb.list -> UsbListResult; usb.attach {selector} / usb.detach {selector} ->
   * {device: {selector, port, name, vendorId, productId, serial?}}. Refusals throw HavmError (-> ok:false + hint).
   */
  handlers(): Record<string, ControlHandler> {
    return {
      "usb.list": async () => ({ ...(await this.list()) }),
      "usb.attach": async (req) => ({ device: summarize(await this.attach(selectorArg(req))) }),
      "usb.detach": async (req) => ({ device: summarize(await this.detach(selectorArg(req))) }),
    };
  }

  attachedCount(): number {
    return this.attachedMap.size;
  }

  /** JSON-friendly list of what is attached now (for `havm status`). */
  attached(): Record<string, unknown>[] {
    return [...this.attachedMap.values()].map(summarize);
  }

  attachedDevices(): AttachedUsbDevice[] {
    return [...this.attachedMap.values()];
  }

  async list(): Promise<UsbListResult> {
    const host = await this.deps.listHost();
    const remembered = this.deps.registry.list();
    const rememberedKeys = new Set(remembered.map(usbKey));
    const rows: UsbListRow[] = host.devices.map((d) => {
      const row: UsbListRow = {
        port: d.port,
        selector: selectorFor(d),
        vendorId: hex(d.vendorId),
        productId: hex(d.productId),
        name: d.name,
        present: true,
        attached: this.isAttached(d),
        remembered: rememberedKeys.has(usbKey(d)),
        accessible: d.accessible,
      };
      if (d.serial) row.serial = d.serial;
      if (d.accessProblem) row.accessProblem = d.accessProblem;
      return row;
    });
    const presentKeys = new Set(host.devices.map(usbKey));
    for (const r of remembered) {
      if (presentKeys.has(usbKey(r))) continue;
      const row: UsbListRow = {
        port: "",
        selector: selectorFor(r),
        vendorId: hex(r.vendorId),
        productId: hex(r.productId),
        name: r.name ?? selectorFor(r),
        present: false,
        attached: [...this.attachedMap.values()].some((a) => usbKey(a) === usbKey(r)),
        remembered: true,
        accessible: false,
      };
      if (r.serial) row.serial = r.serial;
      rows.push(row);
    }
    const result: UsbListResult = { enabled: this.deps.enabled, running: true, devices: rows };
    if (host.unavailable) result.unavailable = host.unavailable;
    return result;
  }

  /** Hot-plug the device the selector names and remember it for the next runs. */
  attach(selectorText: string): Promise<AttachedUsbDevice> {
    return this.serialized(async () => {
      this.requireEnabled();
      const sel = parseUsbSelector(selectorText);
      const host = await this.deps.listHost();
      if (host.unavailable) throw new HavmError(host.unavailable, { hint: "See `havm usb list`.", exitCode: ExitCode.unsupported, code: "usb.unavailable" });
      // Matching against every device first keeps "already attached" distinct from "ambiguous".
      const candidates = filterUsbSelector(sel, host.devices);
      const free = candidates.filter((d) => !this.isAttached(d));
      if (candidates.length > 0 && free.length === 0) {
        const d = candidates[0]!;
        throw new HavmError(`${describeUsbDevice(d)} is already attached to the VM`, {
          hint: `Nothing to do. To hand it back to the host: havm usb detach ${selectorFor(d)}`,
          exitCode: ExitCode.badInput,
          code: "usb.already-attached",
        });
      }
      const dev = selectOneUsbDevice(sel, free.length > 0 ? free : candidates);
      if (!dev.accessible) {
        throw new HavmError(`cannot pass ${describeUsbDevice(dev)} to the VM: ${dev.accessProblem ?? "its device node is not accessible"}`, {
          hint: "Fix the device node's permissions as described, then run the attach again.",
          exitCode: ExitCode.failure,
          code: "usb.permission",
        });
      }
      const ref = refFor(dev, host.devices);
      await this.deps.vm.attachUsb(ref);
      const entry = this.record(dev, ref, "user");
      // Remember after the attach worked: a device that never attached must not come back at every boot.
      this.deps.registry.add({ vendorId: dev.vendorId, productId: dev.productId, serial: dev.serial, name: dev.name });
      this.deps.log.info("usb accessory attached", { device: selectorFor(dev), port: dev.port, name: dev.name });
      return entry;
    });
  }

  /** Hot-unplug an attached device and forget it (the user handed it back to the host). */
  detach(selectorText: string): Promise<AttachedUsbDevice> {
    return this.serialized(async () => {
      this.requireEnabled();
      const sel = parseUsbSelector(selectorText);
      const attached = [...this.attachedMap.values()];
      const found = filterUsbSelector(sel, attached);
      if (found.length === 0) {
        // A remembered device that is not attached now (unplugged at boot): detaching it means forgetting it.
        const remembered = filterUsbSelector(sel, this.deps.registry.list());
        if (remembered.length === 1 && sel.kind === "ids") {
          const r = remembered[0]!;
          this.deps.registry.remove(r);
          this.deps.log.info("usb accessory forgotten (was not attached)", { device: selectorFor(r) });
          return { vendorId: r.vendorId, productId: r.productId, serial: r.serial, name: r.name, ref: refFor(r), attachedAt: "", origin: "remembered" };
        }
        throw new HavmError(`no attached USB device matches ${formatUsbSelector(sel)}`, {
          hint: "Run `havm usb list` to see which devices are attached.",
          exitCode: ExitCode.badInput,
          code: "usb.not-attached",
        });
      }
      const dev = selectOneUsbDevice(sel, found, "attached to the VM");
      await this.deps.vm.detachUsb(dev.ref);
      this.attachedMap.delete(attachedKey(dev));
      this.deps.registry.remove(dev);
      this.publish();
      this.deps.log.info("usb accessory detached", { device: selectorFor(dev), port: dev.port, name: dev.name });
      return dev;
    });
  }

  /**
   * Attach the remembered accessories again; call once the VM runs (shortly after boot). Devices that are not
   * plugged in are logged and stay remembered; failures are logged, never thrown (the VM keeps running).
   */
  reattachRemembered(): Promise<ReattachSummary> {
    return this.serialized(async () => {
      const summary: ReattachSummary = { attached: [], missing: [], failed: [] };
      if (!this.deps.enabled) return summary;
      let remembered: RememberedUsbDevice[];
      let host: HostUsbListing;
      try {
        remembered = this.deps.registry.list();
        if (remembered.length === 0) return summary;
        host = await this.deps.listHost();
      } catch (e) {
        this.deps.log.warn("cannot re-attach remembered usb accessories", { error: errorMessage(e), hint: isHavmError(e) ? e.hint : undefined });
        summary.failed.push({ device: "*", error: errorMessage(e) });
        return summary;
      }
      for (const r of remembered) {
        const id = selectorFor(r);
        const dev = host.devices.find((d) => d.vendorId === r.vendorId && d.productId === r.productId && (!r.serial || d.serial === r.serial) && !this.isAttached(d));
        if (!dev) {
          if (![...this.attachedMap.values()].some((a) => usbKey(a) === usbKey(r))) {
            this.deps.log.info("remembered usb accessory is not plugged in; it stays remembered", { device: id, name: r.name });
            summary.missing.push(id);
          }
          continue;
        }
        if (!dev.accessible) {
          this.deps.log.warn("remembered usb accessory is not accessible", { device: id, problem: dev.accessProblem });
          summary.failed.push({ device: id, error: dev.accessProblem ?? "not accessible" });
          continue;
        }
        try {
          const ref = refFor(dev, host.devices);
          await this.deps.vm.attachUsb(ref);
          this.record(dev, ref, "remembered");
          this.deps.log.info("remembered usb accessory attached", { device: id, port: dev.port, name: dev.name });
          summary.attached.push(id);
        } catch (e) {
          this.deps.log.warn("remembered usb accessory failed to attach", { device: id, error: errorMessage(e) });
          summary.failed.push({ device: id, error: errorMessage(e) });
        }
      }
      return summary;
    });
  }

  /** The VM stopped (restart, crash): nothing is attached any more; remembered devices come back via reattach. */
  vmStopped(): void {
    this.attachedMap.clear();
    this.publish();
  }

  private requireEnabled(): void {
    if (!this.deps.enabled) {
      throw new HavmError("USB passthrough is turned off (usb.enabled: false)", { hint: USB_DISABLED_HINT, exitCode: ExitCode.badInput, code: "usb.disabled" });
    }
  }

  private isAttached(d: HostUsbDevice): boolean {
    for (const a of this.attachedMap.values()) {
      if (a.port !== undefined ? a.port === d.port : usbKey(a) === usbKey(d)) return true;
    }
    return false;
  }

  private record(dev: HostUsbDevice, ref: UsbDeviceRef, origin: AttachedUsbDevice["origin"]): AttachedUsbDevice {
    const entry: AttachedUsbDevice = { vendorId: dev.vendorId, productId: dev.productId, name: dev.name, port: dev.port, ref, attachedAt: (this.deps.now?.() ?? new Date()).toISOString(), origin };
    if (dev.serial) entry.serial = dev.serial;
    this.attachedMap.set(attachedKey(entry), entry);
    this.publish();
    return entry;
  }

  private publish(): void {
    this.deps.metrics?.setUsbAccessories(this.attachedMap.size);
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** Two identical serial-less sticks differ only by port; with a port the key is unique. */
function attachedKey(a: { vendorId: number; productId: number; serial?: string; port?: string }): string {
  return a.port ? `port:${a.port}` : usbKey(a);
}

/**
 * What the backend needs to find the device. The host location (bus/address) is only given when identical
 * devices (same ids, same or no serial) are plugged in: otherwise QEMU matches by ids and follows the stick
 * when it is re-plugged and gets a new address.
 */
function refFor(
  d: { vendorId: number; productId: number; serial?: string; name?: string; bus?: number; address?: number },
  hostDevices: readonly HostUsbDevice[] = [],
): UsbDeviceRef {
  const ref: UsbDeviceRef = { vendorId: d.vendorId, productId: d.productId };
  if (d.serial) ref.serial = d.serial;
  const twins = hostDevices.filter((h) => usbKey(h) === usbKey(d));
  if (twins.length > 1 && d.bus !== undefined && d.address !== undefined) {
    ref.hostBus = d.bus;
    ref.hostAddr = d.address;
  }
  if (d.name) ref.name = d.name;
  return ref;
}

function selectorArg(req: Record<string, unknown>): string {
  const s = req.selector;
  if (typeof s !== "string" || s.trim() === "") {
    throw new HavmError("the request names no USB device", { hint: "Usage: havm usb attach <id|vendor:product[:serial]>", exitCode: ExitCode.badInput, code: "usb.selector" });
  }
  return s;
}

function summarize(a: AttachedUsbDevice): Record<string, unknown> {
  return { selector: selectorFor(a), port: a.port ?? "", name: a.name ?? "", vendorId: hex(a.vendorId), productId: hex(a.productId), serial: a.serial };
}

function hex(n: number): string {
  return n.toString(16).padStart(4, "0");
}
