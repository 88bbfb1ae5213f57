import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyFileSparse } from "../../src/disk/copy.ts";
import { ensureNativeLibrary } from "../support/native.ts";
import { sha256File, writeShapedImage } from "../image/fixtures/shaped-image.ts";

let work: string;
let src: string;
let dataBytes: number;

beforeAll(() => {
  ensureNativeLibrary();
  work = mkdtempSync(join(tmpdir(), "havm-copy-"));
  src = join(work, "src.img");
  dataBytes = writeShapedImage(src, 64).dataBytes;
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

function fsType(dir: string): string {
  return Bun.spawnSync(["stat", "-f", "-c", "%T", dir]).stdout.toString().trim();
}

describe("copyFileSparse", () => {
  test("sparse copy where the filesystem cannot clone: same bytes, holes kept, progress reported", async () => {
    const dst = join(work, "dst.img");
    const seen: Array<[number, number]> = [];
    const r = await copyFileSparse(src, dst, { onProgress: (d, t) => seen.push([d, t]) });
    if (fsType(work) === "ext2/ext3") expect(r.method).toBe("sparse"); // ext4 has no reflink
    expect(await sha256File(dst)).toBe(await sha256File(src));
    expect(statSync(dst).size).toBe(statSync(src).size);
    const allocated = statSync(dst).blocks * 512;
    expect(Math.abs(allocated - dataBytes) / dataBytes).toBeLessThan(0.05);
    expect(seen.at(-1)).toEqual([statSync(src).size, statSync(src).size]);
    expect(readdirSync(work).filter((n) => n.endsWith(".tmp"))).toEqual([]);
  });

  test("zero blocks written as data in the source become holes in the copy", async () => {
    const dense = join(work, "dense.img");
    const buf = Buffer.alloc(8 * 1024 * 1024);
    buf.fill(7, 0, 4096);
    writeFileSync(dense, buf); // fully allocated, almost all zeros
    const dst = join(work, "dense-copy.img");
    await copyFileSparse(dense, dst);
    expect(Buffer.compare(await Bun.file(dst).bytes(), buf)).toBe(0);
    expect(statSync(dst).blocks * 512).toBeLessThanOrEqual(64 * 1024);
  });

  test("refuses an existing destination unless overwrite, and leaves it untouched", async () => {
    const dst = join(work, "exists.img");
    writeFileSync(dst, "keep me");
    const err = await copyFileSparse(src, dst).catch((e) => e);
    expect(err.code).toBe("copy.exists");
    expect(await Bun.file(dst).text()).toBe("keep me");
    await copyFileSparse(src, dst, { overwrite: true });
    expect(statSync(dst).size).toBe(statSync(src).size);
  });

  test("a missing source is an error and leaves no temp file", async () => {
    const dir = join(work, "missing");
    mkdirSync(dir);
    const err = await copyFileSparse(join(work, "nope.img"), join(dir, "x.img")).catch((e) => e);
    expect(err.code).toBe("ENOENT");
    expect(readdirSync(dir)).toEqual([]);
  });
});

// Clone needs a reflink filesystem: make one on a loop device (root with mount rights only).
const canLoop = process.getuid?.() === 0 && existsSync("/dev/loop-control") && canMount();
function canMount(): boolean {
  const dir = mkdtempSync(join(tmpdir(), "havm-mountprobe-"));
  try {
    if (Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir], { stderr: "ignore" }).exitCode !== 0) return false;
    Bun.spawnSync(["umount", dir]);
    return true;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
/** The kernel knows the filesystem (loading its module when it can). */
function kernelHas(fs: string): boolean {
  const listed = () => readFileSync("/proc/filesystems", "utf8").split(/\s+/).includes(fs);
  if (listed()) return true;
  Bun.spawnSync(["modprobe", "-q", fs], { stderr: "ignore" });
  return listed();
}
function tool(name: string): boolean {
  return Bun.spawnSync(["sh", "-c", `command -v ${name}`]).exitCode === 0;
}

for (const [fs, mkfs] of [
  ["xfs", ["mkfs.xfs", "-q", "-m", "reflink=1"]],
  ["btrfs", ["mkfs.btrfs", "-q"]],
] as const) {
  const skip = !canLoop || !tool(mkfs[0]) || !kernelHas(fs);
  test.skipIf(skip)(`clone on ${fs} (loop mount; needs root and ${mkfs[0]})`, async () => {
    const dir = mkdtempSync(join(tmpdir(), `havm-${fs}-`));
    const imgFile = join(dir, "fs.img");
    const mnt = join(dir, "mnt");
    mkdirSync(mnt);
    writeFileSync(imgFile, "");
    Bun.spawnSync(["truncate", "-s", "400M", imgFile]);
    expect(Bun.spawnSync([...mkfs, imgFile]).exitCode).toBe(0);
    const m = Bun.spawnSync(["mount", "-o", "loop", imgFile, mnt], { stderr: "pipe" });
    if (m.exitCode !== 0) rmSync(dir, { recursive: true, force: true });
    expect(m.stderr.toString()).toBe(""); // root could mount tmpfs, so a loop mount failing is a real problem
    expect(m.exitCode).toBe(0);
    try {
      const a = join(mnt, "a.img");
      expect((await copyFileSparse(src, a)).method).toBe("sparse"); // a different filesystem: no clone
      const b = join(mnt, "b.img");
      const r = await copyFileSparse(a, b);
      expect(r.method).toBe("clone");
      expect(await sha256File(b)).toBe(await sha256File(src));
      const frag = Bun.spawnSync(["filefrag", "-v", b]).stdout.toString();
      if (tool("filefrag")) expect(frag).toContain("shared");
    } finally {
      Bun.spawnSync(["umount", mnt]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
