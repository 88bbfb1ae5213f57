// The pure plan: tables of parsed config.plist values + file facts -> what the import does.
import { describe, expect, test } from "bun:test";
import type { PlistValue } from "plist";
import { planImport, referencedFiles, type FileFacts, type PlanInput } from "../../src/utm/plan.ts";
import { HavmError } from "../../src/util/errors.ts";
import type { DiskFormat } from "../../src/utm/format.ts";
import { configPlist, MACHINE_ID, MIB, type BundleSpec } from "./fixtures.ts";

const GIB = 1024 * MIB;
const B = "/b/HA.utm";
const facts = (name: string, logicalSize: number, format: DiskFormat = "raw"): [string, FileFacts] => [
  name,
  { path: `${B}/Data/${name}`, fileSize: format === "raw" ? logicalSize : MIB, allocated: 4 * MIB, format, logicalSize },
];
const EFI = facts("efi_vars.fd", 128 * 1024);
const MAC_HOST = { platform: "darwin" as const, arch: "arm64" };
const LINUX_HOST = { platform: "linux" as const, arch: "arm64" };

function input(spec: BundleSpec | PlistValue, files: [string, FileFacts][], over: Partial<PlanInput> = {}): PlanInput {
  const plist = typeof spec === "object" && spec !== null && "drives" in spec ? configPlist(spec as BundleSpec) : (spec as PlistValue);
  return { bundlePath: B, configPath: `${B}/config.plist`, plist, files: new Map(files), host: MAC_HOST, canConvert: false, ...over };
}

function refusal(fn: () => unknown): HavmError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(HavmError);
    return e as HavmError;
  }
  throw new Error("expected a refusal");
}

const apple = (over: Partial<BundleSpec> = {}): BundleSpec => ({ backend: "Apple", drives: [{ name: "A.img" }], ...over });
const qemu = (over: Partial<BundleSpec> = {}): BundleSpec => ({
  backend: "QEMU",
  drives: [{ name: "installer.iso", imageType: "CD", interface: "USB", readOnly: true }, { name: "disk.qcow2" }],
  ...over,
});

describe("Apple backend", () => {
  test("on macOS: raw disk copied, VZ variable store and machine identifier reused, settings taken", () => {
    const plan = planImport(input(apple(), [facts("A.img", 32 * GIB), facts("efi_vars.fd", 128 * 1024)]));
    expect(plan.backend).toBe("apple");
    expect(plan.name).toBe("Home Assistant");
    expect(plan.disk).toMatchObject({ name: "A.img", format: "raw", method: "copy", logicalSize: 32 * GIB });
    expect(plan.nvram).toEqual({ action: "copy", name: "efi_vars.fd", path: `${B}/Data/efi_vars.fd` });
    expect(plan.machineIdentifier).toEqual({ action: "write", bytes: MACHINE_ID });
    expect(plan.config).toEqual({ cpuCount: 2, memorySize: "4096 MiB", diskSize: 32 * GIB, network: { type: "nat" }, mac: "02:ab:cd:ef:01:23" });
    expect(plan.warnings).toEqual([]);
    expect(plan.notImported).toContain("SSH keys: UTM keeps none for the guest; set ssh.authorized_keys in config.yml for havm's CONFIG disk");
    expect(plan.notImported).toContain("UTM-only settings: displays");
    expect(plan.notImported).toContain("UTM-only settings: UTM virtualization toggles (audio, clipboard, Rosetta, keyboard/pointer)");
  });

  test("on Linux (qemu backend): the VZ store and identifier cannot be used; both are fresh and reported", () => {
    const plan = planImport(input(apple(), [facts("A.img", 32 * GIB), facts("efi_vars.fd", 1)], { host: LINUX_HOST }));
    expect(plan.nvram.action).toBe("fresh");
    expect(plan.machineIdentifier).toEqual({ action: "none", reason: "a Virtualization-framework machine identifier means nothing to QEMU" });
    expect(plan.notImported.join("\n")).toContain("Data/efi_vars.fd is an Apple Virtualization variable store, which QEMU cannot read");
  });

  test("EfiVariableStoragePath names the store", () => {
    const spec = apple({ efiVarsPath: "vars.bin" });
    expect(referencedFiles(configPlist(spec)).sort()).toEqual(["A.img", "vars.bin"]);
    const plan = planImport(input(spec, [facts("A.img", GIB), facts("vars.bin", 1)]));
    expect(plan.nvram).toMatchObject({ action: "copy", name: "vars.bin" });
  });

  test("a missing efi_vars.fd means a fresh store, with a warning", () => {
    const plan = planImport(input(apple(), [facts("A.img", GIB)]));
    expect(plan.nvram).toEqual({ action: "fresh", reason: "the bundle has no Data/efi_vars.fd" });
    expect(plan.warnings).toEqual([
      "the bundle has no EFI variable store (Data/efi_vars.fd): havm starts a fresh one (Home Assistant OS boots from its fallback boot entry)",
    ]);
  });

  test("no machineIdentifier in the plist: none written, reported", () => {
    const plan = planImport(input(apple({ machineIdentifier: null }), [facts("A.img", GIB)]));
    expect(plan.machineIdentifier).toEqual({ action: "none", reason: "config.plist has no GenericPlatform.machineIdentifier; havm creates a new one" });
  });

  test("CPUCount 0 (UTM's default) becomes havm's default of 4", () => {
    expect(planImport(input(apple({ cpuCount: 0 }), [facts("A.img", GIB)])).config.cpuCount).toBe(4);
  });

  test("two writable disks: the largest by logical size is imported, the other named in a warning", () => {
    const spec = apple({ drives: [{ name: "small.img" }, { name: "big.img" }, { name: "ro.img", readOnly: true }] });
    const plan = planImport(input(spec, [facts("small.img", 8 * GIB), facts("big.img", 32 * GIB), facts("ro.img", 64 * GIB)]));
    expect(plan.disk.name).toBe("big.img");
    expect(plan.warnings).toContain(
      `Data/small.img (8 GiB) is another writable disk of this VM; havm uses one disk, so it is not imported: copy it yourself if it holds data you need (${B}/Data/small.img)`,
    );
    expect(plan.notImported).toContain("read-only drive Data/ro.img");
  });

  test("bridged network: bridge + its interface; without one, a warning", () => {
    const bridged = planImport(input(apple({ network: [{ Mode: "Bridged", MacAddress: "02:00:00:00:00:01", BridgeInterface: "en0" }] }), [facts("A.img", GIB)]));
    expect(bridged.config.network).toEqual({ type: "bridge", interface: "en0" });
    expect(bridged.config.mac).toBe("02:00:00:00:00:01");
    const noIface = planImport(input(apple({ network: [{ Mode: "Bridged", MacAddress: "02:00:00:00:00:01" }] }), [facts("A.img", GIB), EFI]));
    expect(noIface.config.network).toEqual({ type: "bridge" });
    expect(noIface.warnings).toEqual(["UTM bridges this VM without a recorded host interface; set network.interface in config.yml (e.g. en0)"]);
  });

  test("a multicast MAC is not imported; extra adapters are reported", () => {
    const plan = planImport(
      input(apple({ network: [{ Mode: "Shared", MacAddress: "03:00:00:00:00:01" }, { Mode: "Shared", MacAddress: "02:00:00:00:00:02" }] }), [facts("A.img", GIB), EFI]),
    );
    expect(plan.config.mac).toBeUndefined();
    expect(plan.warnings).toEqual(['MAC address "03:00:00:00:00:01" in config.plist is not a unicast MAC; havm keeps its own']);
    expect(plan.notImported).toContain("1 more network adapter (havm gives the VM one)");
  });

  test("disk size: rounded up to a MiB; below 64 MiB not taken", () => {
    expect(planImport(input(apple(), [facts("A.img", 8 * GIB + 1), EFI])).config.diskSize).toBe(8 * GIB + MIB);
    expect(planImport(input(apple(), [facts("A.img", 32 * MIB), EFI])).config.diskSize).toBeUndefined();
  });

  test("memory below 512 MiB is not taken", () => {
    const plan = planImport(input(apple({ memoryMiB: 256 }), [facts("A.img", GIB), EFI]));
    expect(plan.config.memorySize).toBeUndefined();
    expect(plan.warnings).toEqual(["MemorySize 256 MiB in config.plist is below havm's minimum of 512 MiB; keeping havm's memory setting"]);
  });

  test("an ASIF disk is refused with the conversion command", () => {
    const e = refusal(() => planImport(input(apple(), [facts("A.img", 32 * GIB, "asif")])));
    expect(e.exitCode).toBe(2);
    expect(e.message).toBe(`${B}/Data/A.img is an ASIF image (Apple's sparse disk format); havm needs a raw disk image`);
    expect(e.hint).toContain(`diskutil image convert --format RAW ${B}/Data/A.img ${B}/Data/A-raw.img`);
  });

  test("a macOS guest is refused", () => {
    const plist = configPlist(apple());
    const macGuest = { ...plist, System: { ...(plist.System as Record<string, PlistValue>), MacPlatform: { HardwareModel: new Uint8Array(4) } } };
    const e = refusal(() => planImport(input(macGuest, [facts("A.img", GIB)])));
    expect(e.message).toBe(`${B}/config.plist describes a macOS VM; havm runs Home Assistant OS (a Linux VM)`);
  });

  test("an architecture other than the host's is warned about", () => {
    const plan = planImport(input(apple({ architecture: "x86_64" }), [facts("A.img", GIB)]));
    expect(plan.warnings[0]).toStartWith("this VM is x86_64 but this host is aarch64");
  });
});

describe("QEMU backend", () => {
  test("qcow2 disk with qemu-img: converted; CD drive left behind; edk2 store fresh on macOS", () => {
    const plan = planImport(input(qemu(), [facts("installer.iso", GIB), facts("disk.qcow2", 32 * GIB, "qcow2"), facts("efi_vars.fd", 64 * MIB)], { canConvert: true }));
    expect(plan.disk).toMatchObject({ name: "disk.qcow2", format: "qcow2", method: "qemu-img" });
    expect(plan.notImported).toContain("CD/ISO drive Data/installer.iso");
    expect(plan.nvram).toEqual({ action: "fresh", reason: "Data/efi_vars.fd is a QEMU (edk2 pflash) variable store, which Apple's Virtualization framework cannot read" });
    expect(plan.machineIdentifier.action).toBe("none");
    expect(plan.notImported).toContain("UTM-only settings: QEMU tweaks (machine properties, extra arguments)");
  });

  test("on Linux the edk2 store is reused, with a note on firmware size", () => {
    const plan = planImport(input(qemu(), [facts("disk.qcow2", 32 * GIB, "qcow2"), facts("efi_vars.fd", 64 * MIB)], { canConvert: true, host: LINUX_HOST }));
    expect(plan.nvram).toMatchObject({ action: "copy", name: "efi_vars.fd" });
    expect(plan.warnings).toEqual([
      "reusing UTM's edk2 variable store Data/efi_vars.fd: if QEMU refuses it (its size must match this host's UEFI firmware), delete vm/NVRAM and havm starts a fresh one",
    ]);
  });

  test("qcow2 without qemu-img is refused with the qemu-img command", () => {
    const e = refusal(() => planImport(input(qemu(), [facts("disk.qcow2", 32 * GIB, "qcow2")])));
    expect(e.exitCode).toBe(2);
    expect(e.message).toBe(`${B}/Data/disk.qcow2 is a qcow2 image; havm needs a raw disk image and qemu-img (which converts it) is not installed`);
    expect(e.hint).toBe(
      `Install qemu-img (macOS: brew install qemu; Debian/Ubuntu: apt install qemu-utils) and run this again, or convert it yourself and replace the file: qemu-img convert -p -f qcow2 -O raw ${B}/Data/disk.qcow2 ${B}/Data/disk.img`,
    );
  });

  test("network modes: Emulated -> nat, Host -> nat with a warning, port forwards reported", () => {
    const emulated = planImport(input(qemu({ network: [{ Mode: "Emulated", MacAddress: "02:00:00:00:00:09", PortForward: [{}, {}] }] }), [facts("disk.qcow2", GIB, "raw")]));
    expect(emulated.config.network).toEqual({ type: "nat" });
    expect(emulated.notImported).toContain("2 UTM port forwards (havm has no port forwarding setting)");
    const host = planImport(input(qemu({ network: [{ Mode: "Host", MacAddress: "02:00:00:00:00:09" }] }), [facts("disk.qcow2", GIB, "raw")]));
    expect(host.warnings).toContain("UTM's host-only network has no havm equivalent; the VM gets NAT networking");
  });

  test("a raw disk under a .qcow2 name is copied as raw (format comes from content)", () => {
    const plan = planImport(input(qemu(), [facts("disk.qcow2", 8 * GIB, "raw")]));
    expect(plan.disk).toMatchObject({ format: "raw", method: "copy" });
  });
});

describe("refusals", () => {
  test("no writable disk", () => {
    const e = refusal(() => planImport(input(qemu({ drives: [{ name: "installer.iso", imageType: "CD" }] }), [facts("installer.iso", GIB)])));
    expect(e.exitCode).toBe(2);
    expect(e.message).toBe(`${B} has no writable disk drive (config.plist lists CD/ISO drive installer.iso)`);
    expect(e.hint).toBe("Check that this is the Home Assistant VM's bundle; its disk is a writable drive in UTM's Drives settings.");
  });

  test("no drives at all", () => {
    const e = refusal(() => planImport(input(apple({ drives: [] }), [])));
    expect(e.message).toBe(`${B} has no writable disk drive (config.plist lists no drives)`);
  });

  test("the disk file is missing", () => {
    const e = refusal(() => planImport(input(apple(), [])));
    expect(e.message).toBe(`${B} has no disk file to import: Data/A.img is missing`);
    expect(e.hint).toStartWith("The bundle may be incomplete");
  });

  test("legacy configs: no Backend / ConfigurationVersion < 4", () => {
    const noBackend = { ...configPlist(apple()) } as Record<string, PlistValue>;
    delete noBackend.Backend;
    const v3 = { ...configPlist(apple()), ConfigurationVersion: 3 };
    for (const [plist, detail] of [
      [noBackend, "ConfigurationVersion 4, no Backend"],
      [v3, "ConfigurationVersion 3"],
      [configPlist(apple({ version: null })), "no ConfigurationVersion"],
    ] as const) {
      const e = refusal(() => planImport(input(plist, [facts("A.img", GIB)])));
      expect(e.exitCode).toBe(2);
      expect(e.message).toBe(`${B}/config.plist is a legacy UTM configuration (${detail}), written by UTM 3 or older`);
      expect(e.hint).toBe("Open the VM once in a current UTM (4 or newer): it upgrades the bundle. Then run havm import-utm again.");
    }
  });

  test("an unknown backend", () => {
    const e = refusal(() => planImport(input({ ...configPlist(apple()), Backend: "Hyper-V" }, [facts("A.img", GIB)])));
    expect(e.message).toBe(`${B}/config.plist has Backend "Hyper-V"; havm imports UTM VMs of the Apple or QEMU backend`);
  });
});
