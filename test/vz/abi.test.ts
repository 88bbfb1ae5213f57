// The C ABI (shim/havm.h + shim/havm_fs.h) against the bun:ffi symbol tables (VZ_SYMBOLS, FS_SYMBOLS),
// and against the functions shim/vz/havm_vz.m really defines. A drift in any direction fails here.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { VZ_SYMBOLS, VZ_ABI_VERSION, VzRawState, VzStatus, VzEntitlement, HAVM_EVENT_MAX } from "../../src/ffi/vz.ts";

const SHIM = join(import.meta.dir, "../../shim");

interface Proto {
  name: string;
  returns: string;
  args: string[];
}

function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, " ").replace(/\/\/[^\n]*/g, " ");
}

/** C type (parameter name already removed) -> bun:ffi type name. */
export function ffiType(cType: string): string {
  const t = cType.replace(/\bconst\b/g, "").replace(/\s+/g, " ").trim();
  if (t.includes("*")) return "ptr";
  const map: Record<string, string> = {
    void: "void",
    int8_t: "i8",
    uint8_t: "u8",
    int16_t: "i16",
    uint16_t: "u16",
    int32_t: "i32",
    uint32_t: "u32",
    int64_t: "i64",
    uint64_t: "u64",
    int: "i32",
    double: "f64",
    float: "f32",
    bool: "bool",
  };
  const m = map[t];
  if (!m) throw new Error(`no bun:ffi mapping for C type "${cType}"`);
  return m;
}

/** Drop the parameter name: "const char *specJson" -> "const char *", "uint32_t len" -> "uint32_t". */
function paramType(param: string): string {
  const p = param.trim();
  const m = /^(.*?[\s*])([A-Za-z_]\w*)$/.exec(p);
  if (m && m[1]!.trim() !== "" && !/^(const|unsigned|signed|struct)$/.test(m[1]!.trim())) return m[1]!;
  return p;
}

/** Prototypes of havm_* functions in a header (multi-line declarations allowed). */
export function parseHeader(text: string): Proto[] {
  const body = stripComments(text)
    .replace(/\\\n/g, " ")
    .split("\n")
    .filter((l) => !l.trim().startsWith("#"))
    .join("\n")
    .replace(/extern\s+"C"\s*\{/g, " ");
  const out: Proto[] = [];
  for (const stmt of body.split(";")) {
    const s = stmt.replace(/[{}]/g, " ").replace(/\s+/g, " ").trim();
    const m = /^(?:HAVM_API\s+)?(?:extern\s+)?(.+?)\s*\b(havm_\w+)\s*\(([^)]*)\)$/.exec(s);
    if (!m) continue;
    const argText = m[3]!.trim();
    const args = argText === "" || argText === "void" ? [] : argText.split(",").map((a) => ffiType(paramType(a)));
    out.push({ name: m[2]!, returns: ffiType(m[1]!), args });
  }
  return out;
}

/** Function definitions `HAVM_EXPORT <ret> havm_x(<args>) {` in the Objective-C shim. */
function parseDefinitions(text: string): Proto[] {
  const out: Proto[] = [];
  for (const m of stripComments(text).matchAll(/^HAVM_EXPORT\s+([^\n(]*?)\s*\b(havm_\w+)\s*\(([^)]*)\)\s*\{/gm)) {
    const argText = m[3]!.trim();
    const args = argText === "" || argText === "void" ? [] : argText.split(",").map((a) => ffiType(paramType(a)));
    out.push({ name: m[2]!, returns: ffiType(m[1]!), args });
  }
  return out;
}

type SymbolTable = Record<string, { args: readonly string[]; returns: string }>;

/** Every difference between prototypes and a symbol table, as readable lines (empty = they agree). */
export function compareAbi(protos: Proto[], table: SymbolTable): string[] {
  const problems: string[] = [];
  const byName = new Map(protos.map((p) => [p.name, p]));
  for (const p of protos) {
    const sym = table[p.name];
    if (!sym) {
      problems.push(`${p.name}: in the header, missing from the symbol table`);
      continue;
    }
    if (sym.returns !== p.returns) problems.push(`${p.name}: returns ${p.returns} in C, ${sym.returns} in TS`);
    if (JSON.stringify([...sym.args]) !== JSON.stringify(p.args)) {
      problems.push(`${p.name}: args (${p.args.join(", ")}) in C, (${sym.args.join(", ")}) in TS`);
    }
  }
  for (const name of Object.keys(table)) if (!byName.has(name)) problems.push(`${name}: in the symbol table, missing from the header`);
  return problems;
}

function defines(text: string, prefix: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(new RegExp(`^#define (${prefix}\\w*)\\s+\\(?(-?\\d+)u?\\)?`, "gm"))) out.set(m[1]!, Number(m[2]));
  return out;
}

const havmH = readFileSync(join(SHIM, "havm.h"), "utf8");
const vzProtos = parseHeader(havmH);

describe("shim/havm.h <-> VZ_SYMBOLS", () => {
  test("header parses into the expected number of prototypes", () => {
    expect(vzProtos.length).toBeGreaterThanOrEqual(19);
    expect(vzProtos.every((p) => !p.name.startsWith("havm_fs_"))).toBe(true);
  });
  test("every prototype matches the bun:ffi table and vice versa", () => {
    expect(compareAbi(vzProtos, VZ_SYMBOLS)).toEqual([]);
  });
  test("the Objective-C shim defines exactly the header's functions with the same signatures", () => {
    const defs = parseDefinitions(readFileSync(join(SHIM, "vz/havm_vz.m"), "utf8"));
    expect(defs.map((d) => d.name).sort()).toEqual(vzProtos.map((p) => p.name).sort());
    const table = Object.fromEntries(defs.map((d) => [d.name, { args: d.args, returns: d.returns }]));
    expect(compareAbi(vzProtos, table)).toEqual([]);
  });
  test("the shim includes havm_fs.h through havm.h", () => {
    expect(havmH).toMatch(/#include "havm_fs\.h"/);
  });
  test("status codes, states, entitlement bits and versions agree with the header", () => {
    const e = defines(havmH, "HAVM_E_");
    const names: Record<string, keyof typeof VzStatus> = {
      HAVM_E_INVALID_ARGUMENT: "invalidArgument",
      HAVM_E_UNSUPPORTED: "unsupported",
      HAVM_E_VALIDATION: "validation",
      HAVM_E_ENTITLEMENT: "entitlement",
      HAVM_E_STATE: "state",
      HAVM_E_FRAMEWORK: "framework",
      HAVM_E_NOT_FOUND: "notFound",
      HAVM_E_BUFFER: "buffer",
      HAVM_E_IO: "io",
      HAVM_E_EXCEPTION: "exception",
    };
    expect([...e.keys()].sort()).toEqual(Object.keys(names).sort());
    for (const [c, ts] of Object.entries(names)) expect([c, e.get(c)]).toEqual([c, VzStatus[ts]]);
    const s = defines(havmH, "HAVM_STATE_");
    for (const [k, v] of Object.entries(VzRawState)) expect([k, s.get(`HAVM_STATE_${k.toUpperCase()}`)]).toEqual([k, v]);
    expect(s.size).toBe(Object.keys(VzRawState).length);
    const ent = defines(havmH, "HAVM_ENT_");
    expect(ent.get("HAVM_ENT_VIRTUALIZATION")).toBe(VzEntitlement.virtualization);
    expect(ent.get("HAVM_ENT_USB")).toBe(VzEntitlement.usb);
    expect(ent.get("HAVM_ENT_NETWORKING")).toBe(VzEntitlement.networking);
    expect(defines(havmH, "HAVM_VZ_ABI_VERSION").get("HAVM_VZ_ABI_VERSION")).toBe(VZ_ABI_VERSION);
    expect(defines(havmH, "HAVM_EVENT_MAX").get("HAVM_EVENT_MAX")).toBe(HAVM_EVENT_MAX);
  });
});

describe("shim/havm_fs.h <-> FS_SYMBOLS", () => {
  const fsHeader = join(SHIM, "havm_fs.h");
  const fsTable = join(import.meta.dir, "../../src/ffi/fsops.ts");
  const present = existsSync(fsHeader) && existsSync(fsTable);
  test.skipIf(!present)("every havm_fs_ prototype matches FS_SYMBOLS and vice versa (skipped until both exist)", async () => {
    const { FS_SYMBOLS } = (await import(fsTable)) as { FS_SYMBOLS: SymbolTable };
    const protos = parseHeader(readFileSync(fsHeader, "utf8"));
    expect(protos.length).toBeGreaterThan(0);
    expect(protos.every((p) => p.name.startsWith("havm_fs_"))).toBe(true);
    expect(compareAbi(protos, FS_SYMBOLS)).toEqual([]);
  });
});

describe("the comparison itself can fail", () => {
  const base = "HAVM_API int32_t havm_vm_start(void *handle, char *err, uint32_t errLen);\n";
  const table = { havm_vm_start: { args: ["ptr", "ptr", "u32"], returns: "i32" } };
  test("agreeing inputs give no problems", () => {
    expect(compareAbi(parseHeader(base), table)).toEqual([]);
  });
  test("a changed argument type, a changed return type, and a missing or extra symbol are each reported", () => {
    expect(compareAbi(parseHeader(base.replace("uint32_t errLen", "uint64_t errLen")), table)).toHaveLength(1);
    expect(compareAbi(parseHeader(base.replace("int32_t havm", "uint32_t havm")), table)).toHaveLength(1);
    expect(compareAbi(parseHeader(base + "HAVM_API int32_t havm_vm_extra(void);\n"), table)).toHaveLength(1);
    expect(compareAbi([], table)).toHaveLength(1);
  });
  test("multi-line prototypes without HAVM_API and (void) parameter lists parse", () => {
    const protos = parseHeader("int32_t havm_fs_x(int32_t a,\n    uint64_t b, char *err);\nHAVM_API int32_t havm_y(void);\n");
    expect(protos).toEqual([
      { name: "havm_fs_x", returns: "i32", args: ["i32", "u64", "ptr"] },
      { name: "havm_y", returns: "i32", args: [] },
    ]);
  });
});
