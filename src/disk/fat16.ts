// Pure builders for a small MBR disk with one FAT16 partition (the HAOS CONFIG stick). No I/O.
//
// Layout of the partition (all sizes in 512-byte sectors):
//   [boot sector (1 reserved)] [FAT #1] [FAT #2] [root directory (512 entries = 32 sectors)] [data clusters]
// Files are stored contiguously from cluster 2 in the root directory, with VFAT long-name entries when the
// name is not a plain upper-case 8.3 name (so the guest sees `authorized_keys`, not `AUTHOR~1`).
// The FAT type is decided by readers from the cluster count alone (FAT16 = 4085..65524 clusters), so the
// sectors-per-cluster value is chosen to land inside that range, with a small margin from both edges
// because some drivers historically rounded differently near the limits.
import { createHash } from "node:crypto";

export const SECTOR = 512;
const ROOT_ENTRIES = 512;
const RESERVED_SECTORS = 1;
const NUM_FATS = 2;
const MEDIA = 0xf8;
/** FAT16 by cluster count: 4085..65524 (Microsoft's FAT spec). */
export const FAT16_MIN_CLUSTERS = 4085;
export const FAT16_MAX_CLUSTERS = 65524;
/** Keep away from the exact edges; drivers that miscount by a few clusters then still agree. */
const EDGE_MARGIN = 16;

export interface FatFile {
  /** Root-directory file name as the guest should see it (long names allowed). */
  name: string;
  data: Uint8Array;
}

export interface Fat16Geometry {
  sectors: number;
  sectorsPerCluster: number;
  reservedSectors: number;
  fatSectors: number;
  rootDirSectors: number;
  firstDataSector: number;
  clusters: number;
}

/**
 * The geometry for a FAT16 volume of `sectors` sectors: the smallest cluster size whose cluster count lies
 * in the FAT16 range. Throws when no cluster size fits (volume too small or too large for FAT16).
 */
export function fat16Geometry(sectors: number): Fat16Geometry {
  const rootDirSectors = (ROOT_ENTRIES * 32) / SECTOR;
  for (let spc = 1; spc <= 64; spc *= 2) {
    // Fixed point: the FAT must cover every cluster, and the FAT's own size eats into the data region.
    const clustersWith = (fatSectors: number) => Math.floor((sectors - RESERVED_SECTORS - NUM_FATS * fatSectors - rootDirSectors) / spc);
    const fits = (fatSectors: number) => Math.ceil(((clustersWith(fatSectors) + 2) * 2) / SECTOR) <= fatSectors;
    // Grow until the FAT covers its clusters, then shrink to the smallest FAT that still does.
    let fatSectors = 1;
    while (!fits(fatSectors)) fatSectors = Math.ceil(((clustersWith(fatSectors) + 2) * 2) / SECTOR);
    while (fatSectors > 1 && fits(fatSectors - 1)) fatSectors--;
    const clusters = clustersWith(fatSectors);
    if (clusters > FAT16_MAX_CLUSTERS - EDGE_MARGIN) continue; // too many clusters: try bigger ones
    if (clusters < FAT16_MIN_CLUSTERS + EDGE_MARGIN) break; // already too few at this size: nothing fits
    return {
      sectors,
      sectorsPerCluster: spc,
      reservedSectors: RESERVED_SECTORS,
      fatSectors,
      rootDirSectors,
      firstDataSector: RESERVED_SECTORS + NUM_FATS * fatSectors + rootDirSectors,
      clusters,
    };
  }
  throw new RangeError(`a FAT16 volume cannot have ${sectors} sectors (${((sectors * SECTOR) / 2 ** 20).toFixed(1)} MiB)`);
}

// ---------------------------------------------------------------------------------------------------------
// Names

const SFN_VALID = /^[A-Z0-9!#$%&'()\-@^_`{}~]$/;
const LFN_INVALID = /[\x00-\x1f"*/:<>?\\|\x7f]/;

/** Throws when `name` cannot be a FAT file name. */
export function checkFileName(name: string): void {
  if (name.length === 0 || name.length > 255) throw new RangeError(`invalid FAT file name length: ${JSON.stringify(name)}`);
  if (name === "." || name === ".." || LFN_INVALID.test(name) || /[. ]$/.test(name)) {
    throw new RangeError(`invalid FAT file name: ${JSON.stringify(name)}`);
  }
}

/** The 11-byte 8.3 form when `name` already is a plain upper-case 8.3 name, else undefined. */
export function exactShortName(name: string): string | undefined {
  const m = /^([^.]{1,8})(?:\.([^.]{1,3}))?$/.exec(name);
  if (!m) return undefined;
  const base = m[1]!;
  const ext = m[2] ?? "";
  for (const c of base + ext) if (!SFN_VALID.test(c)) return undefined;
  return base.padEnd(8, " ") + ext.padEnd(3, " ");
}

function sfnChars(s: string): string {
  let out = "";
  for (const c of s.toUpperCase()) {
    if (c === " " || c === ".") continue;
    out += SFN_VALID.test(c) ? c : "_";
  }
  return out;
}

/** A generated short name `BASE~N.EXT` (11 bytes, space padded) for a name that needs a long-name entry. */
export function generatedShortName(name: string, n: number): string {
  const dot = name.lastIndexOf(".");
  const hasExt = dot > 0;
  const base = sfnChars(hasExt ? name.slice(0, dot) : name) || "FILE";
  const ext = hasExt ? sfnChars(name.slice(dot + 1)).slice(0, 3) : "";
  const tail = `~${n}`;
  return (base.slice(0, 8 - tail.length) + tail).padEnd(8, " ") + ext.padEnd(3, " ");
}

/** The VFAT checksum of an 11-byte short name, stored in each long-name entry. */
export function lfnChecksum(shortName: string): number {
  let sum = 0;
  for (let i = 0; i < 11; i++) sum = ((sum & 1 ? 0x80 : 0) + (sum >> 1) + shortName.charCodeAt(i)) & 0xff;
  return sum;
}

/** VFAT long-name directory entries for `name`, in on-disk order (last piece first). */
export function lfnEntries(name: string, shortName: string): Uint8Array[] {
  const units: number[] = [];
  for (let i = 0; i < name.length; i++) units.push(name.charCodeAt(i));
  const pieces = Math.ceil(units.length / 13);
  // Pad: one 0x0000 terminator when there is room, then 0xFFFF.
  if (units.length % 13 !== 0) units.push(0x0000);
  while (units.length < pieces * 13) units.push(0xffff);
  const sum = lfnChecksum(shortName);
  const entries: Uint8Array[] = [];
  for (let p = pieces; p >= 1; p--) {
    const e = new Uint8Array(32);
    const dv = new DataView(e.buffer);
    e[0] = p | (p === pieces ? 0x40 : 0);
    e[11] = 0x0f; // attribute: long-name entry
    e[12] = 0;
    e[13] = sum;
    const chunk = units.slice((p - 1) * 13, p * 13);
    const offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
    offsets.forEach((off, i) => dv.setUint16(off, chunk[i]!, true));
    entries.push(e);
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------------------
// Volume

export interface Fat16VolumeOptions {
  /** Partition size in sectors. */
  sectors: number;
  /** Sectors before the partition on the disk (the BPB's hidden sectors field). */
  hiddenSectors: number;
  /** Volume label, at most 11 characters valid in short names (upper case). */
  label: string;
  files: FatFile[];
  /** Volume serial number. */
  volumeId: number;
  /** Timestamp written into every directory entry (fixed so that equal input gives an equal image). */
  timestamp: Date;
}

function fatDate(d: Date): number {
  return (((d.getUTCFullYear() - 1980) & 0x7f) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate();
}
function fatTime(d: Date): number {
  return (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | Math.floor(d.getUTCSeconds() / 2);
}

function labelField(label: string): string {
  if (label.length === 0 || label.length > 11 || ![...label].every((c) => c === " " || SFN_VALID.test(c))) {
    throw new RangeError(`invalid FAT volume label: ${JSON.stringify(label)} (1-11 upper-case characters)`);
  }
  return label.padEnd(11, " ");
}

function putAscii(buf: Uint8Array, off: number, s: string): void {
  for (let i = 0; i < s.length; i++) buf[off + i] = s.charCodeAt(i);
}

function dirEntry(name11: string, attr: number, cluster: number, size: number, ts: Date): Uint8Array {
  const e = new Uint8Array(32);
  const dv = new DataView(e.buffer);
  putAscii(e, 0, name11);
  e[11] = attr;
  dv.setUint16(14, fatTime(ts), true); // creation time
  dv.setUint16(16, fatDate(ts), true); // creation date
  dv.setUint16(18, fatDate(ts), true); // last access date
  dv.setUint16(22, fatTime(ts), true); // write time
  dv.setUint16(24, fatDate(ts), true); // write date
  dv.setUint16(26, cluster, true);
  dv.setUint32(28, size, true);
  return e;
}

/** A complete FAT16 partition image (`sectors` * 512 bytes). */
export function buildFat16Volume(o: Fat16VolumeOptions): Uint8Array {
  const g = fat16Geometry(o.sectors);
  const label = labelField(o.label);
  const vol = new Uint8Array(o.sectors * SECTOR);
  const dv = new DataView(vol.buffer);

  // Boot sector with the FAT16 BPB and extended boot record.
  vol.set([0xeb, 0x3c, 0x90], 0);
  putAscii(vol, 3, "HAVM    ");
  dv.setUint16(11, SECTOR, true);
  vol[13] = g.sectorsPerCluster;
  dv.setUint16(14, g.reservedSectors, true);
  vol[16] = NUM_FATS;
  dv.setUint16(17, ROOT_ENTRIES, true);
  dv.setUint16(19, o.sectors < 0x10000 ? o.sectors : 0, true);
  vol[21] = MEDIA;
  dv.setUint16(22, g.fatSectors, true);
  dv.setUint16(24, 63, true); // sectors per track (nominal; LBA is what counts)
  dv.setUint16(26, 255, true); // heads
  dv.setUint32(28, o.hiddenSectors, true);
  dv.setUint32(32, o.sectors < 0x10000 ? 0 : o.sectors, true);
  vol[36] = 0x80; // drive number
  vol[38] = 0x29; // extended boot signature: the next three fields are valid
  dv.setUint32(39, o.volumeId >>> 0, true);
  putAscii(vol, 43, label);
  putAscii(vol, 54, "FAT16   ");
  // Boot code: not bootable; halt forever if some firmware tries.
  vol.set([0xfa, 0xf4, 0xeb, 0xfd], 62);
  vol[510] = 0x55;
  vol[511] = 0xaa;

  // Root directory: the volume-label entry first, then each file (long-name entries + short entry).
  const rootOff = (g.reservedSectors + NUM_FATS * g.fatSectors) * SECTOR;
  const entries: Uint8Array[] = [dirEntry(label, 0x08, 0, 0, o.timestamp)];
  const fat = new Uint16Array(g.clusters + 2);
  fat[0] = 0xff00 | MEDIA;
  fat[1] = 0xffff; // clean-shutdown and no-error bits set
  const clusterBytes = g.sectorsPerCluster * SECTOR;
  let nextCluster = 2;
  const seen = new Set<string>();
  // Exact 8.3 names are reserved up front so a generated `~N` name never collides with a later file.
  const shortNames = new Set<string>(o.files.map((f) => exactShortName(f.name)).filter((s): s is string => s !== undefined));
  for (const f of o.files) {
    checkFileName(f.name);
    const key = f.name.toUpperCase();
    if (seen.has(key)) throw new RangeError(`duplicate file name: ${JSON.stringify(f.name)}`);
    seen.add(key);
    let short = exactShortName(f.name);
    if (short === undefined) {
      let n = 1;
      do short = generatedShortName(f.name, n++);
      while (shortNames.has(short));
      entries.push(...lfnEntries(f.name, short));
    }
    shortNames.add(short);
    const count = Math.ceil(f.data.length / clusterBytes);
    if (nextCluster - 2 + count > g.clusters) throw new RangeError(`the files do not fit into a ${o.sectors}-sector FAT16 volume`);
    const first = count === 0 ? 0 : nextCluster;
    for (let i = 0; i < count; i++) {
      const c = nextCluster + i;
      fat[c] = i === count - 1 ? 0xffff : c + 1;
    }
    if (count > 0) vol.set(f.data, (g.firstDataSector + (first - 2) * g.sectorsPerCluster) * SECTOR);
    nextCluster += count;
    entries.push(dirEntry(short, 0x20, first, f.data.length, o.timestamp)); // archive attribute
  }
  if (entries.length > ROOT_ENTRIES) throw new RangeError(`too many root-directory entries (${entries.length} > ${ROOT_ENTRIES})`);
  entries.forEach((e, i) => vol.set(e, rootOff + i * 32));

  // Both FAT copies.
  const fatBytes = new Uint8Array(fat.length * 2);
  const fdv = new DataView(fatBytes.buffer);
  fat.forEach((v, i) => fdv.setUint16(i * 2, v, true));
  for (let k = 0; k < NUM_FATS; k++) vol.set(fatBytes, (g.reservedSectors + k * g.fatSectors) * SECTOR);
  return vol;
}

// ---------------------------------------------------------------------------------------------------------
// MBR

/** CHS triple for an LBA with the conventional 255 heads x 63 sectors geometry; saturates past cylinder 1023. */
export function lbaToChs(lba: number): [number, number, number] {
  const heads = 255;
  const spt = 63;
  const c = Math.floor(lba / (heads * spt));
  if (c > 1023) return [0xfe, 0xff, 0xff];
  const h = Math.floor(lba / spt) % heads;
  const s = (lba % spt) + 1;
  return [h, ((c >> 2) & 0xc0) | s, c & 0xff];
}

export interface MbrPartition {
  type: number;
  startLba: number;
  sectors: number;
  bootable?: boolean;
}

/** A 512-byte MBR with up to four primary partitions and the 0x55AA signature. */
export function buildMbr(partitions: MbrPartition[], diskSignature: number): Uint8Array {
  if (partitions.length > 4) throw new RangeError("an MBR holds at most four primary partitions");
  const mbr = new Uint8Array(SECTOR);
  const dv = new DataView(mbr.buffer);
  dv.setUint32(440, diskSignature >>> 0, true);
  partitions.forEach((p, i) => {
    const off = 446 + i * 16;
    mbr[off] = p.bootable ? 0x80 : 0x00;
    mbr.set(lbaToChs(p.startLba), off + 1);
    mbr[off + 4] = p.type;
    mbr.set(lbaToChs(p.startLba + p.sectors - 1), off + 5);
    dv.setUint32(off + 8, p.startLba, true);
    dv.setUint32(off + 12, p.sectors, true);
  });
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  return mbr;
}

/** A stable 32-bit number derived from content (volume serial, disk signature). */
export function stableId32(...parts: (string | Uint8Array)[]): number {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest().readUInt32LE(0);
}
