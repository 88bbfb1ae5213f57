import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cleanupCache, claimPartial, isPidAlive, removeStaleTemps, tempOwnerPid } from "../../src/image/cache.ts";
import { tempPathFor } from "../../src/util/fs.ts";

let work: string;
let live: ReturnType<typeof Bun.spawn>;
let deadPid: number;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "havm-cache-"));
  live = Bun.spawn(["sleep", "60"]);
  const gone = Bun.spawn(["true"]);
  await gone.exited;
  deadPid = gone.pid;
});
afterAll(() => {
  live.kill();
  rmSync(work, { recursive: true, force: true });
});

describe("cache", () => {
  test("temp names carry the writer's pid", () => {
    const t = tempPathFor(join(work, "haos_generic-x86-64-17.1.img"));
    expect(tempOwnerPid(t.split("/").at(-1)!)).toBe(process.pid);
    expect(tempOwnerPid("haos_generic-x86-64-17.1.img")).toBeUndefined();
    expect(isPidAlive(process.pid)).toBe(true);
    expect(isPidAlive(deadPid)).toBe(false);
  });

  test("cleanup removes the cache, reports freed bytes, keeps files a live havm writes, never touches VM data", () => {
    const cache = join(work, "cache1");
    const vm = join(work, "vm");
    mkdirSync(cache);
    mkdirSync(vm);
    writeFileSync(join(vm, "haos.img"), Buffer.alloc(4096, 1));
    writeFileSync(join(cache, "haos_generic-x86-64-17.0.img.xz"), Buffer.alloc(100_000, 1));
    writeFileSync(join(cache, "haos_generic-x86-64-17.0.img"), Buffer.alloc(200_000, 1));
    // an abandoned partial download (writer dead) and a stale temp
    writeFileSync(join(cache, "haos_generic-x86-64-16.0.img.xz.part"), Buffer.alloc(5000, 1));
    writeFileSync(join(cache, "haos_generic-x86-64-16.0.img.xz.part.pid"), `${deadPid}\n`);
    writeFileSync(join(cache, `.haos_generic-x86-64-16.0.img.${deadPid}.0badc0de.tmp`), Buffer.alloc(5000, 1));
    // a download in progress by a live process
    writeFileSync(join(cache, "haos_generic-x86-64-17.1.img.xz.part"), Buffer.alloc(5000, 1));
    writeFileSync(join(cache, "haos_generic-x86-64-17.1.img.xz.part.pid"), `${live.pid}\n`);
    writeFileSync(join(cache, `.haos_generic-x86-64-17.1.img.${live.pid}.12345678.tmp`), Buffer.alloc(5000, 1));

    const r = cleanupCache(cache);
    expect(r.busy.map((b) => b.file).sort()).toEqual([`.haos_generic-x86-64-17.1.img.${live.pid}.12345678.tmp`, "haos_generic-x86-64-17.1.img.xz.part"]);
    expect(r.busy.every((b) => b.pid === live.pid)).toBe(true);
    expect(readdirSync(cache).sort()).toEqual([
      `.haos_generic-x86-64-17.1.img.${live.pid}.12345678.tmp`,
      "haos_generic-x86-64-17.1.img.xz.part",
      "haos_generic-x86-64-17.1.img.xz.part.pid",
    ]);
    expect(r.removed.length).toBe(5);
    expect(r.freedBytes).toBeGreaterThanOrEqual(100_000 + 200_000 + 5000 + 5000);
    expect(existsSync(join(vm, "haos.img"))).toBe(true);
  });

  test("cleanup of a missing cache frees nothing", () => {
    expect(cleanupCache(join(work, "nope"))).toEqual({ freedBytes: 0, removed: [], busy: [] });
  });

  test("claimPartial refuses a download a live process holds, takes over a dead one's", () => {
    const cache = join(work, "cache2");
    mkdirSync(cache);
    const final = join(cache, "haos_generic-x86-64-17.1.img.xz");
    writeFileSync(final + ".part.pid", `${live.pid}\n`);
    expect(() => claimPartial(final)).toThrow(/another havm/);
    writeFileSync(final + ".part.pid", `${deadPid}\n`);
    const release = claimPartial(final);
    expect(Number(Bun.file(final + ".part.pid").size)).toBeGreaterThan(0);
    release();
    expect(existsSync(final + ".part.pid")).toBe(false);
  });

  test("removeStaleTemps removes only dead writers' temps", () => {
    const dir = join(work, "cache3");
    mkdirSync(dir);
    writeFileSync(join(dir, `.a.img.${deadPid}.aaaaaaaa.tmp`), "x");
    writeFileSync(join(dir, `.b.img.${live.pid}.bbbbbbbb.tmp`), "x");
    writeFileSync(join(dir, "c.img"), "x");
    expect(removeStaleTemps(dir)).toEqual([`.a.img.${deadPid}.aaaaaaaa.tmp`]);
    expect(readdirSync(dir).sort()).toEqual([`.b.img.${live.pid}.bbbbbbbb.tmp`, "c.img"]);
  });
});
