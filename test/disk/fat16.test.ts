import { describe, expect, test, afterAll } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  buildFat16Volume,
  buildMbr,
  exactShortName,
  fat16Geometry,
  FAT16_MAX_CLUSTERS,
  FAT16_MIN_CLUSTERS,
  generatedShortName,
  lbaToChs,
  lfnChecksum,
  lfnEntries,
} from "../../src/disk/fat16.ts";

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "havm-fat16-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(argv: string[]): { code: number; out: string } {
  const r = Bun.spawnSync(argv, { env: { ...process.env, MTOOLS_SKIP_CHECK: "1", LC_ALL: "C" }, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString() + r.stderr.toString() };
}

describe("fat16Geometry", () => {
  // sizes in sectors of the partition -> expected sectors per cluster (smallest that keeps FAT16)
  const table: [number, number][] = [
    [(3 * MiB) / 512, 1],
    [(7 * MiB) / 512, 1],
    [(31 * MiB) / 512, 1],
    [(40 * MiB) / 512, 2],
    [(100 * MiB) / 512, 4],
    [(255 * MiB) / 512, 8],
    [(1000 * MiB) / 512, 32],
    [(2000 * MiB) / 512, 64],
  ];
  test.each(table)("%i sectors -> %i sectors per cluster, cluster count inside FAT16", (sectors, spc) => {
    const g = fat16Geometry(sectors);
    expect(g.sectorsPerCluster).toBe(spc);
    expect(g.clusters).toBeGreaterThanOrEqual(FAT16_MIN_CLUSTERS);
    expect(g.clusters).toBeLessThanOrEqual(FAT16_MAX_CLUSTERS);
    // The FAT covers every cluster plus the two reserved entries, and not a whole sector more.
    expect(g.fatSectors * 256).toBeGreaterThanOrEqual(g.clusters + 2);
    expect((g.fatSectors - 1) * 256).toBeLessThan(g.clusters + 2);
    expect(g.firstDataSector + g.clusters * g.sectorsPerCluster).toBeLessThanOrEqual(sectors);
  });
  test("too small or too large for FAT16 throws", () => {
    expect(() => fat16Geometry((1 * MiB) / 512)).toThrow(RangeError);
    expect(() => fat16Geometry((4096 * MiB) / 512)).toThrow(RangeError);
  });
});

describe("names", () => {
  test.each([
    ["README.TXT", "README  TXT"],
    ["CONFIG", "CONFIG     "],
    ["A", "A          "],
    ["readme.txt", undefined],
    ["authorized_keys", undefined],
    ["TOOLONGNAME", undefined],
    ["A.B.C", undefined],
    ["FILE.HTML", undefined],
  ] as const)("exactShortName(%p) = %p", (name, expected) => {
    expect(exactShortName(name)).toBe(expected);
  });
  test.each([
    ["authorized_keys", 1, "AUTHOR~1   "],
    ["authorized_keys", 2, "AUTHOR~2   "],
    ["timesyncd.conf", 1, "TIMESY~1CON"],
    ["my file+x.json", 1, "MYFILE~1JSO"],
    [".hidden", 1, "HIDDEN~1   "],
  ] as const)("generatedShortName(%p, %p) = %p", (name, n, expected) => {
    expect(generatedShortName(name, n)).toBe(expected);
  });
  test("LFN checksum and entries for authorized_keys", () => {
    const short = "AUTHOR~1   ";
    // Checksum by the spec's rotate-right-and-add definition, computed independently here.
    let sum = 0;
    for (const c of short) sum = ((((sum & 1) << 7) | (sum >> 1)) + c.charCodeAt(0)) & 0xff;
    expect(lfnChecksum(short)).toBe(sum);
    const entries = lfnEntries("authorized_keys", short);
    expect(entries.length).toBe(2); // 15 UTF-16 units -> two 13-unit pieces
    expect(entries[0]![0]).toBe(0x42); // last piece first, with the 0x40 flag
    expect(entries[1]![0]).toBe(0x01);
    for (const e of entries) {
      expect(e[11]).toBe(0x0f);
      expect(e[13]).toBe(lfnChecksum(short));
    }
    // Second piece holds "ys", then the 0x0000 terminator, then 0xFFFF padding.
    const dv = new DataView(entries[0]!.buffer);
    expect(String.fromCharCode(dv.getUint16(1, true), dv.getUint16(3, true))).toBe("ys");
    expect(dv.getUint16(5, true)).toBe(0);
    expect(dv.getUint16(7, true)).toBe(0xffff);
  });
});

describe("MBR", () => {
  test.each([
    [0, [0, 1, 0]],
    [62, [0, 63, 0]],
    [63, [1, 1, 0]],
    [2048, [32, 33, 0]],
    [16065, [0, 1, 1]],
    [1024 * 16065, [0xfe, 0xff, 0xff]],
  ] as const)("lbaToChs(%i)", (lba, chs) => {
    expect(lbaToChs(lba)).toEqual([...chs]);
  });
  test("partition entry and signature", () => {
    const mbr = buildMbr([{ type: 0x06, startLba: 2048, sectors: 14336 }], 0x12345678);
    const dv = new DataView(mbr.buffer);
    expect(mbr[446 + 4]).toBe(0x06);
    expect(dv.getUint32(446 + 8, true)).toBe(2048);
    expect(dv.getUint32(446 + 12, true)).toBe(14336);
    expect(dv.getUint32(440, true)).toBe(0x12345678);
    expect([mbr[510], mbr[511]]).toEqual([0x55, 0xaa]);
  });
});

describe("volume read back by mtools and fsck.fat", () => {
  test("long names, an exact 8.3 name, an empty file and a multi-cluster file", () => {
    const big = new Uint8Array(100_000).map((_, i) => (i * 7 + 3) & 0xff);
    const files = [
      { name: "authorized_keys", data: new TextEncoder().encode("ssh-ed25519 AAAA test\n") },
      { name: "README.TXT", data: new TextEncoder().encode("hello\n") },
      { name: "empty.conf", data: new Uint8Array(0) },
      { name: "a rather long file name with spaces.bin", data: big },
      { name: "AUTHOR~1", data: new TextEncoder().encode("clash\n") }, // forces the generated name to ~2
    ];
    const vol = buildFat16Volume({ sectors: (20 * MiB) / 512, hiddenSectors: 0, label: "TESTVOL", files, volumeId: 0xdeadbeef, timestamp: new Date(Date.UTC(2024, 5, 7, 8, 9, 10)) });
    const img = join(dir, "vol.img");
    writeFileSync(img, vol);

    const fsck = run(["fsck.fat", "-n", "-v", img]);
    expect(fsck.code).toBe(0);
    expect(fsck.out).toContain("16 bit entries");
    expect(fsck.out).toContain(`${files.length + 1} files`); // fsck counts the volume label entry too

    const mdir = run(["mdir", "-a", "-i", img, "::"]);
    expect(mdir.code).toBe(0);
    expect(mdir.out).toContain("Volume in drive : is TESTVOL");
    expect(mdir.out).toMatch(/AUTHOR~2\s+22 2024-06-07\s+8:09\s+authorized_keys/);
    expect(mdir.out).toContain("a rather long file name with spaces.bin");
    expect(mdir.out).toMatch(/EMPTY~1\s+CON\s+0 2024-06-07\s+8:09\s+empty.conf/);

    expect(run(["mtype", "-i", img, "::authorized_keys"]).out).toBe("ssh-ed25519 AAAA test\n");
    expect(run(["mtype", "-i", img, "::AUTHOR~1"]).out).toBe("clash\n");
    const out = join(dir, "big.out");
    expect(run(["mcopy", "-n", "-i", img, "::a rather long file name with spaces.bin", out]).code).toBe(0);
    expect(readFileSync(out).equals(Buffer.from(big))).toBe(true);
  });

  test("refuses duplicate names and files that do not fit", () => {
    const base = { sectors: (3 * MiB) / 512, hiddenSectors: 0, label: "X", volumeId: 1, timestamp: new Date(0) };
    expect(() => buildFat16Volume({ ...base, files: [{ name: "a", data: new Uint8Array(1) }, { name: "A", data: new Uint8Array(1) }] })).toThrow(/duplicate/);
    expect(() => buildFat16Volume({ ...base, files: [{ name: "big", data: new Uint8Array(4 * MiB) }] })).toThrow(/do not fit/);
    expect(() => buildFat16Volume({ ...base, files: [{ name: "a/b", data: new Uint8Array(1) }] })).toThrow(/invalid/);
    expect(() => buildFat16Volume({ ...base, label: "lower", files: [] })).toThrow(/label/);
  });
});
