// THE backend interface: the only thing the rest of havm knows about a hypervisor.
// Two implementations: qemu (Linux) and vz (macOS, via the Objective-C shim).
import type { UsbDeviceRef, VmSpec } from "./spec.ts";

export type BackendName = "qemu" | "vz";

/** VM lifecycle states, common to both backends (VZ's Saving/Restoring map to "paused"). */
export const VM_STATES = ["stopped", "starting", "running", "paused", "stopping", "error"] as const;
export type VmState = (typeof VM_STATES)[number];

export type BackendEvent =
  | { type: "state"; state: VmState }
  /** The guest powered itself off (clean shutdown from inside). */
  | { type: "guest-stopped" }
  /** The hypervisor stopped the VM because of an error. */
  | { type: "stopped-with-error"; message: string }
  | { type: "network-disconnected"; message: string }
  /** The guest reset itself (reboot, or the hardware watchdog fired). */
  | { type: "reset"; reason: string }
  | { type: "usb"; action: "attached" | "detached"; device: UsbDeviceRef }
  | { type: "log"; level: "debug" | "info" | "warning"; message: string };

/** Can this backend run here? Shown by `havm version`, checked before `havm run` touches anything. */
export interface BackendProbe {
  backend: BackendName;
  usable: boolean;
  /** One line per fact: "qemu-system-x86_64 7.2.22", "/dev/kvm: present but unusable, TCG".  */
  details: string[];
  /** When unusable: what to do about it. */
  hint?: string;
}

/** Where the host reaches a guest TCP port: a forwarded 127.0.0.1 port (qemu NAT) or guest IP. */
export interface Endpoint {
  host: string;
  port: number;
}

export interface MemoryStats {
  /** Bytes the VM may use now (balloon target). */
  targetBytes?: number;
  /** Guest-reported figures where the backend has them (qemu balloon stats). */
  guestFreeBytes?: number;
  guestTotalBytes?: number;
  guestAvailableBytes?: number;
}

export interface VmHandle {
  readonly backend: BackendName;
  /** The hypervisor's process when it is a child of havm (qemu), for orphan cleanup after `kill -9`. */
  readonly pid?: number | undefined;
  /** Boot the VM. Resolves when the hypervisor reports it running. */
  start(): Promise<void>;
  /** Ask the guest to power off (ACPI power button / requestStop). Resolves true if the request was delivered. */
  requestStop(): Promise<boolean>;
  /** Stop now, like pulling the plug. Resolves when the VM is stopped. */
  forceStop(): Promise<void>;
  state(): VmState;
  /** Subscribe to events; returns an unsubscribe function. */
  onEvent(listener: (event: BackendEvent) => void): () => void;
  /** Resolves when the VM has stopped (any reason). */
  stopped(): Promise<void>;
  /** Where to connect to reach a guest TCP port, or null while unknown (guest IP not leased yet). */
  endpoint(guestPort: number): Promise<Endpoint | null>;
  attachUsb(device: UsbDeviceRef): Promise<void>;
  detachUsb(device: UsbDeviceRef): Promise<void>;
  setBalloonTarget(bytes: number): Promise<void>;
  memoryStats(): Promise<MemoryStats>;
  /** Release host resources (sockets, native handles). Safe to call more than once. */
  close(): Promise<void>;
}

export interface HostLimits {
  cpus: number;
  memoryBytes: number;
  /** Backend limits (VZ reads them from VZVirtualMachineConfiguration at run time). */
  minCpus: number;
  maxCpus: number;
  minMemoryBytes: number;
  maxMemoryBytes: number;
}

export interface Backend {
  readonly name: BackendName;
  probe(): Promise<BackendProbe>;
  limits(): HostLimits;
  /** Validate and build the VM from a spec (VZ validates its configuration here and reports verbatim). */
  create(spec: VmSpec): Promise<VmHandle>;
}
