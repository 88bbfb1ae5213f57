// scripts/build.sh cross-compiles the CLI for Apple Silicon from Linux (the offline route: the darwin
// runtime from the npm package @oven/bun-darwin-aarch64 of the same version as bun).
import { expect, test } from "bun:test";
import { openSync, readSync, closeSync, statSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "../support/cli.ts";

test("build.sh release --target darwin-arm64 produces a Mach-O arm64 executable", () => {
  const r = Bun.spawnSync(["./scripts/build.sh", "release", "--target", "darwin-arm64"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  expect(r.stderr.toString()).toContain("built ");
  expect(r.exitCode).toBe(0);
  const bin = join(ROOT, ".build/release-darwin-arm64/havm");
  const header = Buffer.alloc(8);
  const fd = openSync(bin, "r");
  readSync(fd, header, 0, 8, 0);
  closeSync(fd);
  expect(header.readUInt32LE(0)).toBe(0xfeedfacf); // MH_MAGIC_64
  expect(header.readUInt32LE(4)).toBe(0x0100000c); // CPU_TYPE_ARM64
  expect(statSync(bin).mode & 0o111).not.toBe(0);
}, 300_000);

test("build.sh refuses an unknown target", () => {
  const r = Bun.spawnSync(["./scripts/build.sh", "release", "--target", "windows-x64"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  expect(r.exitCode).toBe(2);
  expect(r.stderr.toString()).toContain("unknown target windows-x64");
});
