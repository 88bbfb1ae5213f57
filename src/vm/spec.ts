// The pure, versioned VM spec: what hardware the VM has and where its state lives. Built from the
// config and the prepared disks; knows nothing of QEMU or Virtualization.framework. Both backends
// translate it (qemu/args.ts into argv, vz into the shim's JSON), and golden tests pin both.

export const VM_SPEC_VERSION = 1;

export type GuestArch = "x86_64" | "aarch64";

export interface DiskSpec {
  /** Stable id used by backends for device names ("root", "config"). */
  id: string;
  path: string;
  readOnly: boolean;
  /** Host caching: "cached" for the root disk (VZ: Cached + Full sync is what keeps ext4 safe). */
  caching: "cached" | "uncached";
  /** Whether guest flushes reach the disk: "full" honours every flush (never "none" for user data). */
  sync: "full" | "fsync";
  /** virtio-blk for the root disk; USB mass storage for the CONFIG stick. */
  bus: "virtio" | "usb";
}

export interface PortForward {
  /** Guest TCP port (8123, 80, 22222, 22, 4357). */
  guestPort: number;
  /** Host port on 127.0.0.1; chosen by havm before start (qemu user-mode NAT only). */
  hostPort: number;
}

export interface NetworkSpec {
  mode: "nat" | "bridge";
  /** Host interface for bridge mode (en0, br0). */
  interface?: string;
  /** Stable, locally administered unicast MAC. */
  mac: string;
  hostname?: string;
  /** NAT on qemu: host ports forwarded to the guest. VZ NAT reaches the guest by its IP instead. */
  forwards: PortForward[];
}

export interface UsbDeviceRef {
  vendorId: number;
  productId: number;
  serial?: string;
  /** Host location when known (qemu: bus/address). */
  hostBus?: number;
  hostAddr?: number;
  name?: string;
  /** macOS AccessoryAccess registry id (decimal u64), to tell identical sticks apart. */
  registryId?: string;
}

export interface VmSpec {
  version: typeof VM_SPEC_VERSION;
  name: string;
  arch: GuestArch;
  cpus: number;
  memoryBytes: number;
  efi: {
    /** The persisted variable store. */
    varsPath: string;
    /** True on first boot: the backend creates the store (VZ) or copies the template (qemu). */
    create: boolean;
  };
  /** Persisted machine identifier: base64 of VZGenericMachineIdentifier.dataRepresentation on vz;
   *  a UUID string on qemu (-uuid). Backends use the field they understand. */
  machineIdentifier: { path: string; uuid: string; vzDataBase64?: string };
  disks: DiskSpec[];
  network: NetworkSpec;
  serialLogPath: string;
  entropy: boolean;
  balloon: boolean;
  /** An XHCI controller at boot (needed for the CONFIG stick and for USB hot-plug). */
  usbController: boolean;
  /** A hardware watchdog the guest can arm (qemu i6300esb); resets a hung guest. */
  watchdog: boolean;
}
