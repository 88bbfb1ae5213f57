#!/usr/bin/env bun
// havm's entry point: a citty root whose subcommands load lazily (fast `havm version`), and the one
// place where errors become a message, a hint and an exit code.
import { defineCommand, renderUsage, runCommand, type CommandDef } from "citty";
import { HAVM_VERSION } from "./version.ts";
import { HavmError, ExitCode } from "./util/errors.ts";
import { colorAllowed, log } from "./util/log.ts";

type AnyCommand = CommandDef<any>;
const lazy = (load: () => Promise<{ default: AnyCommand }>) => () => load().then((m) => m.default);

export const main = defineCommand({
  meta: {
    name: "havm",
    version: HAVM_VERSION,
    description: "Run Home Assistant OS as a long-lived virtual machine, with zero configuration.",
  },
  subCommands: {
    run: lazy(() => import("./commands/run.ts")),
    prepare: lazy(() => import("./commands/prepare.ts")),
    status: lazy(() => import("./commands/status.ts")),
    stop: lazy(() => import("./commands/stop.ts")),
    "import-utm": lazy(() => import("./commands/import-utm.ts")),
    usb: lazy(() => import("./commands/usb.ts")),
    menubar: lazy(() => import("./commands/menubar.ts")),
    cleanup: lazy(() => import("./commands/cleanup.ts")),
    version: lazy(() => import("./commands/version.ts")),
  },
});

/** Map any thrown value to stderr text and an exit code. */
export function reportError(e: unknown): number {
  if (e instanceof HavmError) {
    log.error(e.message);
    if (e.hint) log.info(`hint: ${e.hint}`);
    return e.exitCode;
  }
  log.error(`unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  log.info("hint: this is a bug in havm; please report it with the lines above.");
  return ExitCode.failure;
}

const resolve = async <T,>(v: T | (() => T | Promise<T>)): Promise<T> => (typeof v === "function" ? await (v as () => T)() : v);

interface ResolvedCommand {
  cmd: AnyCommand;
  parent: AnyCommand | undefined;
  /** The arguments without the subcommand names (flags may stand anywhere). */
  args: string[];
  /** A word where a subcommand was expected that names none. */
  unknown?: string;
}

/** The (sub)command the arguments name, its parent, and its own arguments. */
async function commandFor(root: AnyCommand, argv: string[]): Promise<ResolvedCommand> {
  let cmd = root;
  let parent: AnyCommand | undefined;
  const args = [...argv];
  for (let i = 0; i < args.length; i++) {
    const token = args[i]!;
    if (token.startsWith("-")) continue;
    const subs = await resolve(cmd.subCommands);
    if (!subs || Object.keys(subs).length === 0) break;
    const next = subs[token];
    if (!next) return { cmd, parent, args, unknown: token };
    parent = cmd;
    cmd = await resolve(next);
    args.splice(i, 1);
    i--;
  }
  return { cmd, parent, args };
}

async function usage(argv: string[]): Promise<string> {
  const { cmd, parent } = await commandFor(main, argv);
  const text = await renderUsage(cmd, parent);
  // citty colours unconditionally: keep colours to terminals that want them.
  return colorAllowed(process.stdout) ? text : text.replace(/\x1b\[[0-9;]*m/g, "");
}

export async function runCli(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv.some((a) => a === "--help" || a === "-h")) {
    process.stdout.write((await usage(argv)) + "\n");
    return argv.length === 0 ? ExitCode.badInput : ExitCode.ok;
  }
  if (argv.length === 1 && argv[0] === "--version") {
    process.stdout.write(HAVM_VERSION + "\n");
    return ExitCode.ok;
  }
  try {
    // Run the leaf command ourselves: citty drops a subcommand's return value, which is our exit code.
    const target = await commandFor(main, argv);
    if (target.unknown !== undefined || (target.cmd === main) || !target.cmd.run) {
      process.stderr.write((await usage(argv)) + "\n\n");
      log.error(target.unknown !== undefined ? `Unknown command ${target.unknown}` : "No command given");
      return ExitCode.badInput;
    }
    const result = await runCommand(target.cmd, { rawArgs: target.args });
    const code = typeof result.result === "number" ? result.result : ExitCode.ok;
    return code !== ExitCode.ok ? code : Number(process.exitCode ?? ExitCode.ok);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (e instanceof Error && e.name === "CLIError" && code !== undefined) {
      process.stderr.write((await usage(argv)) + "\n\n");
      log.error(e.message.replace(/\x1b\[[0-9;]*m/g, ""));
      return ExitCode.badInput;
    }
    return reportError(e);
  }
}

if (import.meta.main) {
  const code = await runCli(process.argv.slice(2));
  process.exit(code);
}
