// shim/havm_menubar.h against MENUBAR_SYMBOLS (src/ffi/menubar.ts) and against the functions
// shim/vz/havm_menubar.m defines; plus the wiring (havm.h includes it, the macOS build links AppKit).
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MENUBAR_SYMBOLS, MENUBAR_ABI_VERSION, MENUBAR_ID_MAX, MENUBAR_CLICK_QUEUE_CAP } from "../../src/ffi/menubar.ts";

const ROOT = join(import.meta.dir, "../..");
const read = (p: string) => readFileSync(join(ROOT, p), "utf8");

interface Proto {
  name: string;
  returns: string;
  args: string[];
}
type SymbolTable = Record<string, { args: readonly string[]; returns: string }>;

const stripComments = (t: string) => t.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, " ");

/** C type without the parameter name -> bun:ffi type. */
function ffiType(cType: string): string {
  const t = cType.replace(/\bconst\b/g, "").replace(/\s+/g, " ").trim();
  if (t.includes("*")) return "ptr";
  const map: Record<string, string> = { void: "void", int32_t: "i32", uint32_t: "u32", int64_t: "i64", uint64_t: "u64", uint8_t: "u8", int: "i32", double: "f64", bool: "bool" };
  const m = map[t];
  if (!m) throw new Error(`no bun:ffi mapping for C type "${cType}"`);
  return m;
}

function argTypes(text: string): string[] {
  const a = text.trim();
  if (a === "" || a === "void") return [];
  return a.split(",").map((p) => ffiType(p.trim().replace(/[A-Za-z_]\w*$/, "")));
}

/** `HAVM_API <ret> havm_x(<args>);` prototypes of a header. */
function parseHeader(text: string): Proto[] {
  const body = stripComments(text).split("\n").filter((l) => !l.trim().startsWith("#")).join("\n");
  const out: Proto[] = [];
  for (const m of body.matchAll(/HAVM_API\s+([^;(]*?)\s*\b(havm_\w+)\s*\(([^)]*)\)\s*;/g)) out.push({ name: m[2]!, returns: ffiType(m[1]!), args: argTypes(m[3]!) });
  return out;
}

/** `HAVM_EXPORT <ret> havm_x(<args>) {` definitions of the Objective-C file. */
function parseDefinitions(text: string): Proto[] {
  const out: Proto[] = [];
  for (const m of stripComments(text).matchAll(/^HAVM_EXPORT\s+([^\n(]*?)\s*\b(havm_\w+)\s*\(([^)]*)\)\s*\{/gm)) out.push({ name: m[2]!, returns: ffiType(m[1]!), args: argTypes(m[3]!) });
  return out;
}

function compareAbi(protos: Proto[], table: SymbolTable): string[] {
  const problems: string[] = [];
  for (const p of protos) {
    const sym = table[p.name];
    if (!sym) problems.push(`${p.name}: in the header, missing from the table`);
    else {
      if (sym.returns !== p.returns) problems.push(`${p.name}: returns ${p.returns} in C, ${sym.returns} in TS`);
      if (JSON.stringify([...sym.args]) !== JSON.stringify(p.args)) problems.push(`${p.name}: args (${p.args}) in C, (${sym.args}) in TS`);
    }
  }
  for (const name of Object.keys(table)) if (!protos.some((p) => p.name === name)) problems.push(`${name}: in the table, missing from the header`);
  return problems;
}

const define = (text: string, name: string) => Number(new RegExp(`^#define ${name}\\s+\\(?(-?\\d+)`, "m").exec(text)?.[1]);

const header = read("shim/havm_menubar.h");
const protos = parseHeader(header);

describe("shim/havm_menubar.h <-> MENUBAR_SYMBOLS", () => {
  test("the header declares the six menu bar functions", () => {
    expect(protos.map((p) => p.name).sort()).toEqual(
      ["havm_menubar_abi_version", "havm_menubar_create", "havm_menubar_destroy", "havm_menubar_next_click", "havm_menubar_pump", "havm_menubar_set_menu"],
    );
  });
  test("every prototype matches the bun:ffi table and vice versa", () => {
    expect(compareAbi(protos, MENUBAR_SYMBOLS)).toEqual([]);
  });
  test("the Objective-C file defines exactly the header's functions with the same signatures", () => {
    const defs = parseDefinitions(read("shim/vz/havm_menubar.m"));
    expect(defs.map((d) => d.name).sort()).toEqual(protos.map((p) => p.name).sort());
    expect(compareAbi(protos, Object.fromEntries(defs.map((d) => [d.name, d])))).toEqual([]);
  });
  test("constants agree with the header", () => {
    expect(define(header, "HAVM_MENUBAR_ABI_VERSION")).toBe(MENUBAR_ABI_VERSION);
    expect(define(header, "HAVM_MENUBAR_ID_MAX")).toBe(MENUBAR_ID_MAX);
    expect(define(header, "HAVM_MENUBAR_CLICK_QUEUE_CAP")).toBe(MENUBAR_CLICK_QUEUE_CAP);
  });
  test("havm.h includes it, and the macOS build compiles the file and links AppKit", () => {
    expect(read("shim/havm.h")).toMatch(/^#include "havm_menubar\.h"$/m);
    const build = read("scripts/build-shim-macos.sh");
    expect(build).toContain("shim/vz/havm_menubar.m");
    expect(build).toContain("-framework AppKit");
    expect(build).toContain('"$root/shim/havm_menubar.h"');
  });
});

describe("the comparison can fail", () => {
  const base = "HAVM_API int32_t havm_menubar_pump(uint32_t ms, char *err, uint32_t errLen);\n";
  const table = { havm_menubar_pump: { args: ["u32", "ptr", "u32"], returns: "i32" } };
  test("agreeing inputs give no problems; each drift is reported", () => {
    expect(compareAbi(parseHeader(base), table)).toEqual([]);
    expect(compareAbi(parseHeader(base.replace("uint32_t ms", "uint64_t ms")), table)).toHaveLength(1);
    expect(compareAbi(parseHeader(base.replace("int32_t havm", "uint32_t havm")), table)).toHaveLength(1);
    expect(compareAbi(parseHeader(base + "HAVM_API int32_t havm_menubar_extra(void);\n"), table)).toHaveLength(1);
    expect(compareAbi([], table)).toHaveLength(1);
  });
});
