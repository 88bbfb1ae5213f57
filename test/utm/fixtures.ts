// Build UTM bundles in temp dirs, shaped like the ones UTM 4 writes (ConfigurationVersion 4, both backends).
import { closeSync, mkdirSync, mkdtempSync, openSync, statSync, writeFileSync, writeSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build, type PlistValue } from "plist";

export const MIB = 1024 * 1024;

export function tempDir(prefix = "havm-utm-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A sparse raw file of `size` bytes with a distinct 64 KiB pattern at each offset in `dataAt`. */
export function sparseRaw(path: string, size: number, dataAt: number[], seed = 1): void {
  const fd = openSync(path, "w");
  try {
    ftruncateSync(fd, size);
    for (const [i, off] of dataAt.entries()) {
      const block = new Uint8Array(64 * 1024);
      for (let j = 0; j < block.length; j++) block[j] = (j * 31 + i * 7 + seed) & 0xff || 1;
      writeSync(fd, block, 0, block.length, off);
    }
  } finally {
    closeSync(fd);
  }
}

export const allocated = (path: string): number => statSync(path).blocks * 512;

/** 16 bytes standing in for a VZGenericMachineIdentifier dataRepresentation. */
export const MACHINE_ID = new Uint8Array([0x62, 0x70, 0x6c, 0x69, 0x73, 0x74, 0x30, 0x30, 0xd1, 0x01, 0x02, 0x54, 0x45, 0x43, 0x49, 0x44]);

export interface DriveSpec {
  name?: string;
  readOnly?: boolean;
  /** QEMU only. */
  imageType?: string;
  interface?: string;
}

export interface BundleSpec {
  backend: "Apple" | "QEMU";
  version?: number | null;
  name?: string;
  cpuCount?: number;
  memoryMiB?: number;
  drives: DriveSpec[];
  network?: Record<string, PlistValue>[];
  machineIdentifier?: Uint8Array | null;
  efiVarsPath?: string;
  architecture?: string;
  extra?: Record<string, PlistValue>;
}

/** The config.plist value UTM 4 would write for this spec. */
export function configPlist(spec: BundleSpec): Record<string, PlistValue> {
  const apple = spec.backend === "Apple";
  const system: Record<string, PlistValue> = {
    Architecture: spec.architecture ?? "aarch64",
    CPUCount: spec.cpuCount ?? 2,
    MemorySize: spec.memoryMiB ?? 4096,
  };
  if (apple) {
    system.Boot = { OperatingSystem: "Linux", UEFIBoot: true, ...(spec.efiVarsPath ? { EfiVariableStoragePath: spec.efiVarsPath } : {}) };
    if (spec.machineIdentifier !== null) system.GenericPlatform = { machineIdentifier: spec.machineIdentifier ?? MACHINE_ID };
  } else {
    system.Target = "virt";
    system.CPU = "default";
  }
  const drives = spec.drives.map((d, i): PlistValue => {
    const base: Record<string, PlistValue> = { Identifier: `DRIVE-${i}`, ReadOnly: d.readOnly ?? false };
    if (d.name) base.ImageName = d.name;
    if (apple) return { ...base, Nvme: false };
    return { ...base, ImageType: d.imageType ?? "Disk", Interface: d.interface ?? "VirtIO" };
  });
  const plist: Record<string, PlistValue> = {
    Backend: spec.backend,
    Information: { Name: spec.name ?? "Home Assistant", UUID: "6C7B3B8A-0000-4000-8000-000000000001", Icon: "linux", IconCustom: false },
    System: system,
    Drive: drives,
    Network: spec.network ?? [{ Mode: "Shared", MacAddress: "02:AB:CD:EF:01:23" }],
    Display: [],
    Serial: [],
    ...(apple
      ? { Virtualization: { Audio: false, Balloon: true, ClipboardSharing: false, Entropy: true, Keyboard: "Generic", Pointer: "Mouse" } }
      : { QEMU: { UEFIBoot: true, Hypervisor: true }, Sharing: { ClipboardSharing: false }, Sound: [], Input: { UsbBusSupport: "3.0" } }),
    ...spec.extra,
  };
  if (spec.version !== null) plist.ConfigurationVersion = spec.version ?? 4;
  return plist;
}

/** Write `<dir>/<name>.utm/config.plist` (+ Data/); returns the bundle path. Disks are written by the caller. */
export function writeBundle(dir: string, spec: BundleSpec, name = "Home Assistant"): string {
  const bundle = join(dir, `${name}.utm`);
  mkdirSync(join(bundle, "Data"), { recursive: true });
  writeFileSync(join(bundle, "config.plist"), build(configPlist(spec)));
  return bundle;
}

/** A small edk2/VZ-like variable store: distinct bytes so a byte-for-byte check means something. */
export function writeEfiVars(path: string, size = 128 * 1024): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 13 + 5) & 0xff;
  writeFileSync(path, bytes);
  return bytes;
}
