// Put the imported VM's settings into config.yml without losing anything the user wrote: the file is
// edited as a YAML Document (comments, key order, other keys kept), checked against the schema, and
// written atomically.
import { readFileSync, statSync } from "node:fs";
import { isMap, isScalar, parseDocument, Scalar, type Document } from "yaml";
import { parseConfigText } from "../config/load.ts";
import { parseSize } from "../config/units.ts";
import { errnoCode } from "../util/errors.ts";
import { writeFileAtomic } from "../util/fs.ts";
import type { ImportedConfig } from "./plan.ts";

/** The keys an import sets ("vm.cpu_count" -> value); undefined means "remove the key". */
export function configEdits(values: ImportedConfig): [path: string[], value: unknown][] {
  const edits: [string[], unknown][] = [[["vm", "cpu_count"], values.cpuCount]];
  if (values.memorySize !== undefined) edits.push([["vm", "memory_size"], values.memorySize]);
  if (values.network) {
    edits.push([["network", "type"], values.network.type]);
    // An interface only means something to bridging: drop a stale one when the VM used NAT in UTM.
    edits.push([["network", "interface"], values.network.type === "bridge" ? values.network.interface : undefined]);
  }
  if (values.mac !== undefined) edits.push([["network", "mac"], values.mac]);
  return edits;
}

/** Pure: the config text with the imported values merged in. `text` may be empty (no file yet). */
export function mergeConfigText(text: string, values: ImportedConfig, file?: string): string {
  return mergeConfig(text, values, file).text;
}

/** Pure: the merged text, and the keys it set (for the summary). */
export function mergeConfig(text: string, values: ImportedConfig, file?: string): { text: string; applied: [path: string[], value: unknown][] } {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    // loadContext already refused such a file; this guards direct callers.
    parseConfigText(text, file);
  }
  const edits = configEdits(values);
  if (values.diskSize !== undefined) {
    // Keep a larger disk_size the user set (room to grow); otherwise the imported disk's size.
    const current = doc.getIn(["vm", "disk_size"]);
    const currentBytes = typeof current === "string" || typeof current === "number" ? parseSize(current) : undefined;
    if (currentBytes === undefined || currentBytes < values.diskSize) {
      edits.splice(edits.filter(([p]) => p[0] === "vm").length, 0, [["vm", "disk_size"], sizeText(values.diskSize)]);
    }
  }
  for (const [path, value] of edits) {
    if (value === undefined) {
      if (doc.hasIn(path)) doc.deleteIn(path);
      continue;
    }
    ensureSection(doc, path[0]!);
    // MACs are quoted: a YAML 1.1 reader takes 02:00:00:00:00:01 for a base-60 number.
    const node = path[1] === "mac" ? Object.assign(new Scalar(value), { type: Scalar.QUOTE_DOUBLE }) : value;
    doc.setIn(path, node);
  }
  const out = doc.toString();
  // Never write a file havm itself would refuse.
  parseConfigText(out, file);
  return { text: out, applied: edits.filter(([, v]) => v !== undefined) };
}

/** "64 GiB" when exact, else "20481 MiB": never a rounded decimal that would mean a smaller disk. */
export function sizeText(bytes: number): string {
  const GIB = 1024 ** 3;
  return bytes % GIB === 0 ? `${bytes / GIB} GiB` : `${Math.ceil(bytes / (1024 * 1024))} MiB`;
}

/** `vm:` with nothing after it parses as a null scalar; setIn needs a map there. */
function ensureSection(doc: Document, section: string): void {
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    doc.contents = doc.createNode({}) as unknown as typeof doc.contents;
  }
  const node = doc.get(section, true);
  if (node === undefined) return;
  if (isScalar(node) && (node.value === null || node.value === undefined)) {
    doc.set(section, doc.createNode({}));
  } else if (!isMap(node)) {
    // The schema would refuse it anyway; replacing it would lose what the user wrote.
    parseConfigText(doc.toString(), undefined);
  }
}

/** Read `file` (missing = empty), merge, and return the new text without writing it. */
export function prepareConfigMerge(file: string, values: ImportedConfig): { text: string; mode: number; applied: [path: string[], value: unknown][] } {
  let text = "";
  let mode = 0o644;
  try {
    text = readFileSync(file, "utf8");
    mode = statSync(file).mode & 0o777;
  } catch (e) {
    if (errnoCode(e) !== "ENOENT") throw e;
  }
  return { ...mergeConfig(text, values, file), mode };
}

/** Write merged config text atomically (temp file, fsync, rename), keeping the file's mode. */
export function writeConfigText(file: string, text: string, mode: number): void {
  writeFileAtomic(file, text, mode);
}
