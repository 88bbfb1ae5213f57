// Tests need libhavm (shim/fs.c): build it with scripts/build-shim.sh when missing or older than its sources.
import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..", "..");

export function ensureNativeLibrary(): string {
  const lib = join(ROOT, ".build", "shim", `libhavm.${process.platform === "darwin" ? "dylib" : "so"}`);
  const newestSource = Math.max(
    ...readdirSync(join(ROOT, "shim"))
      .filter((f) => /^(fs\.c|havm_fs\.h)$/.test(f))
      .map((f) => statSync(join(ROOT, "shim", f)).mtimeMs),
    statSync(join(ROOT, "scripts", "build-shim.sh")).mtimeMs,
  );
  if (!existsSync(lib) || statSync(lib).mtimeMs < newestSource) {
    const r = Bun.spawnSync(["sh", join(ROOT, "scripts", "build-shim.sh"), lib], { stdout: "pipe", stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`building libhavm failed: ${r.stderr.toString()}`);
  }
  return lib;
}
