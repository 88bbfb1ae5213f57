// Golden tests of VmSpec -> shim JSON (src/vm/vz/translate.ts). UPDATE_GOLDEN=1 rewrites the files;
// review the diff before committing it.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { VmSpec } from "../../src/vm/spec.ts";
import { VM_SPEC_VERSION } from "../../src/vm/spec.ts";
import { translateVzSpec, vzIgnoredFeatures, vzSpecJson, VZ_SPEC_VERSION } from "../../src/vm/vz/translate.ts";
import { HavmError } from "../../src/util/errors.ts";

const GOLDEN = join(import.meta.dir, "golden");
const GiB = 1024 ** 3;

function baseSpec(): VmSpec {
  const dir = "/Users/ha/Library/Application Support/havm/vm";
  return {
    version: VM_SPEC_VERSION,
    name: "havm",
    arch: "aarch64",
    cpus: 4,
    memoryBytes: 4 * GiB,
    efi: { varsPath: `${dir}/NVRAM`, create: false },
    machineIdentifier: { path: `${dir}/MachineIdentifier`, uuid: "0b5c2b2e-1a3f-4c1d-9e8f-0123456789ab", vzDataBase64: "YnBsaXN0MDDRAQJSRUNPEBAICw4AAAAAAAABAQAAAAAAAAADAAAAAAAAAAAAAAAAAAAAEQ==" },
    disks: [
      { id: "root", path: `${dir}/haos.img`, readOnly: false, caching: "cached", sync: "full", bus: "virtio" },
      { id: "config", path: `${dir}/config.img`, readOnly: true, caching: "cached", sync: "full", bus: "usb" },
    ],
    network: { mode: "nat", mac: "02:1A:2B:3C:4D:5E", forwards: [] },
    serialLogPath: `${dir}/serial.log`,
    entropy: true,
    balloon: true,
    usbController: true,
    watchdog: true,
  };
}

const CASES: Record<string, () => VmSpec> = {
  "nat-default": baseSpec,
  "first-boot-creates-nvram": () => ({ ...baseSpec(), efi: { ...baseSpec().efi, create: true } }),
  "bridge-en0": () => ({ ...baseSpec(), network: { mode: "bridge", interface: "en0", mac: "02:00:00:00:00:01", hostname: "ha", forwards: [] } }),
  "no-config-stick-odd-memory": () => ({
    ...baseSpec(),
    cpus: 2,
    memoryBytes: 3 * GiB + 12345, // rounded down to whole MiB
    disks: baseSpec().disks.slice(0, 1),
    usbController: false,
    balloon: false,
  }),
};

function golden(name: string, actual: string): void {
  const file = join(GOLDEN, `${name}.json`);
  if (process.env.UPDATE_GOLDEN === "1") writeFileSync(file, actual);
  expect(existsSync(file)).toBe(true); // a missing golden file fails; UPDATE_GOLDEN=1 creates it
  expect(actual).toBe(readFileSync(file, "utf8"));
}

describe("translateVzSpec golden files", () => {
  for (const [name, make] of Object.entries(CASES)) {
    test(name, () => {
      golden(name, JSON.stringify(translateVzSpec(make()), null, 2) + "\n");
    });
  }
});

describe("translateVzSpec rules", () => {
  test("version matches the shim's ABI version in shim/havm.h", () => {
    const header = readFileSync(join(import.meta.dir, "../../shim/havm.h"), "utf8");
    const m = /#define HAVM_VZ_ABI_VERSION (\d+)/.exec(header);
    expect(m).not.toBeNull();
    expect(Number(m![1])).toBe(VZ_SPEC_VERSION);
  });
  test("the JSON handed to the shim parses back to the translation and holds no forwards or watchdog", () => {
    const text = vzSpecJson(baseSpec());
    expect(JSON.parse(text)).toEqual(translateVzSpec(baseSpec()));
    expect(text).not.toContain("forwards");
    expect(text).not.toContain("watchdog");
    expect(text).not.toContain("\0");
  });
  test("memory is rounded down to whole MiB", () => {
    const out = translateVzSpec({ ...baseSpec(), memoryBytes: 2 * GiB + 1024 * 1024 - 1 });
    expect(out.memoryBytes).toBe(2 * GiB);
  });
  test("the MAC is lower-cased; the root disk keeps Cached + Full", () => {
    const out = translateVzSpec(baseSpec());
    expect(out.network.mac).toBe("02:1a:2b:3c:4d:5e");
    expect(out.disks[0]).toMatchObject({ bus: "virtio", caching: "cached", sync: "full", readOnly: false });
    expect(out.disks[1]).toMatchObject({ bus: "usb", readOnly: true });
  });
  test("a missing vz machine identifier is an error that names the file", () => {
    const spec = baseSpec();
    delete spec.machineIdentifier.vzDataBase64;
    expect(() => translateVzSpec(spec)).toThrow(HavmError);
    expect(() => translateVzSpec(spec)).toThrow(/MachineIdentifier/);
  });
  test("bridge without an interface, a bad MAC, bad cpus or memory are refused", () => {
    expect(() => translateVzSpec({ ...baseSpec(), network: { mode: "bridge", mac: "02:00:00:00:00:01", forwards: [] } })).toThrow(/interface/);
    expect(() => translateVzSpec({ ...baseSpec(), network: { mode: "nat", mac: "02:00:00:00:01", forwards: [] } })).toThrow(/MAC/);
    expect(() => translateVzSpec({ ...baseSpec(), cpus: 0 })).toThrow(/CPU/);
    expect(() => translateVzSpec({ ...baseSpec(), memoryBytes: 1000 })).toThrow(/memory/);
  });
  test("ignored features are reported", () => {
    const withForward = { ...baseSpec(), network: { ...baseSpec().network, forwards: [{ guestPort: 8123, hostPort: 1 }] } };
    expect(vzIgnoredFeatures(withForward).map((s) => s.split(":")[0])).toEqual(["watchdog", "port forwards"]);
    expect(vzIgnoredFeatures({ ...baseSpec(), watchdog: false })).toEqual([]);
  });
});
