// src/guest/leases.ts on real-shaped /var/db/dhcpd_leases and `arp -an` output (test/vz/fixtures/).
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { guestIpFromArp, guestIpFromLeases, macOctets, parseArpOutput, parseDhcpdLeases } from "../../src/guest/leases.ts";

const fx = (name: string) => readFileSync(join(import.meta.dir, "fixtures", name), "utf8");
const MAC_LEASES = fx("dhcpd_leases.mac");
const CLIENTID_LEASES = fx("dhcpd_leases.clientid");
const ARP = fx("arp-an.txt");
// Between the expired lease (0x67450000) and the live ones (0x6745a000..0x6745c000).
const NOW = 0x67458000 * 1000;
const VM_MAC = "02:1a:0b:3c:4d:05";

describe("macOctets", () => {
  test("octets without leading zeros equal their zero-padded form", () => {
    expect(macOctets("2:1a:b:3c:4d:5")).toEqual(macOctets("02:1A:0B:3C:4D:05"));
    expect(macOctets("2:1a:b:3c:4d:5")).toEqual([2, 26, 11, 60, 77, 5]);
    expect(macOctets("02-1a-0b-3c-4d-05")).toEqual([2, 26, 11, 60, 77, 5]);
  });
  test("malformed MACs are refused", () => {
    for (const bad of ["", "2:1a:b:3c:4d", "2:1a:b:3c:4d:5:6", "2:1a:b:3c:4d:zz", "123:0:0:0:0:0"]) expect(macOctets(bad)).toBeNull();
  });
});

describe("parseDhcpdLeases", () => {
  test("reads every block with its fields; lease is the hex expiry", () => {
    const leases = parseDhcpdLeases(MAC_LEASES);
    expect(leases.map((l) => l.ip)).toEqual(["192.168.64.2", "192.168.64.3", "192.168.64.7", "192.168.64.9"]);
    expect(leases[2]).toEqual({
      name: "homeassistant",
      ip: "192.168.64.7",
      hwType: "1",
      mac: [2, 26, 11, 60, 77, 5],
      identifier: "1,2:1a:b:3c:4d:5",
      expiresAt: 0x6745b000,
    });
  });
  test("client-id leases carry no MAC", () => {
    const leases = parseDhcpdLeases(CLIENTID_LEASES);
    expect(leases[0]!.hwType).toBe("ff");
    expect(leases[0]!.mac).toBeUndefined();
  });
  test("malformed blocks are skipped, the rest kept", () => {
    const text = "{\n\tname=x\n\tip_address=999.1.1.1\n\tlease=0x1\n}\n{\n\tip_address=10.0.0.2\n}\n" + MAC_LEASES;
    expect(parseDhcpdLeases(text)).toHaveLength(4);
  });
});

describe("guestIpFromLeases", () => {
  test("the newest unexpired lease for the VM's MAC, octets compared as integers", () => {
    expect(guestIpFromLeases(MAC_LEASES, { mac: VM_MAC, nowMs: NOW })).toBe("192.168.64.7");
  });
  test("a MAC that differs only by a leading digit (12 vs 2) does not match", () => {
    expect(guestIpFromLeases(MAC_LEASES, { mac: "12:1a:0b:3c:4d:05", nowMs: NOW })).toBe("192.168.64.9");
  });
  test("expired leases are ignored", () => {
    const onlyOld = MAC_LEASES.split("}\n").filter((b) => b.includes("0x67450000")).join("}\n") + "}\n";
    expect(guestIpFromLeases(onlyOld, { mac: VM_MAC, nowMs: NOW })).toBeNull();
    expect(guestIpFromLeases(onlyOld, { mac: VM_MAC, nowMs: 0x67440000 * 1000 })).toBe("192.168.64.3");
  });
  test("client-id leases fall back to name=homeassistant, newest first", () => {
    expect(guestIpFromLeases(CLIENTID_LEASES, { mac: VM_MAC, nowMs: 0x673f0000 * 1000 })).toBe("192.168.64.12");
    expect(guestIpFromLeases(CLIENTID_LEASES, { mac: VM_MAC, nowMs: NOW })).toBe("192.168.64.12");
    expect(guestIpFromLeases(CLIENTID_LEASES, { mac: VM_MAC, name: "macmini-vm", nowMs: NOW })).toBe("192.168.64.4");
    expect(guestIpFromLeases(CLIENTID_LEASES, { mac: VM_MAC, name: "nobody", nowMs: NOW })).toBeNull();
  });
  test("a missing or empty file means no IP yet", () => {
    expect(guestIpFromLeases(undefined, { mac: VM_MAC, nowMs: NOW })).toBeNull();
    expect(guestIpFromLeases("", { mac: VM_MAC, nowMs: NOW })).toBeNull();
  });
});

describe("arp -an fallback", () => {
  test("parses complete entries, skips incomplete ones", () => {
    const entries = parseArpOutput(ARP);
    expect(entries.map((e) => e.ip)).toEqual(["192.168.1.1", "192.168.64.7", "192.168.64.255", "224.0.0.251"]);
    expect(entries[1]).toEqual({ ip: "192.168.64.7", mac: [2, 26, 11, 60, 77, 5], interface: "bridge100" });
  });
  test("finds the VM by MAC, or nothing", () => {
    expect(guestIpFromArp(ARP, VM_MAC)).toBe("192.168.64.7");
    expect(guestIpFromArp(ARP, "02:00:00:00:00:01")).toBeNull();
    expect(guestIpFromArp(ARP, "not a mac")).toBeNull();
  });
});
