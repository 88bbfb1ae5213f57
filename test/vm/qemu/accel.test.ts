// The KVM probe on the real host. On this project's machines /dev/kvm exists but cannot run firmware
// (nested kvm_pvm), so the probe must say "unusable"; on a host with working KVM it says "usable".
// Either way the verdict must agree with what QEMU does, which the test checks independently.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chooseAccel, clearKvmProbeCache, devKvmAccessible, probeKvm } from "../../../src/vm/qemu/accel.ts";
import { findFirmware } from "../../../src/vm/qemu/firmware.ts";
import { HavmError } from "../../../src/util/errors.ts";

const QEMU = Bun.which("qemu-system-x86_64");
const haveOvmf = existsSync("/usr/share/OVMF/OVMF_CODE_4M.fd");

describe("chooseAccel", () => {
  test("tcg from config needs no probe", async () => {
    const r = await chooseAccel("tcg", () => Promise.reject(new Error("must not probe")));
    expect(r.accel).toBe("tcg");
    expect(r.warning).toBeUndefined();
  });
  test("auto falls back to TCG with a warning when the probe says no", async () => {
    const r = await chooseAccel("auto", async () => ({ usable: false, reason: "/dev/kvm: missing" }));
    expect(r.accel).toBe("tcg");
    expect(r.warning).toContain("TCG");
  });
  test("auto uses KVM when the probe says yes", async () => {
    expect((await chooseAccel("auto", async () => ({ usable: true, reason: "ok" }))).accel).toBe("kvm");
  });
  test("kvm from config without /dev/kvm is an error with a hint", async () => {
    const e = await chooseAccel("kvm", async () => ({ usable: true, reason: "" }), "/nonexistent/kvm").catch((x) => x);
    expect(e).toBeInstanceOf(HavmError);
    expect((e as HavmError).hint).toContain("qemu.accel");
  });
  test("a missing /dev/kvm is reported as such", () => {
    expect(devKvmAccessible("/nonexistent/kvm")).toEqual({ usable: false, reason: "/nonexistent/kvm: missing" });
  });
});

describe.skipIf(!QEMU || !haveOvmf || process.arch !== "x64")("KVM probe on this host", () => {
  test("agrees with a direct QEMU run, and is cached on disk", async () => {
    const dir = mkdtempSync(join(tmpdir(), "havm-kvm-"));
    try {
      const fw = findFirmware("x86_64");
      const cacheFile = join(dir, "kvm-probe.json");
      clearKvmProbeCache();
      const t0 = performance.now();
      const v = await probeKvm({ binary: QEMU!, arch: "x86_64", firmwareCode: fw.code, varsTemplate: fw.varsTemplate, cacheFile });
      const first = performance.now() - t0;
      // Independent check: if /dev/kvm is accessible, does QEMU under KVM stay "running"?
      const expected = devKvmAccessible().usable ? await kvmRunsDirectly(fw.code, fw.varsTemplate, dir) : false;
      expect(v.usable).toBe(expected);
      if (devKvmAccessible().usable) {
        expect(JSON.parse(readFileSync(cacheFile, "utf8")).verdict.usable).toBe(expected);
        clearKvmProbeCache();
        const t1 = performance.now();
        const again = await probeKvm({ binary: QEMU!, arch: "x86_64", firmwareCode: fw.code, varsTemplate: fw.varsTemplate, cacheFile });
        expect(again).toEqual(v);
        // From the disk cache: no QEMU started (a probe run costs a second or more).
        expect(performance.now() - t1).toBeLessThan(first);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

/** QEMU's own answer, without QMP: run the firmware under KVM for 2.5 s; a KVM failure prints
 *  "KVM internal error" on stderr or makes QEMU exit. */
async function kvmRunsDirectly(code: string, varsTemplate: string, dir: string): Promise<boolean> {
  const vars = join(dir, "vars-direct.fd");
  await Bun.write(vars, Bun.file(varsTemplate));
  const p = Bun.spawn(
    [QEMU!, "-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "256M", "-nodefaults", "-display", "none", "-serial", "none",
      "-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${code}`, "-drive", `if=pflash,format=raw,unit=1,file=${vars}`],
    { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
  );
  const stderr: string[] = [];
  const reader = (async () => {
    for await (const c of p.stderr as ReadableStream<Uint8Array>) stderr.push(new TextDecoder().decode(c));
  })();
  await Promise.race([p.exited, Bun.sleep(2500)]);
  const exited = p.exitCode !== null;
  if (!exited) p.kill("SIGKILL");
  await p.exited;
  await reader;
  return !exited && !/internal error/i.test(stderr.join(""));
}
