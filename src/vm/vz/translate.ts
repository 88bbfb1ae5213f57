// VmSpec -> the JSON that shim/vz/havm_vz.m builds a VZVirtualMachineConfiguration from. PURE: no I/O.
// Golden-tested (test/vz/golden/). The shape is part of the shim's ABI: change it together with
// HAVM_VZ_ABI_VERSION in shim/havm.h and VZ_ABI_VERSION in src/ffi/vz.ts.
import type { DiskSpec, VmSpec } from "../spec.ts";
import { HavmError, ExitCode } from "../../util/errors.ts";

/** Must equal HAVM_VZ_ABI_VERSION (shim/havm.h); the shim refuses other versions. */
export const VZ_SPEC_VERSION = 1;

const MIB = 1024 * 1024;

export interface VzDiskJson {
  id: string;
  path: string;
  readOnly: boolean;
  caching: DiskSpec["caching"];
  sync: DiskSpec["sync"];
  /** virtio -> VZVirtioBlockDeviceConfiguration; usb -> VZUSBMassStorageDeviceConfiguration. */
  bus: DiskSpec["bus"];
}

export interface VzSpecJson {
  version: typeof VZ_SPEC_VERSION;
  name: string;
  cpus: number;
  /** Whole MiB: Virtualization.framework refuses other sizes. */
  memoryBytes: number;
  efiVariableStore: { path: string; create: boolean };
  machineIdentifier: { path: string; dataBase64: string };
  disks: VzDiskJson[];
  network: { mode: "nat" | "bridge"; mac: string; interface?: string };
  serialLogPath: string;
  entropy: boolean;
  balloon: boolean;
  /** XHCI controller (macOS 15+): the CONFIG stick hangs off it and USB hot-plug needs it. */
  usbController: boolean;
}

/** What the vz backend leaves out of a spec, and why (logged once by the backend). */
export function vzIgnoredFeatures(spec: VmSpec): string[] {
  const out: string[] = [];
  if (spec.watchdog) out.push("watchdog: Virtualization.framework has no hardware watchdog device");
  if (spec.network.forwards.length > 0) out.push("port forwards: vz NAT reaches the guest by its IP address instead");
  return out;
}

function specError(message: string, hint: string): HavmError {
  return new HavmError(message, { hint, exitCode: ExitCode.badInput, code: "vz.spec" });
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export function translateVzSpec(spec: VmSpec): VzSpecJson {
  const dataBase64 = spec.machineIdentifier.vzDataBase64;
  if (!dataBase64) {
    throw specError(
      `the VM has no Virtualization.framework machine identifier (${spec.machineIdentifier.path})`,
      "The identity step creates it on first run; remove the VM directory's MachineIdentifier only if you mean to create a new VM.",
    );
  }
  if (!Number.isInteger(spec.cpus) || spec.cpus < 1) {
    throw specError(`invalid CPU count ${spec.cpus}`, "Set vm.cpus to a whole number of at least 1.");
  }
  const memoryBytes = Math.floor(spec.memoryBytes / MIB) * MIB;
  if (memoryBytes <= 0) {
    throw specError(`invalid memory size ${spec.memoryBytes} bytes`, "Set vm.memory to at least a few GiB, e.g. 4G.");
  }
  const mac = spec.network.mac.toLowerCase();
  if (!MAC_RE.test(mac)) {
    throw specError(`"${spec.network.mac}" is not a MAC address`, "Use the form 02:xx:xx:xx:xx:xx (network.mac).");
  }
  const network: VzSpecJson["network"] = { mode: spec.network.mode, mac };
  if (spec.network.mode === "bridge") {
    if (!spec.network.interface) {
      throw specError("network.type is bridge but no interface is named", "Set network.interface, e.g. en0.");
    }
    network.interface = spec.network.interface;
  }
  return {
    version: VZ_SPEC_VERSION,
    name: spec.name,
    cpus: spec.cpus,
    memoryBytes,
    efiVariableStore: { path: spec.efi.varsPath, create: spec.efi.create },
    machineIdentifier: { path: spec.machineIdentifier.path, dataBase64 },
    disks: spec.disks.map((d) => ({
      id: d.id,
      path: d.path,
      readOnly: d.readOnly,
      caching: d.caching,
      sync: d.sync,
      bus: d.bus,
    })),
    network,
    serialLogPath: spec.serialLogPath,
    entropy: spec.entropy,
    balloon: spec.balloon,
    usbController: spec.usbController,
  };
}

/** The NUL-free JSON text handed to havm_vm_create / havm_vm_validate. */
export function vzSpecJson(spec: VmSpec): string {
  return JSON.stringify(translateVzSpec(spec));
}
