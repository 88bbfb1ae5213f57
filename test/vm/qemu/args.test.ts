// Golden argv for representative specs. Regenerate with UPDATE_GOLDEN=1 after an intended change, and
// review the diff: every line is something the guest sees.
import { describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { VmSpec } from "../../../src/vm/spec.ts";
import { cacheMode, escapeOptionValue, launchArgv, qemuArgs, type QemuHostFacts } from "../../../src/vm/qemu/args.ts";
import { HavmError } from "../../../src/util/errors.ts";
import { QmpClient } from "../../../src/vm/qemu/qmp.ts";

const GOLDEN = join(import.meta.dir, "golden");
const VM = "/home/u/.local/share/havm/vm";

function baseSpec(over: Partial<VmSpec> = {}): VmSpec {
  return {
    version: 1,
    name: "havm",
    arch: "x86_64",
    cpus: 2,
    memoryBytes: 4096 * 1024 * 1024,
    efi: { varsPath: `${VM}/NVRAM`, create: false },
    machineIdentifier: { path: `${VM}/MachineIdentifier`, uuid: "6f1c2a4e-3b5d-4c7e-9a8b-0d1e2f3a4b5c" },
    disks: [
      { id: "root", path: `${VM}/haos.img`, readOnly: false, caching: "cached", sync: "full", bus: "virtio" },
      { id: "config", path: `${VM}/config.img`, readOnly: true, caching: "cached", sync: "full", bus: "usb" },
    ],
    network: {
      mode: "nat",
      mac: "02:5a:01:23:45:67",
      hostname: "homeassistant",
      forwards: [
        { guestPort: 8123, hostPort: 40001 },
        { guestPort: 80, hostPort: 40002 },
        { guestPort: 22222, hostPort: 40003 },
        { guestPort: 22, hostPort: 40004 },
        { guestPort: 4357, hostPort: 40005 },
      ],
    },
    serialLogPath: `${VM}/serial.log`,
    entropy: true,
    balloon: true,
    usbController: true,
    watchdog: true,
    ...over,
  };
}

const host: QemuHostFacts = {
  firmwareCode: "/usr/share/OVMF/OVMF_CODE_4M.fd",
  accel: "tcg",
  qmpSocket: `${VM}/qmp.sock`,
  guestAgentSocket: `${VM}/qga.sock`,
  pidFile: `${VM}/qemu.pid`,
  startPaused: true,
};

function golden(name: string, argv: string[]): void {
  const file = join(GOLDEN, `${name}.argv`);
  const text = argv.join("\n") + "\n";
  if (process.env.UPDATE_GOLDEN) writeFileSync(file, text);
  if (!existsSync(file)) throw new Error(`missing golden ${file}: run with UPDATE_GOLDEN=1 and review it`);
  expect(text).toBe(readFileSync(file, "utf8"));
}

describe("qemu argv goldens", () => {
  test("x86_64 NAT with the CONFIG stick (TCG)", () => {
    golden("x86_64-nat-config", qemuArgs(baseSpec(), host));
  });

  test("x86_64 NAT without a CONFIG stick, KVM, no agent", () => {
    const spec = baseSpec({ disks: [baseSpec().disks[0]!] });
    golden("x86_64-nat-noconfig-kvm", qemuArgs(spec, { ...host, accel: "kvm", guestAgentSocket: undefined, startPaused: false }));
  });

  test("x86_64 bridge through the helper", () => {
    const spec = baseSpec({ network: { mode: "bridge", interface: "br0", mac: "02:5a:01:23:45:67", forwards: [] } });
    golden("x86_64-bridge", qemuArgs(spec, { ...host, bridgeHelper: "/usr/lib/qemu/qemu-bridge-helper" }));
  });

  test("aarch64 virt with AAVMF", () => {
    const spec = baseSpec({ arch: "aarch64", cpus: 4, memoryBytes: 2048 * 1024 * 1024 });
    golden("aarch64-nat-config", qemuArgs(spec, { ...host, firmwareCode: "/usr/share/AAVMF/AAVMF_CODE.fd", accel: "kvm" }));
  });

  test("minimal: no balloon, rng, watchdog, USB; paths with commas are escaped", () => {
    const spec = baseSpec({
      name: "ha,test",
      disks: [{ id: "root", path: "/tmp/a,b/haos.img", readOnly: false, caching: "uncached", sync: "fsync", bus: "virtio" }],
      entropy: false,
      balloon: false,
      usbController: false,
      watchdog: false,
      network: { mode: "nat", mac: "02:00:00:00:00:01", forwards: [] },
    });
    golden("x86_64-minimal", qemuArgs(spec, host));
  });
});

describe("qemu argv properties", () => {
  const argv = qemuArgs(baseSpec(), host);
  const after = (flag: string) => argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));

  test("never cache=unsafe; root disk is virtio-blk and bootable", () => {
    expect(argv.join(" ")).not.toContain("unsafe");
    expect(after("-device")).toContain("virtio-blk-pci,drive=root,id=root-blk,bootindex=0");
    expect(cacheMode({ id: "x", path: "/x", readOnly: false, caching: "cached", sync: "full", bus: "virtio" })).toBe("writeback");
  });

  test("firmware code read-only, NVRAM writable pflash", () => {
    const drives = after("-drive");
    expect(drives[0]).toBe("if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd");
    expect(drives[1]).toBe(`if=pflash,format=raw,unit=1,file=${VM}/NVRAM`);
  });

  test("the stable MAC, forwards only on 127.0.0.1", () => {
    expect(after("-device").some((d) => d.includes("mac=02:5a:01:23:45:67"))).toBe(true);
    const netdev = after("-netdev")[0]!;
    const fwds = netdev.split(",").filter((p) => p.startsWith("hostfwd="));
    expect(fwds).toHaveLength(5);
    for (const f of fwds) expect(f).toMatch(/^hostfwd=tcp:127\.0\.0\.1:\d+-:\d+$/);
  });

  test("CONFIG stick: read-only usb-storage on the xhci bus, removable", () => {
    expect(after("-drive")).toContain(`if=none,id=config,format=raw,file=${VM}/config.img,cache=writeback,readonly=on`);
    expect(after("-device")).toContain("usb-storage,bus=xhci.0,drive=config,id=config-usb,removable=on");
    const xhci = argv.indexOf("qemu-xhci,id=xhci");
    const stick = argv.findIndex((a) => a.startsWith("usb-storage"));
    expect(xhci).toBeGreaterThan(0);
    expect(stick).toBeGreaterThan(xhci);
  });

  test("escaping doubles commas", () => {
    expect(escapeOptionValue("a,b,,c")).toBe("a,,b,,,,c");
  });

  test("errors: unpicked port, bridge without interface, USB disk without controller", () => {
    const unpicked = baseSpec({ network: { mode: "nat", mac: "02:00:00:00:00:01", forwards: [{ guestPort: 8123, hostPort: 0 }] } });
    expect(() => qemuArgs(unpicked, host)).toThrow(HavmError);
    const bridge = baseSpec({ network: { mode: "bridge", mac: "02:00:00:00:00:01", forwards: [] } });
    expect(() => qemuArgs(bridge, host)).toThrow(/network.interface/);
    expect(() => qemuArgs(baseSpec({ usbController: false }), host)).toThrow(/USB controller/);
  });

  test("launchArgv wraps in setpriv --pdeathsig KILL when available", () => {
    expect(launchArgv("/usr/bin/qemu", ["-S"], "/usr/bin/setpriv")).toEqual(["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "/usr/bin/qemu", "-S"]);
    expect(launchArgv("/usr/bin/qemu", ["-S"])).toEqual(["/usr/bin/qemu", "-S"]);
  });
});

// The goldens must also be argv that the real QEMU accepts: run them with -S (no guest code runs) and
// check the monitor answers. aarch64 needs qemu-system-aarch64 (Debian: qemu-system-arm); bridge needs a
// bridge, so those two are only compared as text.
const QEMU_X86 = Bun.which("qemu-system-x86_64");
describe.skipIf(!QEMU_X86 || !existsSync("/usr/share/OVMF/OVMF_CODE_4M.fd"))("real QEMU accepts the x86_64 goldens", () => {
  for (const name of ["x86_64-nat-config", "x86_64-minimal"]) {
    test(name, async () => {
      const tmp = mkdtempSync(join(tmpdir(), "havm-golden-"));
      try {
        mkdirSync(join(tmp, "a,b"));
        for (const f of ["haos.img", "config.img", "a,b/haos.img"]) writeFileSync(join(tmp, f), new Uint8Array(1024 * 1024));
        copyFileSync("/usr/share/OVMF/OVMF_VARS_4M.fd", join(tmp, "NVRAM"));
        const argv = readFileSync(join(GOLDEN, `${name}.argv`), "utf8")
          .trimEnd()
          .split("\n")
          .map((a) => a.replaceAll(VM, tmp).replaceAll("/tmp/a,,b", `${tmp}/a,,b`))
          .map((a) => a.replace(/hostfwd=tcp:127\.0\.0\.1:\d+-/g, "hostfwd=tcp:127.0.0.1:0-"));
        const proc = Bun.spawn([QEMU_X86!, ...argv], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
        let qmp: QmpClient | undefined;
        for (let i = 0; i < 100 && !qmp && proc.exitCode === null; i++) {
          qmp = await QmpClient.connect(join(tmp, "qmp.sock"), { timeoutMs: 1000 }).catch(() => undefined);
          if (!qmp) await Bun.sleep(50);
        }
        if (!qmp) {
          proc.kill("SIGKILL");
          throw new Error(`QEMU refused the golden argv: ${await new Response(proc.stderr as ReadableStream).text()}`);
        }
        const st = await qmp.execute<{ status: string }>("query-status");
        expect(st.status).toBe("prelaunch");
        await qmp.execute("quit").catch(() => undefined);
        expect(await proc.exited).toBe(0);
        qmp.close();
      } finally {
        rmSync(tmp, { recursive: true, force: true });
      }
    }, 30_000);
  }
});
