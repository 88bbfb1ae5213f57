import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, openSync, writeSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { preparePersistentDisk } from "../../src/disk/persistent.ts";
import { ensureNativeLibrary } from "../support/native.ts";
import { sha256File, writeShapedImage } from "../image/fixtures/shaped-image.ts";

const MIB = 1024 * 1024;
let work: string;
let image: string;
let imageSize: number;

beforeAll(() => {
  ensureNativeLibrary();
  work = mkdtempSync(join(tmpdir(), "havm-persist-"));
  image = join(work, "haos.img");
  imageSize = writeShapedImage(image, 48).size;
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function prefixEquals(disk: string, img: string): Promise<boolean> {
  const a = await Bun.file(disk).slice(0, statSync(img).size).bytes();
  const b = await Bun.file(img).bytes();
  return Buffer.compare(a, b) === 0;
}

describe("preparePersistentDisk", () => {
  test("creates the disk from the image, grown (sparse) to disk_size; a later call leaves it alone", async () => {
    const diskPath = join(work, "vm1", "haos.img");
    const r = await preparePersistentDisk({ imagePath: image, diskPath, diskSizeBytes: 256 * MIB });
    expect(r).toEqual({ created: true, sizeBytes: 256 * MIB });
    expect(statSync(diskPath).size).toBe(256 * MIB);
    expect(await prefixEquals(diskPath, image)).toBe(true);
    expect(statSync(diskPath).blocks * 512).toBeLessThan(imageSize); // sparse, not 256 MiB
    // the guest writes to it; a second prepare must not replace it
    const fd = openSync(diskPath, "r+");
    writeSync(fd, "written by the guest", 100 * MIB);
    closeSync(fd);
    const before = await sha256File(diskPath);
    const again = await preparePersistentDisk({ imagePath: image, diskPath, diskSizeBytes: 256 * MIB });
    expect(again).toEqual({ created: false, sizeBytes: 256 * MIB });
    expect(await sha256File(diskPath)).toBe(before);
  });

  test("an existing disk is never replaced by the image", async () => {
    const diskPath = join(work, "vm2", "haos.img");
    mkdirSync(join(work, "vm2"));
    const guestData = Buffer.alloc(128 * MIB);
    guestData.write("guest data that must survive", 1000);
    writeFileSync(diskPath, guestData);
    const r = await preparePersistentDisk({ imagePath: image, diskPath, diskSizeBytes: 128 * MIB });
    expect(r.created).toBe(false);
    expect((await Bun.file(diskPath).slice(1000, 1028).text())).toBe("guest data that must survive");
  });

  test("a larger disk_size grows an existing disk; a smaller one is refused", async () => {
    const diskPath = join(work, "vm3", "haos.img");
    await preparePersistentDisk({ imagePath: image, diskPath, diskSizeBytes: 128 * MIB });
    const grown = await preparePersistentDisk({ imagePath: image, diskPath, diskSizeBytes: 512 * MIB });
    expect(grown).toEqual({ created: false, grownFrom: 128 * MIB, sizeBytes: 512 * MIB });
    expect(statSync(diskPath).size).toBe(512 * MIB);
    expect(await prefixEquals(diskPath, image)).toBe(true);
    const err = await preparePersistentDisk({ imagePath: image, diskPath, diskSizeBytes: 256 * MIB }).catch((e) => e);
    expect(err.code).toBe("disk.shrink");
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain("256 MiB");
    expect(err.message).toContain("512 MiB");
    expect(err.hint).toContain("512 MiB");
    expect(statSync(diskPath).size).toBe(512 * MIB);
  });

  test("a disk_size smaller than the image is refused before anything is written", async () => {
    const diskPath = join(work, "vm4", "haos.img");
    const err = await preparePersistentDisk({ imagePath: image, diskPath, diskSizeBytes: 16 * MIB }).catch((e) => e);
    expect(err.code).toBe("disk.shrink");
    expect(existsSync(diskPath)).toBe(false);
  });

  test.skipIf(process.getuid?.() !== 0)("a full disk is a clear error with the numbers and leaves no partial file (tmpfs; root)", async () => {
    const mnt = mkdtempSync(join(tmpdir(), "havm-full-"));
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt]).exitCode).toBe(0);
    try {
      const diskPath = join(mnt, "vm", "haos.img");
      const err = await preparePersistentDisk({ imagePath: image, diskPath, diskSizeBytes: 64 * MIB }).catch((e) => e);
      expect(err.code).toBe("disk.nospace");
      expect(err.message).toMatch(/needs [\d.]+ MiB, [\d.]+ (MiB|KiB) is free/);
      expect(readdirSync(join(mnt, "vm"))).toEqual([]);
    } finally {
      Bun.spawnSync(["umount", mnt]);
      rmSync(mnt, { recursive: true, force: true });
    }
  });
});
