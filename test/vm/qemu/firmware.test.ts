import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureNvram, findFirmware, FIRMWARE_CANDIDATES } from "../../../src/vm/qemu/firmware.ts";
import { HavmError } from "../../../src/util/errors.ts";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "havm-fw-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("findFirmware", () => {
  test("picks the first complete pair", () => {
    const files = new Set(["/c2", "/v2", "/c1"]);
    const pair = findFirmware("x86_64", {}, [{ code: "/c1", varsTemplate: "/v1" }, { code: "/c2", varsTemplate: "/v2" }], (p) => files.has(p));
    expect(pair).toEqual({ code: "/c2", varsTemplate: "/v2" });
  });

  test("missing firmware names the Debian package per arch", () => {
    const none = () => false;
    for (const [arch, pkg] of [["x86_64", "ovmf"], ["aarch64", "qemu-efi-aarch64"]] as const) {
      try {
        findFirmware(arch, {}, FIRMWARE_CANDIDATES[arch], none);
        throw new Error("expected a failure");
      } catch (e) {
        expect(e).toBeInstanceOf(HavmError);
        expect((e as HavmError).hint).toContain(`apt-get install ${pkg}`);
      }
    }
  });

  test("config overrides must come as a pair and exist", () => {
    expect(() => findFirmware("x86_64", { code: "/a" })).toThrow(/set together/);
    expect(() => findFirmware("x86_64", { code: join(dir, "nope"), vars: join(dir, "nope2") })).toThrow(/not found/);
    writeFileSync(join(dir, "c"), "c");
    writeFileSync(join(dir, "v"), "v");
    expect(findFirmware("x86_64", { code: join(dir, "c"), vars: join(dir, "v") })).toEqual({ code: join(dir, "c"), varsTemplate: join(dir, "v") });
  });

  test.skipIf(process.arch !== "x64")("finds the installed OVMF on this host", () => {
    const fw = findFirmware("x86_64");
    expect(statSync(fw.code).size).toBeGreaterThan(1024 * 1024);
    expect(statSync(fw.varsTemplate).size).toBeGreaterThan(64 * 1024);
  });
});

describe("ensureNvram", () => {
  test("first boot copies the template; later boots reuse the same file untouched", () => {
    const tpl = join(dir, "VARS.fd");
    writeFileSync(tpl, Buffer.alloc(4096, 7));
    const nvram = join(dir, "vm", "NVRAM");
    expect(ensureNvram(nvram, tpl, { create: true })).toBe("created");
    expect(readFileSync(nvram)).toEqual(readFileSync(tpl));
    expect(statSync(nvram).mode & 0o777).toBe(0o600);
    // The guest writes variables; the next start must keep them.
    const changed = Buffer.alloc(4096, 9);
    writeFileSync(nvram, changed);
    const ino = statSync(nvram).ino;
    expect(ensureNvram(nvram, tpl, { create: true })).toBe("reused");
    expect(ensureNvram(nvram, tpl, { create: false })).toBe("reused");
    expect(readFileSync(nvram)).toEqual(changed);
    expect(statSync(nvram).ino).toBe(ino);
    // No temp files left behind by the atomic copy.
    expect(readdirSync(join(dir, "vm"))).toEqual(["NVRAM"]);
  });

  test("a wrong-size store is an error naming the file, never replaced", () => {
    const tpl = join(dir, "VARS.fd");
    writeFileSync(tpl, Buffer.alloc(4096));
    const nvram = join(dir, "NVRAM");
    writeFileSync(nvram, "not a pflash store");
    expect(() => ensureNvram(nvram, tpl, { create: false })).toThrow(nvram);
    expect(readFileSync(nvram, "utf8")).toBe("not a pflash store");
  });

  test("a store that vanished after the first boot is an error, not a silent new identity", () => {
    const tpl = join(dir, "VARS.fd");
    writeFileSync(tpl, Buffer.alloc(4096));
    expect(() => ensureNvram(join(dir, "NVRAM"), tpl, { create: false })).toThrow(/missing/);
  });
});
