import { describe, expect, test } from "bun:test";
import { buildVmSpec, hostGuestArch } from "../../src/vm/build-spec.ts";
import { parseConfigText } from "../../src/config/load.ts";
import { vmPaths } from "../../src/config/paths.ts";

const base = {
  vm: vmPaths("/data/vm"),
  arch: "x86_64" as const,
  resources: { cpus: 2, memoryBytes: 2048 * 1024 * 1024, notes: [] },
  identity: { uuid: "0b5c2b2e-1a3f-4c1d-9e8f-0123456789ab", mac: "02:11:22:33:44:55", nvramCreate: true },
  forwards: [{ guestPort: 8123, hostPort: 40123 }],
};

describe("buildVmSpec", () => {
  test("root disk is virtio, cached, full sync; CONFIG stick is read-only USB", () => {
    const { config } = parseConfigText("", "c.yml");
    const spec = buildVmSpec({ ...base, config, configDiskPath: "/data/vm/config.img" });
    expect(spec.disks).toEqual([
      { id: "root", path: "/data/vm/haos.img", readOnly: false, caching: "cached", sync: "full", bus: "virtio" },
      { id: "config", path: "/data/vm/config.img", readOnly: true, caching: "cached", sync: "full", bus: "usb" },
    ]);
    expect(spec.efi).toEqual({ varsPath: "/data/vm/NVRAM", create: true });
    expect(spec.machineIdentifier).toEqual({ path: "/data/vm/MachineIdentifier", uuid: base.identity.uuid });
    expect(spec.network).toEqual({ mode: "nat", mac: "02:11:22:33:44:55", forwards: base.forwards });
    expect([spec.cpus, spec.memoryBytes, spec.entropy, spec.balloon, spec.usbController, spec.watchdog]).toEqual([2, 2048 * 1024 * 1024, true, true, true, true]);
    expect(spec.serialLogPath).toBe("/data/vm/serial.log");
  });
  test("no CONFIG stick without one; bridge network carries the interface", () => {
    const { config } = parseConfigText("network:\n  type: bridge\n  interface: br0\n  hostname: ha\n", "c.yml");
    const spec = buildVmSpec({ ...base, config, forwards: [] });
    expect(spec.disks.map((d) => d.id)).toEqual(["root"]);
    expect(spec.network).toEqual({ mode: "bridge", interface: "br0", mac: base.identity.mac, hostname: "ha", forwards: [] });
  });
  test("vz identity data is carried when given", () => {
    const { config } = parseConfigText("", "c.yml");
    const spec = buildVmSpec({ ...base, config, identity: { ...base.identity, vzDataBase64: "AAEC" } });
    expect(spec.machineIdentifier.vzDataBase64).toBe("AAEC");
  });
  test("spec survives a JSON round trip unchanged (it is plain data)", () => {
    const { config } = parseConfigText("", "c.yml");
    const spec = buildVmSpec({ ...base, config, configDiskPath: "/c.img" });
    expect(JSON.parse(JSON.stringify(spec))).toEqual(spec);
  });
  test("host arch maps to HAOS boards' guest arch", () => {
    expect(hostGuestArch("x64")).toBe("x86_64");
    expect(hostGuestArch("arm64")).toBe("aarch64");
    expect(() => hostGuestArch("ia32")).toThrow(/unsupported CPU architecture/);
  });
});
