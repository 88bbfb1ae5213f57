// The shim's header and the FFI symbol table must agree (a mismatch corrupts arguments silently), and the
// native library must load from where native.ts says it is.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { FS_SYMBOLS, allocatedBytes, cloneFile, freeBytes, NativeFsError } from "../../src/ffi/fsops.ts";
import { materializeEmbedded, nativeLibraryPath } from "../../src/ffi/native.ts";
import { ensureNativeLibrary } from "../support/native.ts";

const HEADER = resolve(import.meta.dir, "../../shim/havm_fs.h");
let work: string;
let lib: string;
beforeAll(() => {
  lib = ensureNativeLibrary();
  work = mkdtempSync(join(tmpdir(), "havm-fsops-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

function ffiType(cType: string): string {
  const t = cType.replace(/\b(const|restrict)\b/g, "").replace(/\s+/g, " ").trim();
  if (t.endsWith("*")) return "ptr";
  const map: Record<string, string> = { int32_t: "i32", uint32_t: "u32", uint64_t: "u64", int64_t: "i64", void: "void" };
  if (!(t in map)) throw new Error(`unmapped C type ${cType}`);
  return map[t]!;
}

describe("libhavm fs part", () => {
  test("havm_fs.h prototypes match FS_SYMBOLS exactly", () => {
    const text = readFileSync(HEADER, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
    const protos = [...text.matchAll(/^\s*([\w\s*]+?)\s*\b(havm_fs_\w+)\s*\(([^)]*)\)\s*;/gm)];
    const fromHeader = Object.fromEntries(
      protos.map(([, ret, name, params]) => [
        name!,
        {
          args: params!.trim() === "void" || params!.trim() === "" ? [] : params!.split(",").map((p) => ffiType(p.trim().replace(/\s*\b\w+$/, ""))), // drop the parameter name
          returns: ffiType(ret!),
        },
      ]),
    );
    expect(fromHeader).toEqual(JSON.parse(JSON.stringify(FS_SYMBOLS)));
    // and the built library exports every symbol
    const nm = Bun.spawnSync(["nm", "-D", "--defined-only", lib]).stdout.toString();
    for (const name of Object.keys(FS_SYMBOLS)) expect(nm).toContain(name);
  });

  test("nativeLibraryPath finds the dev build; HAVM_NATIVE_LIB must be absolute", () => {
    expect(nativeLibraryPath({ env: {} })).toBe(lib);
    expect(nativeLibraryPath({ env: { HAVM_NATIVE_LIB: "/x/libhavm.so" } })).toBe("/x/libhavm.so");
    expect(() => nativeLibraryPath({ env: { HAVM_NATIVE_LIB: "libhavm.so" } })).toThrow(/absolute/);
  });

  test("an embedded library is copied once to a content-addressed path", () => {
    const libDir = join(work, "lib");
    const a = materializeEmbedded(lib, libDir);
    expect(a).toMatch(/libhavm-[0-9a-f]{16}\.(so|dylib)$/);
    expect(readFileSync(a).equals(readFileSync(lib))).toBe(true);
    expect(materializeEmbedded(lib, libDir)).toBe(a);
    const other = join(work, "other.so");
    writeFileSync(other, "different bytes");
    expect(materializeEmbedded(other, libDir)).not.toBe(a);
  });

  test("errors carry errno codes; clone reports 'unsupported' without leaving a file", () => {
    const err = (() => {
      try {
        freeBytes(join(work, "does/not/exist"));
      } catch (e) {
        return e as NativeFsError;
      }
    })();
    expect(err?.code).toBe("ENOENT");
    expect(err?.message).toContain("statvfs");
    expect(freeBytes(work)).toBeGreaterThan(0);
    const f = join(work, "f");
    const fd = openSync(f, "w");
    ftruncateSync(fd, 1 << 30);
    expect(allocatedBytes(fd)).toBeLessThan(1 << 20);
    closeSync(fd);
    // /dev/shm (tmpfs) cannot reflink; a cross-filesystem clone is never possible
    if (existsSync("/dev/shm")) {
      const dst = join("/dev/shm", `havm-clone-${process.pid}`);
      expect(cloneFile(f, dst)).toBe(false);
      expect(existsSync(dst)).toBe(false);
    }
    expect(() => cloneFile(f, f)).toThrow(/EEXIST|exists/);
  });
});
