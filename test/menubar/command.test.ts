// `havm menubar` off macOS: a clear refusal with exit code 4, before any config or native library is touched.
import { expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { refuseOffMac } from "../../src/commands/menubar.ts";
import { HavmError } from "../../src/util/errors.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

test.skipIf(process.platform === "darwin")("`havm menubar` on Linux exits 4 with 'the menu bar is macOS only' and a hint", () => {
  // A HOME without any havm config: the refusal must come before the config is read.
  const home = mkdtempSync(join(tmpdir(), "havm-menubar-home-"));
  const p = Bun.spawnSync([process.execPath, MAIN, "menubar"], { env: { ...process.env, HOME: home, XDG_CONFIG_HOME: "", XDG_DATA_HOME: "", NO_COLOR: "1" }, stdout: "pipe", stderr: "pipe" });
  const err = p.stderr.toString();
  expect(p.exitCode).toBe(4);
  expect(err).toContain("the menu bar is macOS only");
  expect(err).toContain("hint:");
  expect(p.stdout.toString()).toBe("");
});

test("refuseOffMac passes on darwin and refuses elsewhere with exit code 4", () => {
  expect(() => refuseOffMac("darwin")).not.toThrow();
  for (const platform of ["linux", "freebsd", "win32"]) {
    let caught: unknown;
    try {
      refuseOffMac(platform);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(HavmError);
    expect((caught as HavmError).exitCode).toBe(4);
    expect((caught as HavmError).code).toBe("menubar.platform");
  }
});

test("the menu bar's FFI module refuses to open off macOS", async () => {
  const { openMenubar } = await import("../../src/ffi/menubar.ts");
  expect(() => openMenubar("/nonexistent/libhavm.so", "linux")).toThrow("the menu bar is macOS only");
});
