// kill -9 at random moments of preparation (download, decode, rename, copy, grow), then a clean run must
// succeed and produce the same disk as if nothing had happened.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureNativeLibrary } from "../support/native.ts";
import { compressXz, sha256File, writeShapedImage } from "./fixtures/shaped-image.ts";
import { startReleaseServer } from "./fixtures/server.ts";

const MIB = 1024 * 1024;
const DISK = 128 * MIB;
const DRIVER = join(import.meta.dir, "fixtures", "prepare-driver.ts");
let work: string;
let img: string;
let xz: string;

beforeAll(() => {
  ensureNativeLibrary();
  work = mkdtempSync(join(tmpdir(), "havm-kill9-"));
  img = join(work, "src.img");
  writeShapedImage(img, 64);
  xz = join(work, "src.img.xz");
  compressXz(img, xz, true);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(home: string, haos: Record<string, unknown>) {
  return Bun.spawn(["bun", DRIVER, JSON.stringify({ home, haos, diskSize: DISK })], { stdout: "pipe", stderr: "pipe" });
}

test("kill -9 at random points of preparation, then a clean run gives a byte-identical disk", async () => {
  const xzSha = await sha256File(xz);
  const server = startReleaseServer({ stable: { "generic-x86-64": "17.1" } }, [{ version: "17.1", board: "generic-x86-64", file: xz, digest: `sha256:${xzSha}` }], {
    throttleMs: 4,
  });
  try {
    // Expected disk: the image, then zeros up to DISK.
    const h = new Bun.CryptoHasher("sha256");
    h.update(await Bun.file(img).bytes());
    h.update(new Uint8Array(DISK - statSync(img).size));
    const expected = h.digest("hex");

    // How long an uninterrupted run takes, to spread the kills over it.
    const ref = mkdtempSync(join(work, "ref-"));
    const t0 = performance.now();
    const p0 = run(ref, server.config());
    expect(await p0.exited).toBe(0);
    const full = performance.now() - t0;
    expect(await sha256File(join(ref, ".local/share/havm/vm/haos.img"))).toBe(expected);

    const home = mkdtempSync(join(work, "home-"));
    const kills: number[] = [];
    for (let i = 0; i < 8; i++) {
      const delay = Math.random() * full * 1.1;
      const p = run(home, server.config());
      await Bun.sleep(delay);
      p.kill("SIGKILL");
      const code = await p.exited;
      kills.push(Math.round(delay));
      if (code !== 0 && p.signalCode !== "SIGKILL") throw new Error(`driver failed on its own: ${await new Response(p.stderr).text()}`);
    }
    const last = run(home, server.config());
    const code = await last.exited;
    if (code !== 0) throw new Error(`clean run after kills ${kills.join(",")} ms failed: ${await new Response(last.stderr).text()}`);
    const disk = join(home, ".local/share/havm/vm/haos.img");
    expect(statSync(disk).size).toBe(DISK);
    expect(await sha256File(disk)).toBe(expected);
    // Nothing half-done is left behind.
    const cache = join(home, ".cache/havm");
    expect(readdirSync(cache).sort()).toEqual(["haos_generic-x86-64-17.1.img", "haos_generic-x86-64-17.1.img.xz", "haos_generic-x86-64-17.1.img.xz.sha256"]);
    expect(readdirSync(join(home, ".local/share/havm/vm"))).toEqual(["haos.img"]);
    expect(existsSync(join(cache, "haos_generic-x86-64-17.1.img.xz.part"))).toBe(false);
  } finally {
    server.stop();
  }
}, 120_000);
