import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const home = mkdtempSync(join(tmpdir(), "havm-cleanup-cmd-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

test("havm cleanup empties the cache, prints what it freed, keeps VM data", async () => {
  const cache = join(home, ".cache", "havm");
  const vm = join(home, ".local", "share", "havm", "vm");
  mkdirSync(cache, { recursive: true });
  mkdirSync(vm, { recursive: true });
  writeFileSync(join(cache, "haos_generic-x86-64-17.1.img.xz"), Buffer.alloc(3 * 1024 * 1024, 1));
  writeFileSync(join(vm, "haos.img"), "disk");
  const script = `import { runCommand } from "citty"; import cmd from ${JSON.stringify(resolve(import.meta.dir, "../../src/commands/cleanup.ts"))}; await runCommand(cmd, { rawArgs: [] });`;
  const p = Bun.spawnSync(["bun", "-e", script], { env: { ...process.env, HOME: home, XDG_CACHE_HOME: "", XDG_DATA_HOME: "", XDG_CONFIG_HOME: "" }, stdout: "pipe", stderr: "pipe" });
  expect(p.exitCode).toBe(0);
  expect(p.stdout.toString()).toMatch(/^Freed 3(\.0)? MiB \(1 file\) in .*\.cache\/havm\n$/);
  expect(readdirSync(cache)).toEqual([]);
  expect(existsSync(join(vm, "haos.img"))).toBe(true);

  const again = Bun.spawnSync(["bun", "-e", script], { env: { ...process.env, HOME: home, XDG_CACHE_HOME: "" }, stdout: "pipe" });
  expect(again.stdout.toString()).toStartWith("Nothing to clean");
});
