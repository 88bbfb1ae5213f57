// The VM's persistent identity: created once, then the same on every boot, on both backends.
//   vm/MachineIdentifier  qemu: 16 random bytes in UUID v4 layout (the SMBIOS UUID).
//                         vz:   VZGenericMachineIdentifier.dataRepresentation, created by the shim.
//   MAC address           network.mac when set, else DERIVED from the identifier (not stored in a file):
//                         sha256("havm-mac\0" + identifier) -> first 6 bytes, locally administered, unicast.
//                         Deriving keeps one source of truth: the MAC cannot drift from the identifier.
//   vm/NVRAM              the EFI variable store; the backends create it (nvram.create) on first boot.
// A file that exists but cannot be used is an error naming it, never a silent new identity: Home Assistant
// would then look like a new machine (new MAC, so a new DHCP lease and IP).
import { readFile, stat } from "node:fs/promises";
import { createHash, randomBytes } from "node:crypto";
import type { VmPaths } from "../config/paths.ts";
import { HavmError, ExitCode, errnoCode, inputError } from "../util/errors.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { log } from "../util/log.ts";

export interface Identity {
  machineIdentifierBytes: Uint8Array;
  /** qemu: the identifier itself; vz: derived from it. Lower-case, hyphenated. */
  uuid: string;
  /** Lower-case, colon-separated. */
  mac: string;
  nvram: { path: string; create: boolean };
}

export type BackendKind = "qemu" | "vz";

export interface EnsureIdentityOptions {
  vm: VmPaths;
  /** config.network.mac */
  configMac?: string;
  backend: BackendKind;
  /** vz: a new VZGenericMachineIdentifier's dataRepresentation (from the shim). */
  createVzIdentifier?: () => Uint8Array;
  /** vz: true when VZGenericMachineIdentifier initWithDataRepresentation: accepts the bytes. */
  validateVzIdentifier?: (bytes: Uint8Array) => boolean;
  /** Injected randomness for qemu identifiers (tests). */
  random16?: () => Uint8Array;
}

// ---------------------------------------------------------------------------------------------------------
// Pure parts

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

/** 16 bytes as a lower-case hyphenated UUID string. */
export function formatUuid(bytes: Uint8Array): string {
  if (bytes.length !== 16) throw new RangeError(`a UUID has 16 bytes, not ${bytes.length}`);
  const h = hex(bytes);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Set the RFC 4122 version-4 and variant bits on 16 random bytes (returns a copy). */
export function asUuidV4(random: Uint8Array): Uint8Array {
  if (random.length !== 16) throw new RangeError(`need 16 random bytes, not ${random.length}`);
  const b = Uint8Array.from(random);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return b;
}

/** The UUID havm shows for an identifier: qemu uses the bytes; vz hashes its opaque data representation. */
export function uuidForIdentifier(backend: BackendKind, bytes: Uint8Array): string {
  if (backend === "qemu") return formatUuid(bytes);
  return formatUuid(asUuidV4(createHash("sha256").update(bytes).digest().subarray(0, 16)));
}

/** A stable, locally administered, unicast MAC derived from the machine identifier. */
export function deriveMac(identifier: Uint8Array): string {
  const d = createHash("sha256").update("havm-mac\0").update(identifier).digest();
  const b = Array.from(d.subarray(0, 6));
  b[0] = (b[0]! | 0x02) & 0xfe; // locally administered, not multicast
  return b.map((x) => x.toString(16).padStart(2, "0")).join(":");
}

/** Normalise a configured MAC; undefined when it is not a unicast MAC address. */
export function normalizeMac(mac: string): string | undefined {
  const m = mac.trim().toLowerCase().replaceAll("-", ":");
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m)) return undefined;
  if (parseInt(m.slice(0, 2), 16) & 1) return undefined;
  return m;
}

// ---------------------------------------------------------------------------------------------------------
// The stage

function corrupt(path: string, what: string): HavmError {
  return new HavmError(`the VM's identity file ${path} is unusable: ${what}`, {
    code: "vm.identity",
    exitCode: ExitCode.failure,
    hint:
      `havm never replaces it silently. If you have a backup, restore it. Otherwise move ${path} away to ` +
      "start with a new identity: Home Assistant will then look like a new machine (new MAC address, so most likely a new IP address).",
  });
}

async function readOptional(path: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    const code = errnoCode(e);
    if (code === "ENOENT") return undefined;
    throw corrupt(path, `cannot read it (${code ?? String(e)})`);
  }
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return undefined;
    throw corrupt(path, `cannot stat it (${errnoCode(e) ?? String(e)})`);
  }
}

/** Load the persisted identity, creating the identifier on first run. */
export async function ensureIdentity(opts: EnsureIdentityOptions): Promise<Identity> {
  const { vm, backend } = opts;
  const idPath = vm.machineIdentifier;
  let bytes = await readOptional(idPath);

  if (bytes !== undefined) {
    if (backend === "qemu") {
      if (bytes.length !== 16) throw corrupt(idPath, `expected 16 bytes (a UUID) for the qemu backend, found ${bytes.length}`);
      if (bytes.every((b) => b === 0)) throw corrupt(idPath, "it is all zeros");
    } else {
      if (bytes.length === 0) throw corrupt(idPath, "it is empty");
      if (opts.validateVzIdentifier && !opts.validateVzIdentifier(bytes)) {
        throw corrupt(idPath, "Virtualization.framework does not accept it as a VZGenericMachineIdentifier");
      }
    }
  } else {
    // A VM that booted before (its NVRAM exists) but lost its identifier gets a new one: say so loudly.
    // (Not the disk: on the first run the disk is created before the identity.)
    if ((await sizeOf(vm.nvram)) !== undefined) {
      log.warn("creating a new machine identifier for an existing VM: Home Assistant will look like a new machine (new MAC address)", {
        path: idPath,
      });
    }
    if (backend === "qemu") {
      bytes = asUuidV4(opts.random16 ? opts.random16() : randomBytes(16));
    } else {
      if (!opts.createVzIdentifier) {
        throw new HavmError("internal: the vz backend must supply createVzIdentifier", { code: "internal", exitCode: ExitCode.failure });
      }
      bytes = Uint8Array.from(opts.createVzIdentifier());
      if (bytes.length === 0) throw new HavmError("Virtualization.framework returned an empty machine identifier", { code: "vm.identity" });
    }
    writeFileAtomic(idPath, bytes, 0o644);
    log.info("created the VM's machine identifier", { path: idPath, backend });
  }

  let mac: string;
  if (opts.configMac !== undefined) {
    const m = normalizeMac(opts.configMac);
    if (!m) throw inputError(`network.mac is not a unicast MAC address: ${opts.configMac}`, "Use a form like 02:ab:cd:ef:01:23 (the first octet must be even).", "config.mac");
    mac = m;
  } else {
    mac = deriveMac(bytes);
  }

  const nvramSize = await sizeOf(vm.nvram);
  if (nvramSize === 0) throw corrupt(vm.nvram, "the EFI variable store is empty");
  return {
    machineIdentifierBytes: bytes,
    uuid: uuidForIdentifier(backend, bytes),
    mac,
    nvram: { path: vm.nvram, create: nvramSize === undefined },
  };
}
