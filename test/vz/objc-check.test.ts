// Runs shim/objc-check/check.sh: the Objective-C shim compiled for arm64/x86_64 macOS 13 against
// Apple's open-source headers + hand-written framework declarations, then the canaries (broken copies
// that must NOT compile). Needs clang, python3, openssl and, on a cold cache, npm registry access for
// the header package (cached in ~/.cache/havm-objc-check).
import { describe, expect, test } from "bun:test";
import { objcCheckMissing, objcCheckSkipReason, runObjcCheck } from "../support/objc-check.ts";

const missing = objcCheckMissing;
const reason = objcCheckSkipReason;

const run = (env: Record<string, string> = {}) => runObjcCheck([], env);

describe("objc-check", () => {
  test.skipIf(missing.length > 0)(`the shim compiles cleanly and every canary is rejected${reason}`, () => {
    const { code, out } = run();
    if (code !== 0) console.error(out);
    expect(code).toBe(0);
    expect(out).toContain("objc shim check OK");
    const lines = out.split("\n").filter((l) => l.startsWith("canary "));
    expect(lines.length).toBeGreaterThanOrEqual(20);
    expect(lines.filter((l) => l.includes("expected"))).toHaveLength(lines.length);
    expect(lines.filter((l) => l.includes(": pass"))).toEqual(["canary 00-control: pass (as expected)"]);
    expect(lines.filter((l) => l.includes(": fail (as expected)"))).toHaveLength(lines.length - 1);
  }, 180_000);

  test.skipIf(missing.length > 0)(`a canary that compiles makes the check fail${reason}`, () => {
    const { code, out } = run({ HAVM_OBJC_CHECK_SELFTEST: "1" });
    expect(code).not.toBe(0);
    expect(out).toContain("canary 99-selftest-harmless-edit: expected fail, got pass");
    expect(out).not.toContain("objc shim check OK");
  }, 180_000);
});
