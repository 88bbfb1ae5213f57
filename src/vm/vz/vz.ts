// The Virtualization.framework backend (macOS): Backend + VmHandle over src/ffi/vz.ts.
// The shim never calls into JS; this module drains its event queue on a ref'd timer while a VM is alive
// (a native thread does not keep Bun running, the timer does) and turns raw events into BackendEvents.
// Dependencies (the native library, the leases file, `arp -an`, the clock) are injectable for tests.
import { availableParallelism, totalmem } from "node:os";
import { readFileSync } from "node:fs";
import type { Backend, BackendEvent, BackendProbe, Endpoint, HostLimits, MemoryStats, VmHandle, VmState } from "../backend.ts";
import type { UsbDeviceRef, VmSpec } from "../spec.ts";
import { HavmError, ExitCode, errnoCode, errorMessage } from "../../util/errors.ts";
import { log } from "../../util/log.ts";
import { openVz, VzEntitlement, VzNativeError, VzRawState, VzStatus, type VzAccessory, type VzNative, type VzVmNative } from "../../ffi/vz.ts";
import { guestIpFromArp, guestIpFromLeases } from "../../guest/leases.ts";
import { vzIgnoredFeatures, vzSpecJson } from "./translate.ts";

export const DHCPD_LEASES = "/var/db/dhcpd_leases";

export interface VzDeps {
  native: () => VzNative;
  /** Text of /var/db/dhcpd_leases, or undefined when it does not exist. */
  readLeases: () => string | undefined;
  /** Output of `arp -an`. */
  arp: () => Promise<string>;
  now: () => number;
  /** Event drain period while a VM is alive. */
  pollMs: number;
}

function readLeasesFile(path = DHCPD_LEASES): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return undefined;
    throw e;
  }
}

async function runArp(): Promise<string> {
  const p = Bun.spawn(["/usr/sbin/arp", "-an"], { stdout: "pipe", stderr: "ignore" });
  const text = await new Response(p.stdout).text();
  await p.exited;
  return text;
}

export function defaultVzDeps(): VzDeps {
  return { native: () => openVz(), readLeases: () => readLeasesFile(), arp: runArp, now: () => Date.now(), pollMs: 100 };
}

/** Raw VZVirtualMachineState -> the common VmState (Saving/Restoring and the pause transitions -> paused). */
export function mapVzState(raw: number): VmState {
  switch (raw) {
    case VzRawState.stopped:
      return "stopped";
    case VzRawState.running:
      return "running";
    case VzRawState.starting:
      return "starting";
    case VzRawState.stopping:
      return "stopping";
    case VzRawState.paused:
    case VzRawState.pausing:
    case VzRawState.resuming:
    case VzRawState.saving:
    case VzRawState.restoring:
      return "paused";
    default:
      return "error";
  }
}

/** A fresh VZGenericMachineIdentifier.dataRepresentation (injected into the identity module). */
export function createVzMachineIdentifier(): Uint8Array {
  return openVz().createMachineIdentifier();
}

/** Whether the framework accepts these bytes as a VZGenericMachineIdentifier. */
export function validateVzMachineIdentifier(bytes: Uint8Array): boolean {
  return openVz().validateMachineIdentifier(bytes);
}

/**
 * The USB accessories the user assigned to havm (macOS 27, AccessoryAccess), for `havm usb list`.
 * Throws a VzNativeError whose message and hint name the build tier when this binary cannot do USB.
 */
export function listVzUsbAccessories(): VzAccessory[] {
  return openVz().usbList();
}

interface Pending {
  resolve: () => void;
  reject: (e: Error) => void;
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

class VzVmHandle implements VmHandle {
  readonly backend = "vz" as const;
  private current: VmState;
  private readonly listeners = new Set<(e: BackendEvent) => void>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private pendingStart: Pending | undefined;
  private pendingStop: Pending | undefined;
  private readonly pendingUsb = new Map<string, Pending>();
  private stoppedWaiters: (() => void)[] = [];
  private guestIp: string | null = null;
  private closed = false;

  constructor(
    private readonly vm: VzVmNative,
    private readonly spec: VmSpec,
    private readonly deps: VzDeps,
  ) {
    this.current = mapVzState(vm.rawState());
  }

  private ensurePump(): void {
    if (this.timer === undefined && !this.closed) this.timer = setInterval(() => this.pump(), this.deps.pollMs);
  }

  private stopPump(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private emit(e: BackendEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        log.warn("vz event listener failed", { error: errorMessage(err) });
      }
    }
  }

  /** Drain the shim's queue and act on every event. Public for tests (the timer calls it too). */
  pump(): void {
    let events: Record<string, unknown>[];
    try {
      events = this.vm.drainEvents();
    } catch (e) {
      log.warn("could not read VM events", { error: errorMessage(e) });
      return;
    }
    for (const ev of events) this.handle(ev);
  }

  private handle(ev: Record<string, unknown>): void {
    switch (ev.type) {
      case "state": {
        const state = mapVzState(typeof ev.state === "number" ? ev.state : -1);
        if (state === this.current) return;
        this.current = state;
        this.emit({ type: "state", state });
        if (state === "stopped" || state === "error") this.onStopped();
        return;
      }
      case "guest-stopped":
        this.emit({ type: "guest-stopped" });
        return;
      case "stopped-with-error":
        this.emit({ type: "stopped-with-error", message: str(ev.message) });
        return;
      case "network-disconnected":
        this.emit({ type: "network-disconnected", message: str(ev.message) });
        return;
      case "start":
        this.settle(this.pendingStart, ev, "the VM failed to start");
        this.pendingStart = undefined;
        return;
      case "stop":
        this.settle(this.pendingStop, ev, "the VM could not be stopped");
        this.pendingStop = undefined;
        return;
      case "usb": {
        const action = ev.action === "detach" ? "detach" : "attach";
        const device: UsbDeviceRef = { vendorId: Number(ev.vendorId), productId: Number(ev.productId) };
        const key = usbKey(action, device);
        this.settle(this.pendingUsb.get(key), ev, `USB ${action} failed`);
        this.pendingUsb.delete(key);
        if (ev.ok === true) this.emit({ type: "usb", action: action === "attach" ? "attached" : "detached", device });
        return;
      }
      case "dropped":
        this.emit({ type: "log", level: "warning", message: `${Number(ev.count)} VM events were dropped (queue full)` });
        return;
      case "log":
        this.emit({ type: "log", level: ev.level === "debug" || ev.level === "info" ? ev.level : "warning", message: str(ev.message) });
        return;
      default:
        this.emit({ type: "log", level: "debug", message: `unknown shim event ${JSON.stringify(ev)}` });
    }
  }

  private settle(p: Pending | undefined, ev: Record<string, unknown>, what: string): void {
    if (!p) return;
    if (ev.ok === true) p.resolve();
    else p.reject(new HavmError(`${what}: ${str(ev.message) || "no reason given"}`, { code: "vz.operation" }));
  }

  private onStopped(): void {
    this.stopPump();
    const waiters = this.stoppedWaiters;
    this.stoppedWaiters = [];
    for (const w of waiters) w();
  }

  async start(): Promise<void> {
    this.ensurePump();
    const done = new Promise<void>((resolve, reject) => (this.pendingStart = { resolve, reject }));
    try {
      this.vm.start();
    } catch (e) {
      this.pendingStart = undefined;
      this.stopPump();
      throw e;
    }
    await done;
    this.current = mapVzState(this.vm.rawState());
  }

  async requestStop(): Promise<boolean> {
    try {
      this.vm.requestStop();
      return true;
    } catch (e) {
      if (e instanceof VzNativeError && e.status === VzStatus.state) return false;
      throw e;
    }
  }

  async forceStop(): Promise<void> {
    if (this.current === "stopped") return;
    this.ensurePump();
    const done = new Promise<void>((resolve, reject) => (this.pendingStop = { resolve, reject }));
    try {
      this.vm.stop();
    } catch (e) {
      this.pendingStop = undefined;
      if (e instanceof VzNativeError && e.status === VzStatus.state) return;
      throw e;
    }
    await done;
  }

  state(): VmState {
    return this.current;
  }

  onEvent(listener: (event: BackendEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stopped(): Promise<void> {
    if (this.current === "stopped" || this.current === "error") return Promise.resolve();
    this.ensurePump();
    return new Promise((resolve) => this.stoppedWaiters.push(resolve));
  }

  async endpoint(guestPort: number): Promise<Endpoint | null> {
    const mac = this.spec.network.mac;
    const ip =
      guestIpFromLeases(this.deps.readLeases(), { mac, name: this.spec.network.hostname ?? "homeassistant", nowMs: this.deps.now() }) ??
      guestIpFromArp(await this.deps.arp().catch(() => ""), mac) ??
      this.guestIp;
    if (ip !== this.guestIp && ip !== null) log.debug("guest IP", { ip });
    this.guestIp = ip;
    return ip === null ? null : { host: ip, port: guestPort };
  }

  private usbOp(action: "attach" | "detach", device: UsbDeviceRef): Promise<void> {
    this.ensurePump();
    const key = usbKey(action, device);
    if (this.pendingUsb.has(key)) {
      return Promise.reject(new HavmError(`a USB ${action} of that device is already in progress`, { exitCode: ExitCode.busy, code: "vz.usb.busy" }));
    }
    const done = new Promise<void>((resolve, reject) => this.pendingUsb.set(key, { resolve, reject }));
    try {
      const ids = { vendorId: device.vendorId, productId: device.productId };
      if (action === "attach") this.vm.usbAttach(ids);
      else this.vm.usbDetach(ids);
    } catch (e) {
      this.pendingUsb.delete(key);
      return Promise.reject(e);
    }
    return done;
  }

  attachUsb(device: UsbDeviceRef): Promise<void> {
    return this.usbOp("attach", device);
  }

  detachUsb(device: UsbDeviceRef): Promise<void> {
    return this.usbOp("detach", device);
  }

  async setBalloonTarget(bytes: number): Promise<void> {
    this.vm.setBalloonTarget(bytes);
  }

  async memoryStats(): Promise<MemoryStats> {
    try {
      return { targetBytes: this.vm.balloonTarget() };
    } catch (e) {
      if (e instanceof VzNativeError && e.status === VzStatus.notFound) return {};
      throw e;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.pump();
    if (this.current !== "stopped" && this.current !== "error") {
      await this.forceStop().catch((e) => log.warn("force stop during close failed", { error: errorMessage(e) }));
    }
    this.closed = true;
    this.stopPump();
    this.vm.destroy();
  }
}

function usbKey(action: string, d: UsbDeviceRef): string {
  return `${action}:${d.vendorId}:${d.productId}`;
}

function hostLimits(native: VzNative): HostLimits {
  const l = native.limits();
  return {
    cpus: availableParallelism(),
    memoryBytes: totalmem(),
    minCpus: l.minCpus,
    maxCpus: l.maxCpus,
    minMemoryBytes: l.minMemoryBytes,
    maxMemoryBytes: l.maxMemoryBytes,
  };
}

export function createVzBackend(overrides: Partial<VzDeps> = {}, platform: string = process.platform): Backend {
  const deps: VzDeps = { ...defaultVzDeps(), ...overrides };
  return {
    name: "vz",
    async probe(): Promise<BackendProbe> {
      if (platform !== "darwin") {
        return { backend: "vz", usable: false, details: [`platform ${platform}`], hint: "The vz backend runs on macOS only." };
      }
      try {
        const native = deps.native();
        const supported = native.isSupported();
        const ent = native.entitlements();
        const l = native.limits();
        const tier = ent & VzEntitlement.networking ? 3 : ent & VzEntitlement.usb ? 2 : 1;
        const details = [
          `Virtualization.framework: ${supported ? "supported" : "not supported on this Mac"}`,
          `entitlements: ${ent & VzEntitlement.virtualization ? "virtualization" : "NO virtualization"}${ent & VzEntitlement.usb ? ", usb" : ""}${ent & VzEntitlement.networking ? ", networking" : ""} (build tier ${tier})`,
          `limits: ${l.minCpus}-${l.maxCpus} CPUs, ${Math.round(l.minMemoryBytes / 2 ** 20)} MiB-${Math.round(l.maxMemoryBytes / 2 ** 30)} GiB memory`,
        ];
        const usable = supported && (ent & VzEntitlement.virtualization) !== 0;
        return {
          backend: "vz",
          usable,
          details,
          ...(usable
            ? {}
            : {
                hint: supported
                  ? "This binary lacks com.apple.security.virtualization: re-sign it with scripts/sign.sh (tier 1)."
                  : "This Mac cannot run Virtualization.framework VMs (macOS 13+ needed).",
              }),
        };
      } catch (e) {
        return { backend: "vz", usable: false, details: [errorMessage(e)], hint: e instanceof HavmError ? e.hint : undefined };
      }
    },
    limits(): HostLimits {
      return hostLimits(deps.native());
    },
    async create(spec: VmSpec): Promise<VmHandle> {
      for (const note of vzIgnoredFeatures(spec)) log.debug("vz ignores a spec feature", { note });
      const vm = deps.native().create(vzSpecJson(spec));
      return new VzVmHandle(vm, spec, deps);
    },
  };
}
