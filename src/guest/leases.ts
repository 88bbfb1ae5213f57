// Finding the guest's IP under Virtualization.framework NAT. PURE: text in, answers out (the caller
// reads /var/db/dhcpd_leases and runs `arp -an`).
//
// macOS's bootpd writes one block per lease:
//   {
//   	name=homeassistant
//   	ip_address=192.168.64.5
//   	hw_address=1,2:1a:2b:3c:4d:5e
//   	identifier=1,2:1a:2b:3c:4d:5e
//   	lease=0x6745a1b2
//   }
// MAC octets are printed in hex WITHOUT leading zeros ("2" for "02"), so octets are compared as
// integers. `lease` is the expiry time (Unix seconds, hex). A guest that sends an RFC 4361 client-id
// gets `hw_address=ff,<DUID bytes>`: no MAC at all, so the hostname is the fallback, then ARP.

export interface DhcpLease {
  name?: string;
  ip: string;
  /** "1" for Ethernet (a MAC follows), "ff" for an RFC 4361 client-id. */
  hwType?: string;
  /** MAC octets as integers when hwType is 1. */
  mac?: number[];
  identifier?: string;
  /** Lease expiry, Unix seconds. */
  expiresAt: number;
}

export interface ArpEntry {
  ip: string;
  mac: number[];
  interface?: string;
}

/** "2:1a:b:0:4d:5e" or "02-1A-..." -> [2, 26, 11, 0, 77, 94]; null unless six hex octets. */
export function macOctets(text: string): number[] | null {
  const parts = text.trim().split(/[:-]/);
  if (parts.length !== 6) return null;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^[0-9a-fA-F]{1,2}$/.test(p)) return null;
    out.push(parseInt(p, 16));
  }
  return out;
}

function sameMac(a: number[] | undefined, b: number[]): boolean {
  return a !== undefined && a.length === b.length && a.every((v, i) => v === b[i]);
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function isIpv4(s: string): boolean {
  const m = IPV4_RE.exec(s);
  return m !== null && m.slice(1).every((o) => Number(o) <= 255);
}

/** Every well-formed lease block in the file's text, in file order. Malformed blocks are skipped. */
export function parseDhcpdLeases(text: string): DhcpLease[] {
  const leases: DhcpLease[] = [];
  let cur: Record<string, string> | null = null;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "{") {
      cur = {};
      continue;
    }
    if (line === "}") {
      if (cur) {
        const lease = toLease(cur);
        if (lease) leases.push(lease);
      }
      cur = null;
      continue;
    }
    if (!cur) continue;
    const eq = line.indexOf("=");
    if (eq > 0) cur[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return leases;
}

function toLease(f: Record<string, string>): DhcpLease | null {
  const ip = f.ip_address;
  const leaseHex = f.lease;
  if (!ip || !isIpv4(ip) || !leaseHex || !/^0x[0-9a-fA-F]+$/.test(leaseHex)) return null;
  const lease: DhcpLease = { ip, expiresAt: parseInt(leaseHex.slice(2), 16) };
  if (f.name) lease.name = f.name;
  if (f.identifier) lease.identifier = f.identifier;
  const hw = f.hw_address;
  if (hw) {
    const comma = hw.indexOf(",");
    const type = comma >= 0 ? hw.slice(0, comma) : hw;
    lease.hwType = type.toLowerCase();
    if (lease.hwType === "1" && comma >= 0) {
      const mac = macOctets(hw.slice(comma + 1));
      if (mac) lease.mac = mac;
    }
  }
  return lease;
}

export interface GuestLookup {
  /** The VM's MAC (any common notation). */
  mac: string;
  /** Hostname fallback for client-id leases; HAOS asks for "homeassistant". */
  name?: string;
  /** Now, in milliseconds (Date.now()). */
  nowMs: number;
}

/**
 * The guest's IP from the leases file text, or null. `text` undefined means the file is missing (no
 * VM has leased an address yet on this Mac). Among unexpired leases, a MAC match wins; otherwise a
 * name match; the newest (latest expiry) of the matches is returned.
 */
export function guestIpFromLeases(text: string | undefined, q: GuestLookup): string | null {
  if (text === undefined) return null;
  const want = macOctets(q.mac);
  const nowSec = Math.floor(q.nowMs / 1000);
  const live = parseDhcpdLeases(text).filter((l) => l.expiresAt > nowSec);
  let hits = want ? live.filter((l) => sameMac(l.mac, want)) : [];
  if (hits.length === 0) {
    const name = q.name ?? "homeassistant";
    hits = live.filter((l) => l.name === name);
  }
  let best: DhcpLease | null = null;
  for (const l of hits) if (!best || l.expiresAt >= best.expiresAt) best = l;
  return best ? best.ip : null;
}

/**
 * `arp -an` lines on macOS:
 *   ? (192.168.64.5) at 2:1a:2b:3c:4d:5e on bridge100 ifscope [bridge]
 *   ? (192.168.64.9) at (incomplete) on bridge100 ifscope [bridge]
 */
export function parseArpOutput(text: string): ArpEntry[] {
  const out: ArpEntry[] = [];
  for (const line of text.split(/\r?\n/)) {
    const m = /\((\d{1,3}(?:\.\d{1,3}){3})\) at ([0-9a-fA-F:]+)(?: on (\S+))?/.exec(line);
    if (!m || !isIpv4(m[1]!)) continue;
    const mac = macOctets(m[2]!);
    if (!mac) continue;
    const entry: ArpEntry = { ip: m[1]!, mac };
    if (m[3]) entry.interface = m[3];
    out.push(entry);
  }
  return out;
}

/** The IP the ARP table maps to the VM's MAC (the last such entry), or null. */
export function guestIpFromArp(text: string, mac: string): string | null {
  const want = macOctets(mac);
  if (!want) return null;
  let ip: string | null = null;
  for (const e of parseArpOutput(text)) if (sameMac(e.mac, want)) ip = e.ip;
  return ip;
}
