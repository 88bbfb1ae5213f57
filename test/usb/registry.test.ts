import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsbRegistry, parseUsbRegistry, formatUsbRegistry } from "../../src/usb/registry.ts";
import { HavmError } from "../../src/util/errors.ts";

const root = mkdtempSync(join(tmpdir(), "havm-usbreg-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const fresh = () => join(mkdtempSync(join(root, "vm-")), "usb.json");
const fixed = () => new Date("2026-11-25T04:00:00Z");

describe("UsbRegistry", () => {
  test("missing file is empty; add, has, list, remove", () => {
    const reg = new UsbRegistry(fresh(), fixed);
    expect(reg.list()).toEqual([]);
    expect(reg.add({ vendorId: 0x10c4, productId: 0xea60, serial: "A1", name: "Sonoff" })).toBe(true);
    expect(reg.add({ vendorId: 0x0658, productId: 0x0200 })).toBe(true);
    expect(reg.has({ vendorId: 0x10c4, productId: 0xea60, serial: "A1" })).toBe(true);
    expect(reg.has({ vendorId: 0x10c4, productId: 0xea60, serial: "B2" })).toBe(false);
    expect(reg.list()).toEqual([
      { vendorId: 0x10c4, productId: 0xea60, serial: "A1", name: "Sonoff", addedAt: "2026-11-25T04:00:00.000Z" },
      { vendorId: 0x0658, productId: 0x0200, addedAt: "2026-11-25T04:00:00.000Z" },
    ]);
    expect(reg.remove({ vendorId: 0x10c4, productId: 0xea60, serial: "A1" })).toBe(true);
    expect(reg.remove({ vendorId: 0x10c4, productId: 0xea60, serial: "A1" })).toBe(false);
    expect(reg.list().map((d) => d.vendorId)).toEqual([0x0658]);
  });

  test("adding twice is idempotent (one entry) but refreshes the name", () => {
    const reg = new UsbRegistry(fresh(), fixed);
    reg.add({ vendorId: 1, productId: 2, serial: "s" });
    expect(reg.add({ vendorId: 1, productId: 2, serial: "s", name: "Stick" })).toBe(false);
    expect(reg.list()).toEqual([{ vendorId: 1, productId: 2, serial: "s", name: "Stick", addedAt: fixed().toISOString() }]);
  });

  test("stored as readable hex JSON, and a new registry instance reads it back", () => {
    const path = fresh();
    new UsbRegistry(path, fixed).add({ vendorId: 0x10c4, productId: 0xea60, serial: "A1" });
    const stored = JSON.parse(readFileSync(path, "utf8"));
    expect(stored).toEqual({ version: 1, devices: [{ vendorId: "10c4", productId: "ea60", serial: "A1", addedAt: fixed().toISOString() }] });
    expect(new UsbRegistry(path).list()[0]?.serial).toBe("A1");
    // No temp files left behind.
    expect(readdirSync(join(path, "..")).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  const corrupt: [string, string][] = [
    ["half a file", '{"version": 1, "devices": [{"vendorId": "10c4"'],
    ["empty file", ""],
    ["not an object", "[]"],
    ["wrong version", '{"version": 9, "devices": []}'],
    ["devices not a list", '{"version": 1, "devices": {}}'],
    ["bad vendor id", '{"version": 1, "devices": [{"vendorId": "xyz", "productId": "ea60"}]}'],
    ["numeric serial", '{"version": 1, "devices": [{"vendorId": "10c4", "productId": "ea60", "serial": 5}]}'],
  ];
  for (const [what, text] of corrupt) {
    test(`a corrupt registry (${what}) is an error naming the file, and the file is left alone`, () => {
      const path = fresh();
      writeFileSync(path, text);
      const reg = new UsbRegistry(path);
      let err: unknown;
      try {
        reg.list();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(HavmError);
      expect((err as HavmError).message).toContain(path);
      expect((err as HavmError).hint).toContain("delete it");
      expect(() => reg.add({ vendorId: 1, productId: 1 })).toThrow(path);
      expect(readFileSync(path, "utf8")).toBe(text);
    });
  }

  test("format/parse round trip", () => {
    const devs = [{ vendorId: 0xffff, productId: 0, serial: "x:y", name: "n", addedAt: "t" }, { vendorId: 1, productId: 2 }];
    expect(parseUsbRegistry(formatUsbRegistry(devs), "p")).toEqual(devs);
  });
});
