import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { conversionCommand, detectFormat, logicalSize, readImageHeader, shellQuote, type DiskFormat } from "../../src/utm/format.ts";
import { MIB, sparseRaw, tempDir } from "./fixtures.ts";

const QEMU_IMG = Bun.which("qemu-img");

describe("detectFormat on images made by qemu-img", () => {
  const dir = tempDir();
  const cases: [DiskFormat, string][] = [
    ["qcow2", "qcow2"],
    ["vmdk", "vmdk"],
    ["vhdx", "vhdx"],
    ["vdi", "vdi"],
  ];
  for (const [format, qemuName] of cases) {
    test.skipIf(!QEMU_IMG)(`${format} (needs qemu-img: Debian qemu-utils)`, () => {
      const file = join(dir, `disk.${format}`);
      const r = Bun.spawnSync([QEMU_IMG!, "create", "-q", "-f", qemuName, file, "96M"]);
      expect(r.exitCode).toBe(0);
      const header = readImageHeader(file);
      expect(detectFormat(header)).toBe(format);
      if (format === "qcow2") expect(logicalSize("qcow2", header, 0)).toBe(96 * MIB);
    });
  }

  test("a raw image (even one whose first sector is all zeros) is raw; its logical size is the file size", () => {
    const file = join(dir, "disk.img");
    sparseRaw(file, 8 * MIB, [MIB]);
    const header = readImageHeader(file);
    expect(detectFormat(header)).toBe("raw");
    expect(logicalSize("raw", header, 8 * MIB)).toBe(8 * MIB);
  });

  test("an MBR/GPT raw disk is raw", () => {
    const h = new Uint8Array(512);
    h[510] = 0x55;
    h[511] = 0xaa;
    expect(detectFormat(h)).toBe("raw");
  });
});

describe("ASIF", () => {
  // Header layout (big-endian): "shdw", version, header size, flags, two directory offsets, UUID,
  // sector count at 0x30, max sector count at 0x38, chunk size at 0x40, sector size at 0x44.
  const asifHeader = (sectors: bigint, sectorSize: number) => {
    const h = new Uint8Array(512);
    h.set([0x73, 0x68, 0x64, 0x77], 0);
    const v = new DataView(h.buffer);
    v.setUint32(4, 1);
    v.setUint32(8, 0x200);
    v.setBigUint64(0x30, sectors);
    v.setBigUint64(0x38, sectors * 4n);
    v.setUint32(0x40, 0x100000);
    v.setUint16(0x44, sectorSize);
    return h;
  };
  test("detected by its 'shdw' magic; logical size = sectors x sector size", () => {
    const h = asifHeader(67108864n, 512); // 32 GiB
    expect(detectFormat(h)).toBe("asif");
    expect(logicalSize("asif", h, 4 * MIB)).toBe(32 * 1024 * MIB);
  });
});

test("conversion commands quote paths with spaces", () => {
  expect(conversionCommand("qcow2", "/a/Home Assistant.utm/Data/disk.qcow2", "/a/disk.img")).toBe(
    "qemu-img convert -p -f qcow2 -O raw '/a/Home Assistant.utm/Data/disk.qcow2' /a/disk.img",
  );
  expect(conversionCommand("asif", "/x/d.img", "/x/d-raw.img")).toBe("diskutil image convert --format RAW /x/d.img /x/d-raw.img");
  expect(shellQuote("it's")).toBe(`'it'\\''s'`);
});
