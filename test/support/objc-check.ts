// Running shim/objc-check from tests: whether it can run here, and one run of a target.
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const SCRIPT = join(import.meta.dir, "../../shim/objc-check/check.sh");
const which = (cmd: string) => Bun.which(cmd) !== null;
const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "havm-objc-check", "apple-hdr-zig-0.11.0", ".ok");

/** What the check needs and this machine lacks (npm only while Apple's headers are not cached yet). */
export const objcCheckMissing: string[] = ["clang", "python3", "openssl", "bc", "bash"].filter((c) => !which(c));
if (!existsSync(cache) && !which("npm")) objcCheckMissing.push("npm (cold header cache)");
/** A suffix for test names that skip. */
export const objcCheckSkipReason = objcCheckMissing.length ? ` (skipped: missing ${objcCheckMissing.join(", ")})` : "";

/** Run check.sh for a target (none = the VZ shim), with extra environment. */
export function runObjcCheck(args: string[] = [], env: Record<string, string> = {}): { code: number | null; out: string } {
  const p = Bun.spawnSync(["bash", SCRIPT, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  return { code: p.exitCode, out: p.stdout.toString() + p.stderr.toString() };
}
