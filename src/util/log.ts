// The only module that talks to consola. Text lines for people, NDJSON (-j) for machines.
// Logs go to stderr so stdout stays clean for data (`havm status --json`, `havm version`).
import { createConsola, type ConsolaInstance, type LogObject } from "consola";

export type LogLevel = "debug" | "info" | "warning" | "error";
export type LogFormat = "text" | "json";
export type LogFields = Record<string, unknown>;

const CONSOLA_LEVEL: Record<LogLevel, number> = { error: 0, warning: 1, info: 3, debug: 4 };
const LEVEL_NAME: Record<number, LogLevel> = { 0: "error", 1: "warning", 2: "info", 3: "info", 4: "debug", 5: "debug" };

export interface LoggerOptions {
  level: LogLevel;
  format: LogFormat;
  /** Colours: only on a TTY and never with NO_COLOR. */
  color: boolean;
  /** Where lines go; defaults to process.stderr. Tests pass a collector. */
  write: (line: string) => void;
}

const secrets = new Set<string>();

/** Register a value that must never appear in a log line (API token, key material). */
export function addSecret(value: string | undefined): void {
  if (value && value.length >= 4) secrets.add(value);
}

/** Replace every registered secret in a string with "***". */
export function redact(text: string): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join("***");
  return out;
}

export function colorAllowed(stream: { isTTY?: boolean } = process.stderr, env = process.env): boolean {
  return Boolean(stream.isTTY) && !("NO_COLOR" in env) && env.TERM !== "dumb";
}

const options: LoggerOptions = {
  level: "info",
  format: "text",
  color: colorAllowed(),
  write: (line) => process.stderr.write(line + "\n"),
};

const COLORS: Record<LogLevel, string> = { debug: "\x1b[90m", info: "\x1b[36m", warning: "\x1b[33m", error: "\x1b[31m" };

function formatValue(v: unknown): string {
  if (typeof v === "string") return /[\s"=]/.test(v) || v === "" ? JSON.stringify(v) : v;
  if (v instanceof Error) return JSON.stringify(v.message);
  return typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
}

function render(level: LogLevel, msg: string, fields: LogFields | undefined, date: Date): string {
  if (options.format === "json") {
    const obj: LogFields = { time: date.toISOString(), level, msg };
    for (const [k, v] of Object.entries(fields ?? {})) {
      if (!(k in obj)) obj[k] = v instanceof Error ? v.message : v;
    }
    return redact(JSON.stringify(obj));
  }
  const time = date.toTimeString().slice(0, 8);
  const tag = level === "warning" ? "WARN " : level === "error" ? "ERROR" : level === "debug" ? "DEBUG" : "INFO ";
  const kv = Object.entries(fields ?? {}).map(([k, v]) => `${k}=${formatValue(v)}`).join(" ");
  const text = `${time} ${tag} ${msg}${kv ? " " + kv : ""}`;
  const line = options.color ? `${COLORS[level]}${text}\x1b[0m` : text;
  return redact(line);
}

function reporter(obj: LogObject): void {
  const [msg, fields] = obj.args as [unknown, LogFields | undefined];
  const level = LEVEL_NAME[obj.level] ?? "info";
  options.write(render(level, String(msg), fields, obj.date));
}

let consola: ConsolaInstance = createConsola({ level: CONSOLA_LEVEL[options.level], reporters: [{ log: reporter }] });

export function configureLogger(opts: Partial<LoggerOptions>): void {
  Object.assign(options, opts);
  consola = createConsola({ level: CONSOLA_LEVEL[options.level], reporters: [{ log: reporter }] });
}

export function loggerOptions(): Readonly<LoggerOptions> {
  return options;
}

export const log = {
  debug(msg: string, fields?: LogFields): void {
    consola.debug(msg, fields);
  },
  info(msg: string, fields?: LogFields): void {
    consola.info(msg, fields);
  },
  warn(msg: string, fields?: LogFields): void {
    consola.warn(msg, fields);
  },
  error(msg: string, fields?: LogFields): void {
    consola.error(msg, fields);
  },
  /** True when debug lines are written (to skip building expensive debug fields). */
  get debugEnabled(): boolean {
    return options.level === "debug";
  },
};
export type Logger = typeof log;
