// Runs one command module through citty and exits with its result: `bun run-command.ts <module> [args...]`.
// (src/main.ts owns the real dispatch; this isolates the command under test.)
import { runCommand, type CommandDef } from "citty";
import { reportError } from "../../src/main.ts";

const [modulePath, ...args] = process.argv.slice(2);
const cmd = ((await import(modulePath!)) as { default: CommandDef<any> }).default;
let code: number;
try {
  const r = await runCommand(cmd, { rawArgs: args });
  code = typeof r.result === "number" ? r.result : 0;
} catch (e) {
  code = reportError(e);
}
process.exit(code);
