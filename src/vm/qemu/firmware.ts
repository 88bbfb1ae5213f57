// UEFI firmware for QEMU: find the code image and the variable-store template for an architecture, and
// create the VM's persisted NVRAM from the template exactly once.
import { readFileSync, statSync } from "node:fs";
import type { GuestArch } from "../spec.ts";
import { HavmError, ExitCode, errnoCode } from "../../util/errors.ts";
import { writeFileAtomic } from "../../util/fs.ts";
import { log } from "../../util/log.ts";

export interface FirmwarePair {
  code: string;
  varsTemplate: string;
}

/** Known code/vars pairs by distribution, most preferred first. Code and vars must come from the same build
 *  (a 4 MiB code image only boots with the 4 MiB vars layout). */
export const FIRMWARE_CANDIDATES: Record<GuestArch, FirmwarePair[]> = {
  x86_64: [
    // Debian/Ubuntu `ovmf`
    { code: "/usr/share/OVMF/OVMF_CODE_4M.fd", varsTemplate: "/usr/share/OVMF/OVMF_VARS_4M.fd" },
    { code: "/usr/share/OVMF/OVMF_CODE.fd", varsTemplate: "/usr/share/OVMF/OVMF_VARS.fd" },
    // Fedora `edk2-ovmf`
    { code: "/usr/share/edk2/ovmf/OVMF_CODE.fd", varsTemplate: "/usr/share/edk2/ovmf/OVMF_VARS.fd" },
    // Arch `edk2-ovmf`
    { code: "/usr/share/edk2/x64/OVMF_CODE.4m.fd", varsTemplate: "/usr/share/edk2/x64/OVMF_VARS.4m.fd" },
    // QEMU's own bundled build
    { code: "/usr/share/qemu/edk2-x86_64-code.fd", varsTemplate: "/usr/share/qemu/edk2-i386-vars.fd" },
  ],
  aarch64: [
    // Debian/Ubuntu `qemu-efi-aarch64`
    { code: "/usr/share/AAVMF/AAVMF_CODE.fd", varsTemplate: "/usr/share/AAVMF/AAVMF_VARS.fd" },
    // Fedora `edk2-aarch64`
    { code: "/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", varsTemplate: "/usr/share/edk2/aarch64/vars-template-pflash.raw" },
    // QEMU's own bundled build
    { code: "/usr/share/qemu/edk2-aarch64-code.fd", varsTemplate: "/usr/share/qemu/edk2-arm-vars.fd" },
  ],
};

/** The Debian package that ships the firmware for an architecture. */
export function firmwarePackage(arch: GuestArch): string {
  return arch === "x86_64" ? "ovmf" : "qemu-efi-aarch64";
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export interface FirmwareOverride {
  /** config `qemu.firmware_code` */
  code?: string;
  /** config `qemu.firmware_vars` */
  vars?: string;
}

/** Find the firmware pair to use. Overrides from the config win and must exist. */
export function findFirmware(
  arch: GuestArch,
  override: FirmwareOverride = {},
  candidates: FirmwarePair[] = FIRMWARE_CANDIDATES[arch],
  fileExists: (p: string) => boolean = isFile,
): FirmwarePair {
  if (override.code || override.vars) {
    if (!override.code || !override.vars) {
      throw new HavmError("qemu.firmware_code and qemu.firmware_vars must be set together", {
        hint: "Set both to files from the same firmware build (code and its variable-store template), or neither.",
        exitCode: ExitCode.badInput,
        code: "qemu.firmware.config",
      });
    }
    for (const p of [override.code, override.vars]) {
      if (!fileExists(p)) {
        throw new HavmError(`UEFI firmware file not found: ${p}`, {
          hint: "Fix qemu.firmware_code / qemu.firmware_vars in the config file, or remove them to use the installed firmware.",
          exitCode: ExitCode.badInput,
          code: "qemu.firmware.missing",
        });
      }
    }
    return { code: override.code, varsTemplate: override.vars };
  }
  const found = candidates.find((c) => fileExists(c.code) && fileExists(c.varsTemplate));
  if (!found) {
    const pkg = firmwarePackage(arch);
    throw new HavmError(`no UEFI firmware for ${arch} guests found (looked for ${candidates.map((c) => c.code).join(", ")})`, {
      hint: `Install it: sudo apt-get install ${pkg} (or set qemu.firmware_code and qemu.firmware_vars in the config file).`,
      exitCode: ExitCode.unsupported,
      code: "qemu.firmware.missing",
    });
  }
  return found;
}

export type NvramResult = "created" | "reused";

/**
 * Make sure the VM's NVRAM (edk2 pflash variable store) exists: copy the template atomically on first
 * boot; afterwards reuse the file, refusing one whose size does not match the template (QEMU would
 * refuse it anyway, and a silent new store would lose the boot entries).
 */
export function ensureNvram(nvramPath: string, varsTemplate: string, opts: { create: boolean }): NvramResult {
  let templateSize: number;
  try {
    templateSize = statSync(varsTemplate).size;
  } catch (e) {
    throw new HavmError(`cannot read the UEFI variable-store template ${varsTemplate}: ${errnoCode(e) ?? e}`, {
      hint: "Reinstall the firmware package, or fix qemu.firmware_vars.",
      code: "qemu.firmware.template",
    });
  }
  let size: number | undefined;
  try {
    size = statSync(nvramPath).size;
  } catch (e) {
    if (errnoCode(e) !== "ENOENT") throw e;
  }
  if (size === undefined) {
    if (!opts.create) {
      throw new HavmError(`the EFI variable store ${nvramPath} is missing`, {
        hint: "It held this VM's boot entries. Restore it from a backup; delete the VM's MachineIdentifier too only if you want a new identity.",
        code: "qemu.nvram.missing",
      });
    }
    writeFileAtomic(nvramPath, readFileSync(varsTemplate), 0o600);
    log.debug("created the EFI variable store from the template", { nvram: nvramPath, template: varsTemplate });
    return "created";
  }
  if (size !== templateSize) {
    throw new HavmError(
      `the EFI variable store ${nvramPath} is ${size} bytes, but the firmware's template ${varsTemplate} is ${templateSize} bytes`,
      {
        hint:
          "The file is damaged, or it came from another firmware or from the macOS backend (not an edk2 pflash store). " +
          "Move it away to let havm create a fresh one (the guest's boot entries are rebuilt from the disk), or point qemu.firmware_code/qemu.firmware_vars at the matching firmware.",
        code: "qemu.nvram.size",
      },
    );
  }
  return "reused";
}
