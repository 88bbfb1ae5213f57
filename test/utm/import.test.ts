// The import end to end through importUtm(): real bundles in temp dirs, real copies, real qemu-img.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolvePaths, type HavmPaths } from "../../src/config/paths.ts";
import { HavmError } from "../../src/util/errors.ts";
import { importUtm, type ImportUtmOptions } from "../../src/utm/import.ts";
import { isVmRunning } from "../../src/supervise/lock.ts";
import { allocated, MACHINE_ID, MIB, sparseRaw, tempDir, writeBundle, writeEfiVars, type BundleSpec } from "./fixtures.ts";

const QEMU_IMG = Bun.which("qemu-img");
const MAC = { platform: "darwin" as const, arch: "arm64" };
const LINUX = { platform: "linux" as const, arch: "arm64" };
const DATA_AT = [0, 5 * MIB, 40 * MIB + 4096, 63 * MIB];

interface Setup {
  home: string;
  paths: HavmPaths;
  bundle: string;
  disk: string;
  efi?: Uint8Array;
}

function setup(spec: BundleSpec, opts: { diskSize?: number; efi?: boolean } = {}): Setup {
  const home = tempDir("havm-utm-home-");
  const paths = resolvePaths({ HOME: home }, "linux");
  const bundle = writeBundle(home, spec);
  const name = spec.drives.find((d) => !d.readOnly && (d.imageType ?? "Disk") === "Disk")!.name!;
  const disk = join(bundle, "Data", name);
  sparseRaw(disk, opts.diskSize ?? 64 * MIB, DATA_AT);
  const efi = opts.efi === false ? undefined : writeEfiVars(join(bundle, "Data", "efi_vars.fd"));
  return { home, paths, bundle, disk, efi };
}

const run = (s: Setup, over: Partial<ImportUtmOptions> = {}) =>
  importUtm({ bundle: s.bundle, paths: s.paths, configFile: s.paths.configFile, host: MAC, qemuImg: null, isRunning: () => false, onProgress: () => {}, ...over });

async function refusal(p: Promise<unknown>): Promise<HavmError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(HavmError);
    return e as HavmError;
  }
  throw new Error("expected a refusal");
}

const sameBytes = (a: string, b: string) => Buffer.compare(readFileSync(a), readFileSync(b)) === 0;
const tempsIn = (dir: string) => readdirSync(dir).filter((n) => n.endsWith(".tmp") || n.includes(".tmp."));
const apple: BundleSpec = { backend: "Apple", drives: [{ name: "7F3A.img" }], network: [{ Mode: "Bridged", MacAddress: "02:11:22:33:44:55", BridgeInterface: "en0" }] };

describe("Apple backend bundle, imported for the vz backend", () => {
  test("disk, NVRAM and MachineIdentifier byte for byte; the copy stays sparse; config merged keeping the user's lines", async () => {
    const s = setup(apple);
    mkdirSync(s.paths.configDir, { recursive: true });
    writeFileSync(s.paths.configFile, "# mine\nha:\n  url: http://ha.lan:8123 # keep\n");
    const before = readFileSync(join(s.bundle, "config.plist"));
    const progress: number[] = [];
    const r = await run(s, { onProgress: (done) => progress.push(done) });

    expect(sameBytes(s.disk, s.paths.vm.disk)).toBe(true);
    const src = allocated(s.disk);
    const dst = allocated(s.paths.vm.disk);
    expect(src).toBeLessThan(2 * MIB); // 4 x 64 KiB of data in a 64 MiB file
    expect(Math.abs(dst - src)).toBeLessThanOrEqual(256 * 1024);
    expect(new Uint8Array(readFileSync(s.paths.vm.nvram))).toEqual(new Uint8Array(s.efi!));
    expect(new Uint8Array(readFileSync(s.paths.vm.machineIdentifier))).toEqual(MACHINE_ID);
    expect(readFileSync(s.paths.configFile, "utf8")).toBe(
      '# mine\nha:\n  url: http://ha.lan:8123 # keep\nvm:\n  cpu_count: 2\n  memory_size: 4096 MiB\n  disk_size: 64 MiB\nnetwork:\n  type: bridge\n  interface: en0\n  mac: "02:11:22:33:44:55"\n',
    );
    expect(progress.at(-1)).toBe(64 * MIB);
    expect(r.diskMethod).toBe("sparse");
    expect(r.imported).toEqual([
      `disk: Data/7F3A.img (raw, 64 MiB) -> ${s.paths.vm.disk} (sparse copy)`,
      `EFI variables: Data/efi_vars.fd -> ${s.paths.vm.nvram}`,
      `machine identifier -> ${s.paths.vm.machineIdentifier}`,
      `settings -> ${s.paths.configFile}: vm.cpu_count=2, vm.memory_size=4096 MiB, vm.disk_size=64 MiB, network.type=bridge, network.interface=en0, network.mac=02:11:22:33:44:55`,
    ]);
    expect(r.warnings).toEqual([]);
    // The bundle is only read; no temp files stay behind.
    expect(readFileSync(join(s.bundle, "config.plist"))).toEqual(before);
    expect(existsSync(s.disk)).toBe(true);
    expect(tempsIn(s.paths.vm.dir)).toEqual([]);
  });

  test("CPUCount 0 and a missing efi_vars.fd: havm's default CPU count, a fresh NVRAM, a warning", async () => {
    const s = setup({ ...apple, cpuCount: 0 }, { efi: false });
    const r = await run(s);
    expect(existsSync(s.paths.vm.nvram)).toBe(false);
    expect(r.warnings).toEqual([
      "the bundle has no EFI variable store (Data/efi_vars.fd): havm starts a fresh one (Home Assistant OS boots from its fallback boot entry)",
    ]);
    expect(r.imported.join("\n")).not.toContain("EFI variables");
    expect(readFileSync(s.paths.configFile, "utf8")).toStartWith("vm:\n  cpu_count: 4\n");
  });

  test("two writable disks: the larger is imported, the other is named in a warning", async () => {
    const s = setup({ backend: "Apple", drives: [{ name: "small.img" }, { name: "big.img" }] });
    sparseRaw(join(s.bundle, "Data", "big.img"), 128 * MIB, [MIB, 100 * MIB], 9);
    const r = await run(s);
    expect(sameBytes(join(s.bundle, "Data", "big.img"), s.paths.vm.disk)).toBe(true);
    expect(r.warnings).toEqual([
      `Data/small.img (64 MiB) is another writable disk of this VM; havm uses one disk, so it is not imported: copy it yourself if it holds data you need (${s.disk})`,
    ]);
  });
});

describe("existing data, --force, a running VM", () => {
  test("refuses to replace an existing VM without --force, and changes nothing", async () => {
    const s = setup(apple);
    mkdirSync(s.paths.vm.dir, { recursive: true });
    writeFileSync(s.paths.vm.disk, "old disk");
    writeFileSync(s.paths.vm.nvram, "old nvram");
    const e = await refusal(run(s));
    expect(e.exitCode).toBe(2);
    expect(e.message).toBe(`havm already has a VM in ${s.paths.vm.dir} (haos.img, NVRAM); importing would replace it`);
    expect(e.hint).toStartWith("Add --force to replace it");
    expect(readFileSync(s.paths.vm.disk, "utf8")).toBe("old disk");
    expect(existsSync(s.paths.configFile)).toBe(false);
  });

  test("--force replaces it; files a fresh import does not bring (NVRAM, identifier) are removed", async () => {
    const s = setup({ backend: "QEMU", drives: [{ name: "disk.qcow2" }] }); // raw content under a qcow2 name
    mkdirSync(s.paths.vm.dir, { recursive: true });
    for (const p of [s.paths.vm.disk, s.paths.vm.nvram, s.paths.vm.machineIdentifier]) writeFileSync(p, "old");
    const r = await run(s, { force: true }); // for macOS: the edk2 store cannot be used there
    expect(sameBytes(s.disk, s.paths.vm.disk)).toBe(true);
    expect(existsSync(s.paths.vm.nvram)).toBe(false);
    expect(existsSync(s.paths.vm.machineIdentifier)).toBe(false);
    expect(r.notImported).toContain(
      "EFI variables (Data/efi_vars.fd is a QEMU (edk2 pflash) variable store, which Apple's Virtualization framework cannot read); havm starts a fresh store and Home Assistant OS boots from its fallback boot entry",
    );
  });

  test("refuses while havm runs this VM (exit 3), by its pid file", async () => {
    const s = setup(apple);
    mkdirSync(s.paths.vm.dir, { recursive: true });
    writeFileSync(s.paths.vm.lock, JSON.stringify({ pid: process.pid }));
    expect(isVmRunning(s.paths.vm.lock)).toBe(true);
    const e = await refusal(run(s, { isRunning: undefined }));
    expect(e.exitCode).toBe(3);
    expect(e.message).toBe(`havm is running this VM (${s.paths.vm.dir}); importing now would replace its disk under it`);
    expect(e.hint).toBe("Stop it first (havm stop), then run havm import-utm again.");
    expect(existsSync(s.paths.vm.disk)).toBe(false);
    // A stale pid file (its process is gone) does not block.
    const dead = Bun.spawnSync(["true"]).pid;
    writeFileSync(s.paths.vm.lock, JSON.stringify({ pid: dead }));
    expect(isVmRunning(s.paths.vm.lock)).toBe(false);
    await run(s, { isRunning: undefined });
    expect(sameBytes(s.disk, s.paths.vm.disk)).toBe(true);
  });
});

describe.skipIf(!QEMU_IMG)("qcow2 disks (needs qemu-img: Debian qemu-utils)", () => {
  function qcow2Bundle(): Setup & { raw: string } {
    const s = setup({ backend: "QEMU", drives: [{ name: "installer.iso", imageType: "CD", readOnly: true }, { name: "disk.qcow2" }] });
    const raw = join(s.home, "source.raw");
    sparseRaw(raw, 64 * MIB, DATA_AT, 5);
    const r = Bun.spawnSync([QEMU_IMG!, "convert", "-q", "-f", "raw", "-O", "qcow2", raw, s.disk]);
    expect(r.exitCode).toBe(0);
    return { ...s, raw };
  }

  test("converted to a sparse raw disk with qemu-img; on Linux the edk2 store is reused", async () => {
    const s = qcow2Bundle();
    const r = await run(s, { qemuImg: QEMU_IMG, host: LINUX });
    expect(r.diskMethod).toBe("qemu-img");
    expect(sameBytes(s.raw, s.paths.vm.disk)).toBe(true);
    expect(Math.abs(allocated(s.paths.vm.disk) - allocated(s.raw))).toBeLessThanOrEqual(256 * 1024);
    expect(new Uint8Array(readFileSync(s.paths.vm.nvram))).toEqual(new Uint8Array(s.efi!));
    expect(existsSync(s.paths.vm.machineIdentifier)).toBe(false);
    expect(r.notImported).toContain("CD/ISO drive Data/installer.iso");
    expect(r.imported[0]).toBe(`disk: Data/disk.qcow2 (qcow2, 64 MiB) -> ${s.paths.vm.disk} (converted to raw with qemu-img)`);
  });

  test("without qemu-img: refused with the command to run", async () => {
    const s = qcow2Bundle();
    const e = await refusal(run(s, { qemuImg: null }));
    expect(e.exitCode).toBe(2);
    expect(e.message).toBe(`${s.disk} is a qcow2 image; havm needs a raw disk image and qemu-img (which converts it) is not installed`);
    expect(e.hint).toContain(`qemu-img convert -p -f qcow2 -O raw '${s.disk}'`);
  });

  test("a failed conversion leaves the previous VM, config and bundle untouched and no temp files", async () => {
    const s = qcow2Bundle();
    // Keep the qcow2 magic and header, destroy the L1 table and refcounts: qemu-img fails mid-way.
    const bytes = readFileSync(s.disk);
    bytes.fill(0xff, 512, Math.min(bytes.length, 512 * 1024));
    writeFileSync(s.disk, bytes);
    mkdirSync(s.paths.vm.dir, { recursive: true });
    writeFileSync(s.paths.vm.disk, "old disk");
    writeFileSync(s.paths.vm.nvram, "old nvram");
    mkdirSync(s.paths.configDir, { recursive: true });
    writeFileSync(s.paths.configFile, "vm:\n  cpu_count: 6\n");
    const e = await refusal(run(s, { qemuImg: QEMU_IMG, host: LINUX, force: true }));
    expect(e.message).toStartWith(`qemu-img could not convert ${s.disk}: `);
    expect(readFileSync(s.paths.vm.disk, "utf8")).toBe("old disk");
    expect(readFileSync(s.paths.vm.nvram, "utf8")).toBe("old nvram");
    expect(readFileSync(s.paths.configFile, "utf8")).toBe("vm:\n  cpu_count: 6\n");
    expect(tempsIn(s.paths.vm.dir)).toEqual([]);
  });
});

test("temp files of a killed import are cleaned up by the next one", async () => {
  const s = setup(apple);
  mkdirSync(s.paths.vm.dir, { recursive: true });
  const dead = Bun.spawnSync(["true"]).pid;
  const stale = join(s.paths.vm.dir, `.haos.img.${dead}.0badc0de.tmp`);
  const nested = join(s.paths.vm.dir, `..haos.img.${dead}.0badc0de.tmp.${dead}.12345678.tmp`);
  writeFileSync(stale, "partial");
  writeFileSync(nested, "partial");
  await run(s);
  expect(existsSync(stale)).toBe(false);
  expect(existsSync(nested)).toBe(false);
});
