// What every command starts from: global flags, the paths, the validated config, a configured logger.
import type { ArgsDef } from "citty";
import { resolvePaths, type HavmPaths } from "../config/paths.ts";
import { loadConfigFile, type LoadedConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { addSecret, colorAllowed, configureLogger, type LogFormat, type LogLevel } from "../util/log.ts";
import { inputError } from "../util/errors.ts";

export const globalArgs = {
  config: { type: "string", description: "Config file (default: ~/.config/havm/config.yml)", valueHint: "PATH" },
  verbose: { type: "boolean", alias: "v", description: "Debug logging (same as --log-level debug)" },
  "log-json": { type: "boolean", alias: "j", description: "Log as JSON lines (same as --log-format json)" },
  "log-level": { type: "string", description: "debug | info | warning | error", valueHint: "LEVEL" },
  "log-format": { type: "string", description: "text | json", valueHint: "FORMAT" },
} as const satisfies ArgsDef;

export interface GlobalFlags {
  config?: string;
  verbose?: boolean;
  "log-json"?: boolean;
  "log-level"?: string;
  "log-format"?: string;
}

export interface Context {
  paths: HavmPaths;
  loaded: LoadedConfig;
  config: Config;
}

const LEVELS = ["debug", "info", "warning", "error"] as const;
const FORMATS = ["text", "json"] as const;

/** Configure logging from flags alone (before the config file is read, so its errors log right). */
export function configureLoggingFromFlags(flags: GlobalFlags, config?: Config): void {
  const level = flags.verbose ? "debug" : (flags["log-level"] ?? config?.logging.level ?? "info");
  const format = flags["log-json"] ? "json" : (flags["log-format"] ?? config?.logging.format ?? "text");
  if (!LEVELS.includes(level as LogLevel)) throw inputError(`--log-level must be one of ${LEVELS.join(", ")}, not "${level}"`);
  if (!FORMATS.includes(format as LogFormat)) throw inputError(`--log-format must be one of ${FORMATS.join(", ")}, not "${format}"`);
  configureLogger({ level: level as LogLevel, format: format as LogFormat, color: format === "text" && colorAllowed() });
}

/** Paths + config + logger for a command. Throws ConfigError (exit 2) before anything is touched. */
export function loadContext(flags: GlobalFlags, env = process.env): Context {
  configureLoggingFromFlags(flags);
  const paths = resolvePaths(env);
  const loaded = loadConfigFile(flags.config ?? paths.configFile, { mustExist: flags.config !== undefined });
  configureLoggingFromFlags(flags, loaded.config);
  addSecret(loaded.config.ha.api_token);
  return { paths, loaded, config: loaded.config };
}
