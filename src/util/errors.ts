// Errors are values with a hint for the user. main.ts maps them to a message and an exit code.

/** Exit codes that mean something to scripts and to launchd's KeepAlive. */
export const ExitCode = {
  ok: 0,
  /** Something failed at run time (download, VM crash, unclean guest shutdown). */
  failure: 1,
  /** Bad input: config file, flags, arguments, a malformed bundle. Nothing was touched. */
  badInput: 2,
  /** Another havm already runs this VM (the lock is held). */
  busy: 3,
  /** Not possible on this host or in this build (backend unusable, command not built yet). */
  unsupported: 4,
  /** Interrupted by a signal before anything could finish. */
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export interface HavmErrorOptions {
  /** What the user can do about it. */
  hint?: string;
  exitCode?: ExitCode;
  cause?: unknown;
  /** Machine-readable kind, e.g. "config.invalid", "download.digest". */
  code?: string;
}

export class HavmError extends Error {
  readonly hint?: string;
  readonly exitCode: ExitCode;
  readonly code: string;

  constructor(message: string, opts: HavmErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "HavmError";
    this.hint = opts.hint;
    this.exitCode = opts.exitCode ?? ExitCode.failure;
    this.code = opts.code ?? "havm";
  }
}

/** Bad user input (config, flags, arguments): exit code 2. */
export function inputError(message: string, hint?: string, code = "input"): HavmError {
  return new HavmError(message, { hint, exitCode: ExitCode.badInput, code });
}

export function isHavmError(e: unknown): e is HavmError {
  return e instanceof HavmError;
}

/** A short text for any thrown value, for log lines. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/** The errno-style code of a Node/Bun system error ("ENOENT", "ENOSPC", ...), if any. */
export function errnoCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}
