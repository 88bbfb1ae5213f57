// YAML file -> validated Config. A bad file is refused with the file, line, key path and what was
// expected (exit code 2), before anything is touched.
import { readFileSync } from "node:fs";
import * as v from "valibot";
import { LineCounter, parseDocument, isMap, isScalar, type Node } from "yaml";
import { ConfigSchema, type Config } from "./schema.ts";
import { HavmError, ExitCode, errnoCode } from "../util/errors.ts";

export interface LoadedConfig {
  config: Config;
  /** The file it came from, or undefined when none exists (all defaults). */
  file?: string;
  /** Dotted key paths the user wrote ("vm.cpu_count"): only these may be refused for host limits. */
  userSet: Set<string>;
  /** The file's data before validation, so command-line overrides can be merged and re-validated. */
  raw: Record<string, unknown>;
}

export interface ConfigProblem {
  path: string;
  line?: number;
  message: string;
}

export class ConfigError extends HavmError {
  readonly problems: ConfigProblem[];
  readonly file?: string;
  constructor(file: string | undefined, problems: ConfigProblem[]) {
    const where = file ?? "config";
    const lines = problems.map((p) => `  ${where}${p.line ? `:${p.line}` : ""}: ${p.path ? p.path + ": " : ""}${p.message}`);
    super(`invalid configuration in ${where}:\n${lines.join("\n")}`, {
      hint: `Fix the lines above (every field is optional: delete a line to use its default).`,
      exitCode: ExitCode.badInput,
      code: "config.invalid",
    });
    this.problems = problems;
    this.file = file;
  }
}

/** Read and validate the config file; a missing file means all defaults. */
export function loadConfigFile(file: string, { mustExist = false } = {}): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if (errnoCode(e) === "ENOENT" && !mustExist) return parseConfigText("", undefined);
    if (errnoCode(e) === "ENOENT") {
      throw new HavmError(`config file ${file} does not exist`, {
        hint: "Check the --config path, or leave it out to use ~/.config/havm/config.yml.",
        exitCode: ExitCode.badInput,
        code: "config.missing",
      });
    }
    throw new HavmError(`cannot read config file ${file}: ${(e as Error).message}`, {
      hint: "Check the file's permissions.",
      exitCode: ExitCode.badInput,
      code: "config.unreadable",
    });
  }
  return parseConfigText(text, file);
}

/** Command-line values (dotted key -> value) merged over the file and validated like it. */
export function applyConfigOverrides(loaded: LoadedConfig, overrides: Record<string, unknown>): LoadedConfig {
  const raw = structuredClone(loaded.raw);
  for (const [path, value] of Object.entries(overrides)) {
    const keys = path.split(".");
    let node = raw as Record<string, unknown>;
    for (const k of keys.slice(0, -1)) {
      if (typeof node[k] !== "object" || node[k] === null) node[k] = {};
      node = node[k] as Record<string, unknown>;
    }
    node[keys[keys.length - 1]!] = value;
  }
  const result = v.safeParse(ConfigSchema, raw, { abortEarly: false });
  if (!result.success) {
    const flagOf = new Map(Object.keys(overrides).map((k) => [k, k]));
    throw new ConfigError(
      "command line",
      result.issues.map((issue) => {
        const path = (issue.path ?? []).map((p) => String(p.key)).join(".");
        return { path: flagOf.get(path) ?? path, message: issue.message };
      }),
    );
  }
  const userSet = new Set(loaded.userSet);
  for (const k of Object.keys(overrides)) userSet.add(k);
  return { ...loaded, config: result.output, userSet, raw };
}

/** Pure: YAML text -> Config, with line numbers in every problem. */
export function parseConfigText(text: string, file: string | undefined): LoadedConfig {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const lineOf = (offset: number | undefined) => (offset === undefined ? undefined : lineCounter.linePos(offset).line);
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ path: "", line: lineOf(e.pos[0]), message: `YAML syntax error: ${e.message.split("\n")[0]}` })),
    );
  }
  const parsed: unknown = doc.contents === null ? {} : doc.toJS();
  const input = parsed === null || parsed === undefined ? {} : parsed;
  const result = v.safeParse(ConfigSchema, input, { abortEarly: false });
  if (!result.success) {
    const problems = result.issues.map((issue): ConfigProblem => {
      const keys = (issue.path ?? []).map((p) => String(p.key));
      const isUnknownKey = issue.type === "strict_object" && issue.expected === "never";
      const node = nodeAt(doc.contents as Node | null, keys, isUnknownKey);
      return {
        path: keys.join("."),
        line: lineOf(node?.range?.[0]),
        message: isUnknownKey ? `unknown key (check its spelling and section)` : issue.message,
      };
    });
    throw new ConfigError(file, dedupe(problems));
  }
  return { config: result.output, file, userSet: collectUserSet(input), raw: input as Record<string, unknown> };
}

function dedupe(problems: ConfigProblem[]): ConfigProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const k = `${p.line}|${p.path}|${p.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** The YAML node at a key path (the key node itself for unknown keys, so the line is the key's). */
function nodeAt(root: Node | null, keys: string[], wantKey: boolean): Node | undefined {
  let node: Node | null | undefined = root;
  for (let i = 0; i < keys.length; i++) {
    if (!isMap(node)) return node ?? undefined;
    const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === keys[i]);
    if (!pair) return node;
    if (i === keys.length - 1 && wantKey) return pair.key as Node;
    node = pair.value as Node | null;
    if (!node) return pair.key as Node;
  }
  return node ?? undefined;
}

function collectUserSet(input: unknown, prefix = "", out = new Set<string>()): Set<string> {
  if (input && typeof input === "object" && !Array.isArray(input)) {
    for (const [k, val] of Object.entries(input)) {
      const path = prefix ? `${prefix}.${k}` : k;
      out.add(path);
      collectUserSet(val, path, out);
    }
  }
  return out;
}
