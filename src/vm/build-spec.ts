// Config + prepared disks + identity -> the pure VmSpec the backends translate. No I/O.
import type { Config } from "../config/schema.ts";
import type { VmPaths } from "../config/paths.ts";
import type { GuestArch, PortForward, VmSpec } from "./spec.ts";
import { VM_SPEC_VERSION } from "./spec.ts";
import type { Resources } from "./resources.ts";

/** Guest ports havm reaches: HA (8123 and, on new installs, 80), debug SSH, the SSH add-on, the observer. */
export const GUEST_PORTS = { ha: 8123, haNew: 80, debugSsh: 22222, sshAddon: 22, observer: 4357 } as const;

export interface SpecInputs {
  config: Config;
  vm: VmPaths;
  arch: GuestArch;
  resources: Resources;
  identity: { uuid: string; mac: string; vzDataBase64?: string; nvramCreate: boolean };
  /** The CONFIG stick image, when there is one to attach. */
  configDiskPath?: string;
  /** Host ports for NAT forwards (qemu); empty for vz, which reaches the guest by IP. */
  forwards: PortForward[];
}

export function buildVmSpec(i: SpecInputs): VmSpec {
  const disks: VmSpec["disks"] = [{ id: "root", path: i.vm.disk, readOnly: false, caching: "cached", sync: "full", bus: "virtio" }];
  if (i.configDiskPath) {
    disks.push({ id: "config", path: i.configDiskPath, readOnly: true, caching: "cached", sync: "full", bus: "usb" });
  }
  return {
    version: VM_SPEC_VERSION,
    name: "havm",
    arch: i.arch,
    cpus: i.resources.cpus,
    memoryBytes: i.resources.memoryBytes,
    efi: { varsPath: i.vm.nvram, create: i.identity.nvramCreate },
    machineIdentifier: {
      path: i.vm.machineIdentifier,
      uuid: i.identity.uuid,
      ...(i.identity.vzDataBase64 ? { vzDataBase64: i.identity.vzDataBase64 } : {}),
    },
    disks,
    network: {
      mode: i.config.network.type,
      ...(i.config.network.interface ? { interface: i.config.network.interface } : {}),
      mac: i.identity.mac,
      ...(i.config.network.hostname ? { hostname: i.config.network.hostname } : {}),
      forwards: i.forwards,
    },
    serialLogPath: i.vm.serialLog,
    entropy: true,
    balloon: true,
    usbController: true,
    watchdog: true,
  };
}

/** Host architecture -> guest architecture (HAOS board generic-x86-64 / generic-aarch64). */
export function hostGuestArch(arch: string = process.arch): GuestArch {
  if (arch === "x64") return "x86_64";
  if (arch === "arm64") return "aarch64";
  throw new Error(`unsupported CPU architecture ${arch}`);
}
