import { describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildBinary } from "plist";
import { gatherFileFacts, readUtmBundle } from "../../src/utm/bundle.ts";
import { HavmError } from "../../src/util/errors.ts";
import { configPlist, MACHINE_ID, MIB, sparseRaw, tempDir, writeBundle } from "./fixtures.ts";

function refusal(fn: () => unknown): HavmError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(HavmError);
    return e as HavmError;
  }
  throw new Error("expected a refusal");
}

describe("readUtmBundle", () => {
  test("parses an XML config.plist; data values come back as bytes", () => {
    const bundle = writeBundle(tempDir(), { backend: "Apple", drives: [{ name: "A.img" }] });
    const b = readUtmBundle(bundle);
    expect(b.configPath).toBe(join(bundle, "config.plist"));
    expect(b.dataDir).toBe(join(bundle, "Data"));
    const system = (b.plist as Record<string, any>).System;
    expect(new Uint8Array(system.GenericPlatform.machineIdentifier)).toEqual(MACHINE_ID);
  });

  test("a binary plist (after plutil -convert binary1) reads the same", () => {
    const bundle = join(tempDir(), "B.utm");
    mkdirSync(bundle);
    const value = configPlist({ backend: "QEMU", drives: [{ name: "d.qcow2" }] });
    writeFileSync(join(bundle, "config.plist"), buildBinary(value));
    expect((readUtmBundle(bundle).plist as Record<string, unknown>).Backend).toBe("QEMU");
  });

  test("a malformed plist is refused, naming the file", () => {
    const bundle = join(tempDir(), "Broken.utm");
    mkdirSync(bundle);
    const file = join(bundle, "config.plist");
    writeFileSync(file, '<?xml version="1.0"?>\n<plist version="1.0"><dict><key>Backend</key><string>Apple</dict></plist>');
    const e = refusal(() => readUtmBundle(bundle));
    expect(e.exitCode).toBe(2);
    expect(e.message).toStartWith(`${file} is not a valid property list: `);
    expect(e.hint).toContain(`plutil -lint "${file}"`);
  });

  test("a plist whose top level is not a dictionary is refused", () => {
    const bundle = join(tempDir(), "Array.utm");
    mkdirSync(bundle);
    writeFileSync(join(bundle, "config.plist"), "<plist><array/></plist>");
    expect(refusal(() => readUtmBundle(bundle)).message).toBe(`${join(bundle, "config.plist")} is not a valid property list: the top level is not a dictionary`);
  });

  test("paths that are not bundles", () => {
    const dir = tempDir();
    const hint = "Pass the VM's .utm folder (in UTM: right-click the VM > Show in Finder), e.g. ~/Library/Containers/com.utmapp.UTM/Data/Documents/Home\\ Assistant.utm";
    const missing = refusal(() => readUtmBundle(join(dir, "nope.utm")));
    expect([missing.exitCode, missing.message, missing.hint]).toEqual([2, `${join(dir, "nope.utm")} does not exist`, hint]);
    writeFileSync(join(dir, "file.utm"), "x");
    const file = refusal(() => readUtmBundle(join(dir, "file.utm")));
    expect([file.exitCode, file.message]).toEqual([2, `${join(dir, "file.utm")} is not a UTM bundle (a .utm bundle is a folder)`]);
    mkdirSync(join(dir, "empty.utm"));
    const empty = refusal(() => readUtmBundle(join(dir, "empty.utm")));
    expect([empty.exitCode, empty.message, empty.hint]).toEqual([2, `${join(dir, "empty.utm")} is not a UTM bundle: it has no config.plist`, hint]);
  });
});

test("gatherFileFacts: sizes, allocation and format of the named files; missing ones and escapes skipped", () => {
  const bundle = writeBundle(tempDir(), { backend: "Apple", drives: [{ name: "A.img" }] });
  sparseRaw(join(bundle, "Data", "A.img"), 64 * MIB, [0, 32 * MIB]);
  writeFileSync(join(bundle, "secret"), "x");
  const facts = gatherFileFacts(readUtmBundle(bundle), ["A.img", "efi_vars.fd", "../secret"]);
  expect([...facts.keys()]).toEqual(["A.img"]);
  const a = facts.get("A.img")!;
  expect(a).toMatchObject({ path: join(bundle, "Data", "A.img"), fileSize: 64 * MIB, format: "raw", logicalSize: 64 * MIB });
  expect(a.allocated).toBeGreaterThanOrEqual(128 * 1024);
  expect(a.allocated).toBeLessThan(4 * MIB);
});
