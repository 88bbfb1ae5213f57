// A UTM bundle's parsed config.plist + facts about its files -> what `havm import-utm` will do. Pure:
// no I/O, so every rule (which disk, which NVRAM, which settings, what is left behind) is table tested.
//
// Layouts (ConfigurationVersion 4; see shared/design/haos-facts.md):
//   Apple: System{Architecture, CPUCount, MemorySize (MiB), Boot{EfiVariableStoragePath}, GenericPlatform
//          {machineIdentifier (data, lowercase m)}}, Drive[{Identifier, ImageName, ReadOnly, Nvme}] (no
//          Interface), Network[{Mode Shared|Bridged, MacAddress, BridgeInterface?}].
//   QEMU:  System{Architecture, Target, CPUCount, MemorySize}, QEMU{UEFIBoot}, Drive[{ImageName, ImageType
//          Disk|CD|..., Interface, ReadOnly?}], Network[{Mode Emulated|Shared|Host|Bridged, MacAddress,
//          BridgeInterface?, PortForward[]}]. Its efi_vars.fd is an edk2 pflash image, not a VZ store.
import type { PlistValue } from "plist";
import { HavmError, ExitCode, inputError } from "../util/errors.ts";
import { DEFAULTS, MAC_RE } from "../config/schema.ts";
import { formatSize } from "../config/units.ts";
import { conversionCommand, qemuImgCanConvert, type DiskFormat } from "./format.ts";

export type UtmBackend = "apple" | "qemu";

/** What bundle.ts learned about one file under Data/. */
export interface FileFacts {
  path: string;
  fileSize: number;
  /** Bytes allocated on disk (st_blocks * 512). */
  allocated: number;
  format: DiskFormat;
  /** The size the guest sees (qcow2/ASIF header; the file size for raw). */
  logicalSize: number;
}

export interface PlanInput {
  bundlePath: string;
  configPath: string;
  plist: PlistValue;
  /** Facts for the files under Data/ that exist, by their name in config.plist. */
  files: ReadonlyMap<string, FileFacts>;
  host: { platform: NodeJS.Platform; arch: string };
  /** qemu-img is available to turn qcow2/VMDK/VHDX/VDI into raw. */
  canConvert: boolean;
}

/** The settings that go into config.yml. */
export interface ImportedConfig {
  cpuCount: number;
  /** "N MiB". */
  memorySize?: string;
  /** Bytes, a whole number of MiB: the imported disk's size (havm never shrinks a disk, and refuses to run
   *  when vm.disk_size is below the disk's size). The merge keeps a larger value the user set. */
  diskSize?: number;
  network?: { type: "nat" } | { type: "bridge"; interface?: string };
  mac?: string;
}

export interface DiskPlan {
  /** ImageName in config.plist (a file under Data/). */
  name: string;
  path: string;
  format: DiskFormat;
  logicalSize: number;
  allocated: number;
  /** How it becomes vm/haos.img. */
  method: "copy" | "qemu-img";
}

export type NvramPlan =
  | { action: "copy"; name: string; path: string }
  | { action: "fresh"; reason: string };

export type MachineIdentifierPlan = { action: "write"; bytes: Uint8Array } | { action: "none"; reason: string };

export interface ImportPlan {
  backend: UtmBackend;
  name: string;
  architecture?: string;
  disk: DiskPlan;
  nvram: NvramPlan;
  machineIdentifier: MachineIdentifierPlan;
  config: ImportedConfig;
  /** Things the user should act on (other disks with data, odd settings). */
  warnings: string[];
  /** Things that stay behind in the bundle, for the summary. */
  notImported: string[];
}

type Dict = { readonly [key: string]: PlistValue };

const isDict = (v: PlistValue | undefined): v is Dict =>
  v !== null && v !== undefined && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof Date);
const dict = (v: PlistValue | undefined): Dict => (isDict(v) ? v : {});
const list = (v: PlistValue | undefined): readonly PlistValue[] => (Array.isArray(v) ? v : []);
const str = (v: PlistValue | undefined): string | undefined => (typeof v === "string" ? v : undefined);
const num = (v: PlistValue | undefined): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
const data = (v: PlistValue | undefined): Uint8Array | undefined => (v instanceof Uint8Array ? v : undefined);

const DEFAULT_EFI_VARS = "efi_vars.fd";
const MIB = 1024 * 1024;

/** UTM-only sections: shown as "not imported" when the bundle has them. */
const UTM_ONLY_SECTIONS: Record<string, string> = {
  Display: "displays",
  Serial: "serial ports",
  Sharing: "shared directories and clipboard sharing",
  Sound: "sound",
  Input: "USB input settings",
  Virtualization: "UTM virtualization toggles (audio, clipboard, Rosetta, keyboard/pointer)",
};

function unsupported(message: string, hint: string, code: string): HavmError {
  return inputError(message, hint, code);
}

/** Which backend wrote this config. Refuses legacy (pre-4) and unknown configs. */
export function bundleBackend(plist: PlistValue, configPath: string): UtmBackend {
  const root = dict(plist);
  const version = num(root.ConfigurationVersion);
  const backend = str(root.Backend);
  if (backend === undefined || version === undefined || version < 4) {
    throw unsupported(
      `${configPath} is a legacy UTM configuration (${version === undefined ? "no ConfigurationVersion" : `ConfigurationVersion ${version}`}${backend === undefined ? ", no Backend" : ""}), written by UTM 3 or older`,
      "Open the VM once in a current UTM (4 or newer): it upgrades the bundle. Then run havm import-utm again.",
      "utm.legacy",
    );
  }
  if (backend === "Apple") return "apple";
  if (backend === "QEMU") return "qemu";
  throw unsupported(
    `${configPath} has Backend "${backend}"; havm imports UTM VMs of the Apple or QEMU backend`,
    "Check that this is the Home Assistant VM's bundle.",
    "utm.backend",
  );
}

/** The files under Data/ that the plan needs facts about (drive images and the EFI variable store). */
export function referencedFiles(plist: PlistValue): string[] {
  const root = dict(plist);
  const names = new Set<string>();
  for (const d of list(root.Drive)) {
    const name = str(dict(d).ImageName);
    if (name) names.add(name);
  }
  names.add(efiVarsName(root));
  return [...names];
}

function efiVarsName(root: Dict): string {
  return str(dict(dict(root.System).Boot).EfiVariableStoragePath) ?? DEFAULT_EFI_VARS;
}

interface DriveEntry {
  name?: string;
  writable: boolean;
  /** Why a non-writable drive is left out ("read-only", "CD"). */
  kind: string;
}

function drives(root: Dict, backend: UtmBackend): DriveEntry[] {
  return list(root.Drive).map((d): DriveEntry => {
    const drive = dict(d);
    const name = str(drive.ImageName);
    const readOnly = drive.ReadOnly === true;
    if (backend === "apple") {
      // Apple drives have no Interface/ImageType: every non-read-only drive is a disk.
      return { name, writable: !readOnly, kind: readOnly ? "read-only drive" : "disk" };
    }
    const type = str(drive.ImageType) ?? "None";
    if (type !== "Disk") return { name, writable: false, kind: type === "CD" ? "CD/ISO drive" : `${type} drive` };
    return { name, writable: !readOnly, kind: readOnly ? "read-only disk" : "disk" };
  });
}

const utmArch = (hostArch: string): string => (hostArch === "arm64" ? "aarch64" : hostArch === "x64" ? "x86_64" : hostArch);

/** The import plan, or an input error (exit 2) that says what is wrong with the bundle and what to do. */
export function planImport(input: PlanInput): ImportPlan {
  const { plist, files, host, configPath } = input;
  const backend = bundleBackend(plist, configPath);
  const root = dict(plist);
  const system = dict(root.System);
  const warnings: string[] = [];
  const notImported: string[] = [];
  const name = str(dict(root.Information).Name) ?? input.bundlePath.replace(/\/+$/, "").split("/").pop()!.replace(/\.utm$/, "");
  const architecture = str(system.Architecture);

  if (backend === "apple" && (isDict(system.MacPlatform) || str(dict(system.Boot).OperatingSystem) === "macOS")) {
    throw unsupported(
      `${configPath} describes a macOS VM; havm runs Home Assistant OS (a Linux VM)`,
      "Pass the bundle of the Home Assistant VM.",
      "utm.macos-guest",
    );
  }
  if (architecture && architecture !== utmArch(host.arch)) {
    warnings.push(
      `this VM is ${architecture} but this host is ${utmArch(host.arch)}: Home Assistant OS images are built per architecture, so the imported disk will only boot under emulation (slow) or not at all`,
    );
  }

  // --- the disk: the largest writable drive by logical size ---
  const all = drives(root, backend);
  const writable = all.filter((d) => d.writable);
  for (const d of all.filter((d) => !d.writable)) {
    notImported.push(d.name ? `${d.kind} Data/${d.name}` : `${d.kind} outside the bundle`);
  }
  if (writable.length === 0) {
    throw unsupported(
      `${input.bundlePath} has no writable disk drive (config.plist lists ${all.length === 0 ? "no drives" : all.map((d) => d.kind + (d.name ? ` ${d.name}` : "")).join(", ")})`,
      "Check that this is the Home Assistant VM's bundle; its disk is a writable drive in UTM's Drives settings.",
      "utm.no-disk",
    );
  }
  const present: { entry: DriveEntry; facts: FileFacts }[] = [];
  for (const d of writable) {
    if (!d.name) {
      warnings.push("a writable drive lives outside the bundle (UTM stores only a bookmark to it): havm cannot import it");
      continue;
    }
    const facts = files.get(d.name);
    if (!facts) {
      warnings.push(`config.plist names the disk Data/${d.name}, but the file is missing`);
      continue;
    }
    present.push({ entry: d, facts });
  }
  if (present.length === 0) {
    throw unsupported(
      `${input.bundlePath} has no disk file to import: ${writable.map((d) => (d.name ? `Data/${d.name}` : "an external drive")).join(", ")} ${writable.length === 1 ? "is" : "are"} missing`,
      "The bundle may be incomplete (copied while UTM was writing it, or its disks live elsewhere). Copy the whole .utm folder again.",
      "utm.disk-missing",
    );
  }
  // Largest first; ties keep config.plist order (the first drive is the boot disk in UTM's UI).
  const chosen = present.reduce((best, cur) => (cur.facts.logicalSize > best.facts.logicalSize ? cur : best));
  for (const other of present) {
    if (other === chosen) continue;
    warnings.push(
      `Data/${other.entry.name} (${formatSize(other.facts.logicalSize)}) is another writable disk of this VM; havm uses one disk, so it is not imported: copy it yourself if it holds data you need (${other.facts.path})`,
    );
  }
  const f = chosen.facts;
  let method: DiskPlan["method"] = "copy";
  if (f.format === "asif") {
    throw unsupported(
      `${f.path} is an ASIF image (Apple's sparse disk format); havm needs a raw disk image`,
      `Convert it to raw on macOS 26 or newer, then point config.plist's drive at the raw file (or replace the file): ${conversionCommand("asif", f.path, f.path.replace(/\.[^./]*$/, "") + "-raw.img")}`,
      "utm.asif",
    );
  }
  if (f.format !== "raw") {
    if (!qemuImgCanConvert(f.format) || !input.canConvert) {
      throw unsupported(
        `${f.path} is a ${f.format} image; havm needs a raw disk image and qemu-img (which converts it) is not installed`,
        `Install qemu-img (macOS: brew install qemu; Debian/Ubuntu: apt install qemu-utils) and run this again, or convert it yourself and replace the file: ${conversionCommand(f.format, f.path, f.path.replace(/\.[^./]*$/, "") + ".img")}`,
        "utm.disk-format",
      );
    }
    method = "qemu-img";
  }
  const disk: DiskPlan = { name: chosen.entry.name!, path: f.path, format: f.format, logicalSize: f.logicalSize, allocated: f.allocated, method };

  // --- NVRAM: reuse only a store the target backend can read ---
  const efiName = efiVarsName(root);
  const efi = files.get(efiName);
  let nvram: NvramPlan;
  const targetIsVz = host.platform === "darwin";
  if (!efi) {
    nvram = { action: "fresh", reason: `the bundle has no Data/${efiName}` };
    warnings.push(`the bundle has no EFI variable store (Data/${efiName}): havm starts a fresh one (Home Assistant OS boots from its fallback boot entry)`);
  } else if (backend === "apple" && targetIsVz) {
    nvram = { action: "copy", name: efiName, path: efi.path };
  } else if (backend === "qemu" && !targetIsVz) {
    nvram = { action: "copy", name: efiName, path: efi.path };
    warnings.push(
      `reusing UTM's edk2 variable store Data/${efiName}: if QEMU refuses it (its size must match this host's UEFI firmware), delete vm/NVRAM and havm starts a fresh one`,
    );
  } else {
    const reason =
      backend === "qemu"
        ? `Data/${efiName} is a QEMU (edk2 pflash) variable store, which Apple's Virtualization framework cannot read`
        : `Data/${efiName} is an Apple Virtualization variable store, which QEMU cannot read`;
    nvram = { action: "fresh", reason };
    notImported.push(`EFI variables (${reason}); havm starts a fresh store and Home Assistant OS boots from its fallback boot entry`);
  }

  // --- machine identifier: the VZ generic platform's, only meaningful to the vz backend ---
  let machineIdentifier: MachineIdentifierPlan;
  const mid = backend === "apple" ? data(dict(system.GenericPlatform).machineIdentifier) : undefined;
  if (mid && mid.length > 0 && targetIsVz) {
    machineIdentifier = { action: "write", bytes: mid };
  } else {
    const reason =
      backend === "qemu"
        ? "QEMU VMs have no Virtualization-framework machine identifier; havm creates a new one"
        : !mid || mid.length === 0
          ? "config.plist has no GenericPlatform.machineIdentifier; havm creates a new one"
          : "a Virtualization-framework machine identifier means nothing to QEMU";
    machineIdentifier = { action: "none", reason };
    if (backend === "apple") notImported.push(`machine identifier (${reason})`);
  }

  // --- settings for config.yml ---
  const config: ImportedConfig = { cpuCount: DEFAULTS.cpuCount };
  const cpus = num(system.CPUCount);
  if (cpus === undefined || cpus === 0) {
    // 0 is UTM's "default": UTM then picks a count for the host; havm's own default is the equivalent.
    config.cpuCount = DEFAULTS.cpuCount;
  } else if (Number.isInteger(cpus) && cpus >= 1 && cpus <= 256) {
    config.cpuCount = cpus;
  } else {
    warnings.push(`CPUCount ${cpus} in config.plist is not a usable CPU count; using havm's default (${DEFAULTS.cpuCount})`);
  }
  const mem = num(system.MemorySize);
  if (mem !== undefined) {
    if (Number.isInteger(mem) && mem >= 512) config.memorySize = `${mem} MiB`;
    else warnings.push(`MemorySize ${mem} MiB in config.plist is below havm's minimum of 512 MiB; keeping havm's memory setting`);
  }

  const networks = list(root.Network).map(dict);
  const net = networks[0];
  if (!net) {
    warnings.push("the VM has no network adapter in UTM; havm gives it one (NAT)");
    config.network = { type: "nat" };
  } else {
    const mode = str(net.Mode);
    if (mode === "Bridged") {
      const iface = str(net.BridgeInterface);
      config.network = iface ? { type: "bridge", interface: iface } : { type: "bridge" };
      if (!iface) warnings.push("UTM bridges this VM without a recorded host interface; set network.interface in config.yml (e.g. en0)");
    } else if (mode === "Shared" || mode === "Emulated") {
      config.network = { type: "nat" };
    } else if (mode === "Host") {
      config.network = { type: "nat" };
      warnings.push("UTM's host-only network has no havm equivalent; the VM gets NAT networking");
    } else {
      warnings.push(`network mode ${JSON.stringify(mode ?? null)} in config.plist is unknown; keeping havm's network setting`);
    }
    const rawMac = str(net.MacAddress);
    if (rawMac !== undefined) {
      const mac = rawMac.trim().toLowerCase().replaceAll("-", ":");
      if (MAC_RE.test(mac) && (parseInt(mac.slice(0, 2), 16) & 1) === 0) {
        // Keeping the MAC keeps the guest's DHCP lease and its address on the LAN.
        config.mac = mac;
      } else {
        warnings.push(`MAC address ${JSON.stringify(rawMac)} in config.plist is not a unicast MAC; havm keeps its own`);
      }
    }
    const forwards = list(net.PortForward).length;
    if (forwards > 0) notImported.push(`${forwards} UTM port forward${forwards === 1 ? "" : "s"} (havm has no port forwarding setting)`);
  }
  if (networks.length > 1) notImported.push(`${networks.length - 1} more network adapter${networks.length === 2 ? "" : "s"} (havm gives the VM one)`);

  notImported.push("SSH keys: UTM keeps none for the guest; set ssh.authorized_keys in config.yml for havm's CONFIG disk");
  for (const [section, what] of Object.entries(UTM_ONLY_SECTIONS)) {
    if (section in root) notImported.push(`UTM-only settings: ${what}`);
  }
  if (backend === "qemu" && isDict(root.QEMU)) notImported.push("UTM-only settings: QEMU tweaks (machine properties, extra arguments)");

  // Rounded up to a MiB (the schema's unit); below the schema's 64 MiB minimum it cannot be a HAOS disk
  // anyway, and havm's default size applies.
  const diskSize = Math.ceil(disk.logicalSize / MIB) * MIB;
  if (diskSize >= 64 * MIB) config.diskSize = diskSize;

  return { backend, name, architecture, disk, nvram, machineIdentifier, config, warnings, notImported };
}

/** Exit-code-carrying error for a running VM (exported for import.ts). */
export function busyError(dir: string): HavmError {
  return new HavmError(`havm is running this VM (${dir}); importing now would replace its disk under it`, {
    hint: "Stop it first (havm stop), then run havm import-utm again.",
    exitCode: ExitCode.busy,
    code: "utm.busy",
  });
}
