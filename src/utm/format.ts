// Disk image formats, told apart by content (never by file name: UTM names Apple-backend disks
// "<UUID>.img" whether they are raw or ASIF, and QEMU-backend disks "*.qcow2" even after a user
// swapped in a raw file). Pure parsing of a header; `readImageHeader` is the only I/O here.
//
// Decision (issue 7): raw is copied as is. qcow2, VMDK, VHDX and VDI are converted to raw with
// `qemu-img convert -O raw` when qemu-img is on PATH (Debian qemu-utils; Homebrew qemu), else refused
// with that command in the hint. ASIF (Apple's sparse format, macOS 26) is always refused: qemu-img
// cannot read it; the hint names `diskutil image convert`.
import { closeSync, openSync, readSync } from "node:fs";

export type DiskFormat = "raw" | "qcow2" | "asif" | "vmdk" | "vhdx" | "vdi";

/** Bytes to read from the start of an image: enough for every header below. */
export const HEADER_BYTES = 512;

const ascii = (bytes: Uint8Array, offset: number, length: number): string =>
  String.fromCharCode(...bytes.subarray(offset, offset + length));

/** The image format of a file whose first bytes are `header`. No magic means raw. */
export function detectFormat(header: Uint8Array): DiskFormat {
  // qcow2: "QFI\xfb" (QEMU docs/interop/qcow2.txt).
  if (header.length >= 4 && header[0] === 0x51 && header[1] === 0x46 && header[2] === 0x49 && header[3] === 0xfb) return "qcow2";
  // ASIF: "shdw" then big-endian fields (reverse-engineered layout: sector count at 0x30, sector size at 0x44).
  if (ascii(header, 0, 4) === "shdw") return "asif";
  // VMDK sparse extent: "KDMV".
  if (ascii(header, 0, 4) === "KDMV") return "vmdk";
  // VHDX file type identifier.
  if (ascii(header, 0, 8) === "vhdxfile") return "vhdx";
  // VirtualBox VDI: signature 0xbeda107f (little-endian) at 0x40.
  if (header.length >= 0x44 && header[0x40] === 0x7f && header[0x41] === 0x10 && header[0x42] === 0xda && header[0x43] === 0xbe) return "vdi";
  return "raw";
}

/** The disk size the guest sees, from the header where the format records it; else the file size. */
export function logicalSize(format: DiskFormat, header: Uint8Array, fileSize: number): number {
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  if (format === "qcow2" && header.length >= 32) return Number(view.getBigUint64(24, false));
  if (format === "asif" && header.length >= 0x46) {
    const sectors = Number(view.getBigUint64(0x30, false));
    const sectorSize = view.getUint16(0x44, false) || 512;
    return sectors * sectorSize;
  }
  return fileSize;
}

/** Formats qemu-img can turn into raw. */
export function qemuImgCanConvert(format: DiskFormat): boolean {
  return format === "qcow2" || format === "vmdk" || format === "vhdx" || format === "vdi";
}

/** The command a user can run to get a raw copy of `src` (shell-quoted), for hints. */
export function conversionCommand(format: DiskFormat, src: string, dst: string): string {
  if (format === "asif") return `diskutil image convert --format RAW ${shellQuote(src)} ${shellQuote(dst)}`;
  return `qemu-img convert -p -f ${format} -O raw ${shellQuote(src)} ${shellQuote(dst)}`;
}

export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/** The first HEADER_BYTES of a file (fewer if the file is shorter). */
export function readImageHeader(path: string): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const buf = new Uint8Array(HEADER_BYTES);
    const n = readSync(fd, buf, 0, HEADER_BYTES, 0);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}
