// shim/objc-check/check.sh menubar: shim/vz/havm_menubar.m compiled for arm64/x86_64 macOS 13 against Apple's
// open-source headers + hand-written AppKit declarations (appkit-decls.h), then its canaries (broken copies
// that must NOT compile). Needs clang, python3, openssl, bc and, on a cold cache, npm for the header package.
import { describe, expect, test } from "bun:test";
import { objcCheckMissing, objcCheckSkipReason, runObjcCheck } from "../support/objc-check.ts";

const missing = objcCheckMissing;
const reason = objcCheckSkipReason;

const run = (env: Record<string, string> = {}) => runObjcCheck(["menubar"], env);

describe("objc-check menubar", () => {
  test.skipIf(missing.length > 0)(`havm_menubar.m compiles cleanly and every menu bar canary is rejected${reason}`, () => {
    const { code, out } = run();
    if (code !== 0) console.error(out);
    expect(code).toBe(0);
    expect(out).toContain("objc menubar check OK");
    const lines = out.split("\n").filter((l) => l.startsWith("canary "));
    expect(lines.length).toBeGreaterThanOrEqual(15);
    expect(lines.every((l) => l.startsWith("canary mb-") && l.endsWith("(as expected)"))).toBe(true);
    expect(lines.filter((l) => l.includes(": pass"))).toEqual(["canary mb-00-control: pass (as expected)"]);
    // Both kinds of gate are exercised: clang (selectors, types, availability, ARC) and the structure rule.
    expect(out).toContain("canary mb-11-unguarded-macos14-api: fail (as expected)");
    expect(out).toContain("canary mb-14-export-without-guard: fail (as expected)");
  }, 120_000);

  test.skipIf(missing.length > 0)(`a menu bar canary that compiles makes the check fail${reason}`, () => {
    const { code, out } = run({ HAVM_OBJC_CHECK_SELFTEST: "1" });
    expect(code).not.toBe(0);
    expect(out).toContain("canary mb-99-selftest-harmless-edit: expected fail, got pass");
    expect(out).not.toContain("objc menubar check OK");
  }, 120_000);

  test("an unknown target is refused", () => {
    const { code, out } = runObjcCheck(["nonsense"]);
    expect(code).toBe(2);
    expect(out).toContain("usage: check.sh [vz|menubar]");
  });
});
