// Run havm as a user would: the compiled binary (built by scripts/test.sh) from another directory,
// or the sources through bun for quick checks. Each run gets its own temp HOME.
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "../..");
export const BUN = join(ROOT, "node_modules/.bin/bun");
export const DEBUG_BINARY = join(ROOT, ".build/debug/havm");

export function tempHome(prefix = "havm-home-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The compiled binary, building it once if the test command did not. */
export function compiledHavm(): string {
  if (!existsSync(DEBUG_BINARY)) {
    const r = Bun.spawnSync(["./scripts/build.sh", "debug"], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
    if (r.exitCode !== 0) throw new Error("scripts/build.sh debug failed");
  }
  return DEBUG_BINARY;
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export function runHavm(args: string[], opts: { home: string; binary?: string; env?: Record<string, string>; cwd?: string }): CliResult {
  const cmd = opts.binary ? [opts.binary, ...args] : [BUN, join(ROOT, "src/main.ts"), ...args];
  const r = Bun.spawnSync(cmd, {
    cwd: opts.cwd ?? opts.home,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: opts.home, TMPDIR: tmpdir(), ...opts.env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { exitCode: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}
