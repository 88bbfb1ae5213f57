// End-to-end: the QEMU backend boots the mini-HAOS test guest (UEFI, TCG) twice on one VM dir.
// Checks: NVRAM created from the template on the first start and the same file reused on the second
// (the guest's own NVRAM probe counts the boots it finds there), the stable MAC in argv, host forwards on
// 127.0.0.1 reaching the guest's HTTP port, the CONFIG stick imported over USB, requestStop (ACPI power
// button), stopped() resolving, QEMU's pid exposed. (forceStop is covered on a firmware-only VM in backend.test.ts.)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { vmPaths, type VmPaths } from "../../../src/config/paths.ts";
import type { BackendEvent } from "../../../src/vm/backend.ts";
import type { VmSpec } from "../../../src/vm/spec.ts";
import { QemuBackend, QemuVm, qemuPid } from "../../../src/vm/qemu/qemu.ts";
import { FORWARDED_PORTS } from "../../../src/vm/qemu/ports.ts";
import { copyDisk, ensureGuestImage, makeConfigDisk, readGuestRecord, setGuestKnobs } from "../../guest/guest.ts";

const OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const skipReason = !Bun.which("qemu-system-x86_64")
  ? "qemu-system-x86_64 missing (Debian: qemu-system-x86)"
  : !existsSync(OVMF_VARS)
    ? "OVMF missing (Debian: ovmf)"
    : process.arch !== "x64"
      ? "boot test runs on amd64 hosts"
      : undefined;
if (skipReason) console.warn(`skipping QEMU boot test: ${skipReason}`);

const MAC = "02:5a:11:22:33:44";

function specFor(paths: VmPaths, create: boolean): VmSpec {
  return {
    version: 1,
    name: "havm-test",
    arch: "x86_64",
    cpus: 1,
    memoryBytes: 512 * 1024 * 1024,
    efi: { varsPath: paths.nvram, create },
    machineIdentifier: { path: paths.machineIdentifier, uuid: "0b7e2d3c-5a61-4f0e-8d2b-6c9a1e4f7b20" },
    disks: [
      { id: "root", path: paths.disk, readOnly: false, caching: "cached", sync: "full", bus: "virtio" },
      { id: "config", path: paths.configDisk, readOnly: true, caching: "cached", sync: "full", bus: "usb" },
    ],
    network: { mode: "nat", mac: MAC, hostname: "homeassistant", forwards: FORWARDED_PORTS.map((guestPort) => ({ guestPort, hostPort: 0 })) },
    serialLogPath: paths.serialLog,
    entropy: true,
    balloon: true,
    usbController: true,
    watchdog: true,
  };
}

async function httpStatus(port: number): Promise<number | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return undefined;
  }
}

async function waitHttp(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if ((await httpStatus(port)) === 200) return;
    await Bun.sleep(500);
  }
  throw new Error(`guest HTTP on 127.0.0.1:${port} not ready within ${timeoutMs} ms`);
}

describe.skipIf(skipReason !== undefined)("QEMU backend boots a UEFI guest", () => {
  let dir: string;
  let paths: VmPaths;
  let backend: QemuBackend;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "havm-qemu-boot-"));
    paths = vmPaths(join(dir, "vm"));
    const img = await ensureGuestImage();
    await Bun.$`mkdir -p ${paths.dir}`;
    await copyDisk(img.diskPath, paths.disk);
    // Honour the ACPI power button so requestStop (system_powerdown) can be observed.
    await setGuestKnobs(paths.disk, { ignoreAcpi: false });
    await makeConfigDisk(paths.configDisk, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBootTestKeyOnlyForHavmTests havm-test\n");
    backend = new QemuBackend({ qemu: { accel: "tcg" }, paths, cacheDir: join(dir, "cache") });
  }, 300_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("probe reports QEMU, firmware and the accelerator", async () => {
    const p = await backend.probe();
    expect(p.backend).toBe("qemu");
    expect(p.usable).toBe(true);
    expect(p.details.join("\n")).toMatch(/qemu-system-x86_64 \d+\.\d+/);
    expect(p.details.join("\n")).toContain("OVMF");
  });

  test("first boot: NVRAM from template, forwards, CONFIG stick, requestStop", async () => {
    expect(existsSync(paths.nvram)).toBe(false);
    const vm = (await backend.create(specFor(paths, true))) as QemuVm;
    const events: BackendEvent[] = [];
    vm.onEvent((e) => events.push(e));
    await vm.start();
    try {
      expect(vm.state()).toBe("running");
      const pid = qemuPid(vm);
      expect(pid).toBeGreaterThan(0);
      expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).toContain("qemu-system-x86_64");
      expect(Number(readFileSync(vm.pidFile, "utf8").trim())).toBe(pid!);
      expect(vm.argv).toContain(`virtio-net-pci,netdev=net0,id=nic0,mac=${MAC}`);
      expect(statSync(paths.nvram).size).toBe(statSync(OVMF_VARS).size);

      const ep = await vm.endpoint(8123);
      expect(ep?.host).toBe("127.0.0.1");
      const ports = FORWARDED_PORTS.map((g) => vm.portForwards.find((f) => f.guestPort === g)?.hostPort);
      expect(new Set(ports).size).toBe(FORWARDED_PORTS.length);
      expect(await vm.endpoint(9999)).toBeNull();
      await waitHttp(ep!.port, 180_000);

      const mem = await vm.memoryStats();
      expect(mem.targetBytes).toBe(512 * 1024 * 1024);

      expect(await vm.requestStop()).toBe(true);
      await Promise.race([vm.stopped(), Bun.sleep(120_000).then(() => Promise.reject(new Error("guest did not power off")))]);
    } finally {
      await vm.forceStop();
      await vm.close();
    }
    expect(vm.state()).toBe("stopped");
    expect(qemuPid(vm)).toBeUndefined();
    expect(events).toContainEqual({ type: "guest-stopped" });
    expect(events).toContainEqual({ type: "state", state: "running" });
    expect(events.at(-1)).toEqual({ type: "state", state: "stopped" });
    expect(events.some((e) => e.type === "stopped-with-error")).toBe(false);

    const rec = await readGuestRecord(paths.disk);
    expect(rec.bootCount).toBe(1);
    expect(rec.clean).toBe(true);
    expect(rec.shutdownReason).toBe("acpi");
    expect(rec.configImport).toBe("imported");
    expect(rec.nvramPreviousBoots).toBe(0);
    // The guest wrote an EFI variable: the store is no longer the pristine template.
    expect(Buffer.compare(readFileSync(paths.nvram), readFileSync(OVMF_VARS))).not.toBe(0);
  }, 400_000);

  test("second boot reuses the same NVRAM file and the same MAC", async () => {
    const ino = statSync(paths.nvram).ino;
    const vm = (await backend.create(specFor(paths, false))) as QemuVm;
    await vm.start();
    try {
      expect(statSync(paths.nvram).ino).toBe(ino);
      expect(vm.argv).toContain(`virtio-net-pci,netdev=net0,id=nic0,mac=${MAC}`);
      const ep = await vm.endpoint(8123);
      await waitHttp(ep!.port, 180_000);
      expect(await vm.requestStop()).toBe(true);
      await Promise.race([vm.stopped(), Bun.sleep(120_000).then(() => Promise.reject(new Error("guest did not power off")))]);
    } finally {
      await vm.forceStop();
      await vm.close();
    }
    expect(statSync(paths.nvram).ino).toBe(ino);
    const rec = await readGuestRecord(paths.disk);
    expect(rec.bootCount).toBe(2);
    // The guest found the variable it created on boot 1 in the store it booted with.
    expect(rec.nvramPreviousBoots).toBe(1);
  }, 400_000);
});
