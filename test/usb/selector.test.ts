import { describe, expect, test } from "bun:test";
import {
  formatUsbSelector,
  parseUsbSelector,
  selectOneUsbDevice,
  filterUsbSelector,
  type UsbMatchable,
} from "../../src/usb/selector.ts";
import { HavmError } from "../../src/util/errors.ts";

describe("parseUsbSelector", () => {
  const ok: [string, ReturnType<typeof parseUsbSelector>][] = [
    ["10c4:ea60", { kind: "ids", vendorId: 0x10c4, productId: 0xea60 }],
    ["10C4:EA60", { kind: "ids", vendorId: 0x10c4, productId: 0xea60 }],
    ["0x1a86:0x55d4", { kind: "ids", vendorId: 0x1a86, productId: 0x55d4 }],
    ["10c4:ea60:ABC123", { kind: "ids", vendorId: 0x10c4, productId: 0xea60, serial: "ABC123" }],
    ["10c4:ea60:a:b:c", { kind: "ids", vendorId: 0x10c4, productId: 0xea60, serial: "a:b:c" }],
    ["1-1", { kind: "port", port: "1-1" }],
    [" 3-1.4.2 ", { kind: "port", port: "3-1.4.2" }],
    ["1:2", { kind: "ids", vendorId: 1, productId: 2 }],
  ];
  for (const [input, want] of ok) test(`parses ${JSON.stringify(input)}`, () => expect(parseUsbSelector(input)).toEqual(want));

  const bad = ["", "  ", "10c4", "10c4:", "10c4:ea60:", "zzzz:ea60", "10c45:ea60", "usb1", "1-1:1.0", ":ea60"];
  for (const input of bad) {
    test(`refuses ${JSON.stringify(input)} with a hint`, () => {
      let err: unknown;
      try {
        parseUsbSelector(input);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(HavmError);
      expect((err as HavmError).exitCode).toBe(2);
      expect((err as HavmError).hint).toContain("havm usb list");
    });
  }

  test("round-trips through formatUsbSelector", () => {
    for (const s of ["10c4:ea60", "10c4:ea60:X:1", "1-1.2", "0001:0002"]) {
      expect(formatUsbSelector(parseUsbSelector(s))).toBe(s);
    }
  });
});

describe("matching", () => {
  const devs: (UsbMatchable & { name: string })[] = [
    { vendorId: 0x10c4, productId: 0xea60, serial: "A1", port: "1-1", name: "Sonoff Zigbee" },
    { vendorId: 0x10c4, productId: 0xea60, serial: "B2", port: "1-2", name: "Sonoff Zigbee" },
    { vendorId: 0x0658, productId: 0x0200, port: "2-1.3", name: "Aeotec Z-Stick" },
    { vendorId: 0x1a86, productId: 0x55d4, port: "2-1.4", name: "CH9102" },
    { vendorId: 0x1a86, productId: 0x55d4, port: "2-1.5", name: "CH9102" },
  ];
  test("vendor:product matches every device with those ids", () => {
    expect(filterUsbSelector(parseUsbSelector("10c4:ea60"), devs).map((d) => d.port)).toEqual(["1-1", "1-2"]);
  });
  test("serial narrows to one", () => {
    expect(selectOneUsbDevice(parseUsbSelector("10c4:ea60:B2"), devs).port).toBe("1-2");
  });
  test("port selects exactly", () => {
    expect(selectOneUsbDevice(parseUsbSelector("2-1.3"), devs).name).toBe("Aeotec Z-Stick");
  });
  test("unique ids select without serial", () => {
    expect(selectOneUsbDevice(parseUsbSelector("0658:0200"), devs).port).toBe("2-1.3");
  });
  test("no match is refused as unknown", () => {
    expect(() => selectOneUsbDevice(parseUsbSelector("dead:beef"), devs)).toThrow(/no USB device matches dead:beef/);
    expect(() => selectOneUsbDevice(parseUsbSelector("10c4:ea60:C3"), devs)).toThrow(/no USB device matches/);
  });
  test("ambiguous ids are refused listing the candidates and how to pick", () => {
    let err: HavmError | undefined;
    try {
      selectOneUsbDevice(parseUsbSelector("10c4:ea60"), devs);
    } catch (e) {
      err = e as HavmError;
    }
    expect(err?.code).toBe("usb.ambiguous");
    expect(err?.message).toContain("10c4:ea60:A1 port 1-1");
    expect(err?.message).toContain("10c4:ea60:B2 port 1-2");
    expect(err?.hint).toContain("serial");
  });
  test("ambiguous without serials points at the port ids", () => {
    let err: HavmError | undefined;
    try {
      selectOneUsbDevice(parseUsbSelector("1a86:55d4"), devs);
    } catch (e) {
      err = e as HavmError;
    }
    expect(err?.code).toBe("usb.ambiguous");
    expect(err?.hint).toContain("port ID (2-1.4)");
  });
});
