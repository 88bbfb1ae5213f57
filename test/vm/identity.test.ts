import { captureLogLines } from "../support/log-capture.ts";
import { describe, expect, test, afterAll } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { vmPaths } from "../../src/config/paths.ts";
import { HavmError } from "../../src/util/errors.ts";
import { asUuidV4, deriveMac, ensureIdentity, formatUuid, normalizeMac, uuidForIdentifier } from "../../src/vm/identity.ts";

const dir = mkdtempSync(join(tmpdir(), "havm-identity-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshVm = () => vmPaths(join(dir, `vm${n++}`));

/** sha256 with the real coreutils tool, so expectations are not computed by the code under test. */
function sha256sum(parts: (string | Uint8Array)[]): string {
  const f = join(dir, `hash-input-${n++}`);
  writeFileSync(f, Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : Buffer.from(p)))));
  return Bun.spawnSync(["sha256sum", f]).stdout.toString().slice(0, 64);
}

describe("pure parts", () => {
  test.each([
    ["00112233445566778899aabbccddeeff", "00112233-4455-6677-8899-aabbccddeeff"],
    ["ffffffffffffffffffffffffffffffff", "ffffffff-ffff-ffff-ffff-ffffffffffff"],
  ])("formatUuid(%s)", (h, uuid) => {
    expect(formatUuid(Buffer.from(h, "hex"))).toBe(uuid);
  });
  test("formatUuid refuses other lengths", () => {
    expect(() => formatUuid(new Uint8Array(15))).toThrow(RangeError);
  });
  test.each([
    ["00000000000000000000000000000000", "00000000-0000-4000-8000-000000000000"],
    ["ffffffffffffffffffffffffffffffff", "ffffffff-ffff-4fff-bfff-ffffffffffff"],
  ])("asUuidV4 sets version and variant bits on %s", (h, uuid) => {
    expect(formatUuid(asUuidV4(Buffer.from(h, "hex")))).toBe(uuid);
  });
  test.each([
    ["02:AB:cd:EF:01:23", "02:ab:cd:ef:01:23"],
    ["02-ab-cd-ef-01-23", "02:ab:cd:ef:01:23"],
    [" 52:54:00:12:34:56 ", "52:54:00:12:34:56"],
    ["01:00:5e:00:00:01", undefined], // multicast
    ["02:ab:cd:ef:01", undefined],
    ["02:ab:cd:ef:01:2g", undefined],
  ])("normalizeMac(%p)", (input, out) => {
    expect(normalizeMac(input)).toBe(out);
  });
  test.each([["00112233445566778899aabbccddeeff"], ["0102"], ["ffffffffffffffffffffffffffffffffffffffff"]])("deriveMac(%s) = sha256 prefix, local, unicast", (h) => {
    const id = Buffer.from(h, "hex");
    const digest = sha256sum(["havm-mac\0", id]);
    const octets = digest.slice(0, 12).match(/../g)!.map((x) => parseInt(x, 16));
    octets[0] = (octets[0]! | 2) & 0xfe;
    const expected = octets.map((x) => x.toString(16).padStart(2, "0")).join(":");
    const mac = deriveMac(id);
    expect(mac).toBe(expected);
    expect(parseInt(mac.slice(0, 2), 16) & 0x03).toBe(0x02);
    expect(deriveMac(Uint8Array.from(id))).toBe(mac);
  });
  test("uuidForIdentifier: qemu = the bytes, vz = sha256 of the data representation", () => {
    const id = Buffer.from("00112233445566778899aabbccddeeff", "hex");
    expect(uuidForIdentifier("qemu", id)).toBe("00112233-4455-6677-8899-aabbccddeeff");
    const vzData = Buffer.from("<plist>opaque identifier data</plist>");
    const digest = Buffer.from(sha256sum([vzData]).slice(0, 32), "hex");
    expect(uuidForIdentifier("vz", vzData)).toBe(formatUuid(asUuidV4(digest)));
    expect(uuidForIdentifier("vz", vzData)).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe("ensureIdentity", () => {
  const lines = captureLogLines();

  test("qemu: created once, identical afterwards, MAC derived, NVRAM to be created", async () => {
    const vm = freshVm();
    const first = await ensureIdentity({ vm, backend: "qemu" });
    const onDisk = readFileSync(vm.machineIdentifier);
    expect(onDisk.length).toBe(16);
    expect(onDisk[6]! >> 4).toBe(4);
    expect(onDisk[8]! >> 6).toBe(2);
    expect(first.uuid).toBe(formatUuid(onDisk));
    expect(first.mac).toBe(deriveMac(onDisk));
    expect(first.nvram).toEqual({ path: vm.nvram, create: true });

    writeFileSync(vm.nvram, new Uint8Array(4096)); // the backend created it
    const second = await ensureIdentity({ vm, backend: "qemu", random16: () => new Uint8Array(16).fill(7) });
    expect(second.uuid).toBe(first.uuid);
    expect(second.mac).toBe(first.mac);
    expect(Buffer.from(second.machineIdentifierBytes).equals(onDisk)).toBe(true);
    expect(second.nvram.create).toBe(false);
  });

  test("qemu: injected randomness and network.mac", async () => {
    const vm = freshVm();
    const id = await ensureIdentity({ vm, backend: "qemu", random16: () => new Uint8Array(16).fill(0xff), configMac: "02:AA:BB:CC:DD:EE" });
    expect(id.uuid).toBe("ffffffff-ffff-4fff-bfff-ffffffffffff");
    expect(id.mac).toBe("02:aa:bb:cc:dd:ee");
    await expect(ensureIdentity({ vm, backend: "qemu", configMac: "03:aa:bb:cc:dd:ee" })).rejects.toMatchObject({ exitCode: 2 });
  });

  test("vz: created by the shim once, validated on later runs", async () => {
    const vm = freshVm();
    let created = 0;
    const data = new TextEncoder().encode("bplist00 fake VZGenericMachineIdentifier data");
    const createVzIdentifier = () => (created++, data);
    const seen: Uint8Array[] = [];
    const validateVzIdentifier = (b: Uint8Array) => (seen.push(b), true);
    const first = await ensureIdentity({ vm, backend: "vz", createVzIdentifier, validateVzIdentifier });
    const second = await ensureIdentity({ vm, backend: "vz", createVzIdentifier, validateVzIdentifier });
    expect(created).toBe(1);
    expect(seen.length).toBe(1);
    expect(Buffer.from(seen[0]!).equals(Buffer.from(data))).toBe(true);
    expect(readFileSync(vm.machineIdentifier).equals(Buffer.from(data))).toBe(true);
    expect(second.uuid).toBe(first.uuid);
    expect(second.mac).toBe(deriveMac(data));
    await expect(ensureIdentity({ vm: freshVm(), backend: "vz" })).rejects.toThrow(/createVzIdentifier/);
  });

  async function expectCorrupt(p: Promise<unknown>, file: string): Promise<HavmError> {
    let err: unknown;
    try {
      await p;
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HavmError);
    const h = err as HavmError;
    expect(h.code).toBe("vm.identity");
    expect(h.message).toContain(file);
    expect(h.hint).toContain(`move ${file} away`);
    expect(h.hint).toContain("new machine");
    return h;
  }

  test("a corrupt identity file is an error naming it, never a new identity", async () => {
    const vm = freshVm();
    mkdirSync(vm.dir, { recursive: true });
    const junk = Buffer.from("short");
    writeFileSync(vm.machineIdentifier, junk);
    await expectCorrupt(ensureIdentity({ vm, backend: "qemu" }), vm.machineIdentifier);
    expect(readFileSync(vm.machineIdentifier).equals(junk)).toBe(true); // untouched

    writeFileSync(vm.machineIdentifier, new Uint8Array(16));
    await expectCorrupt(ensureIdentity({ vm, backend: "qemu" }), vm.machineIdentifier);

    writeFileSync(vm.machineIdentifier, new Uint8Array(0));
    await expectCorrupt(ensureIdentity({ vm, backend: "vz", createVzIdentifier: () => new Uint8Array(8) }), vm.machineIdentifier);

    writeFileSync(vm.machineIdentifier, junk);
    const h = await expectCorrupt(ensureIdentity({ vm, backend: "vz", validateVzIdentifier: () => false }), vm.machineIdentifier);
    expect(h.message).toContain("VZGenericMachineIdentifier");

    // Unreadable: a directory where the file should be (root ignores permission bits, so no chmod).
    const vm2 = freshVm();
    mkdirSync(vm2.machineIdentifier, { recursive: true });
    await expectCorrupt(ensureIdentity({ vm: vm2, backend: "qemu" }), vm2.machineIdentifier);
  });

  test("an empty NVRAM file is an error naming it", async () => {
    const vm = freshVm();
    await ensureIdentity({ vm, backend: "qemu" });
    writeFileSync(vm.nvram, "");
    await expectCorrupt(ensureIdentity({ vm, backend: "qemu" }), vm.nvram);
  });

  test("a lost identifier of a VM that booted before (NVRAM exists) is recreated with a warning", async () => {
    const vm = freshVm();
    mkdirSync(vm.dir, { recursive: true });
    writeFileSync(vm.nvram, "vars");
    lines.length = 0;
    await ensureIdentity({ vm, backend: "qemu" });
    expect(lines.join("\n")).toMatch(/WARN\s+creating a new machine identifier for an existing VM/);
    // First run: the disk was just created, no NVRAM yet: no warning.
    const first = freshVm();
    mkdirSync(first.dir, { recursive: true });
    writeFileSync(first.disk, "disk");
    lines.length = 0;
    await ensureIdentity({ vm: first, backend: "qemu" });
    expect(lines.join("\n")).not.toContain("WARN");
    expect(lines.join("\n")).toContain("created the VM's machine identifier");
  });
});
