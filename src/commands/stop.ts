// `havm stop [--force] [--timeout S]`: ask the running supervisor to stop the VM and exit, then wait until it
// has (its control socket stops answering). Protocol: src/supervise/control.ts, request
// {"cmd":"stop","force":bool,"timeoutSeconds":n}; the answer comes when the shutdown chain has finished.
// Exit codes: 0 when the guest shut down cleanly (or nothing ran), 1 when it had to be forced or did not stop.
import { defineCommand } from "citty";
import { globalArgs, loadContext } from "../cli/context.ts";
import { controlRequest, waitUntilGone, type StopReply } from "../supervise/control.ts";
import { ExitCode, inputError, isHavmError } from "../util/errors.ts";
import { log } from "../util/log.ts";

/** Extra time beyond the chain's own bound for the supervisor to answer and exit. */
const GRACE_MS = 15_000;

export default defineCommand({
  meta: { name: "stop", description: "Shut Home Assistant down gracefully and stop the running havm" },
  args: {
    ...globalArgs,
    force: { type: "boolean", description: "Skip the graceful steps: stop the VM at once" },
    timeout: { type: "string", description: "Seconds for the graceful shutdown (default: shutdown.timeout_seconds)", valueHint: "S" },
  },
  async run({ args }) {
    const ctx = loadContext(args);
    const timeoutSeconds = parseTimeout(args.timeout, ctx.config.shutdown?.timeout_seconds ?? 30);
    const socket = ctx.paths.vm.controlSocket;
    let reply: StopReply;
    try {
      log.info(args.force ? "forcing the VM off" : `stopping Home Assistant (at most ${timeoutSeconds} s)`);
      reply = (await controlRequest(socket, { cmd: "stop", force: Boolean(args.force), timeoutSeconds }, { timeoutMs: timeoutSeconds * 1000 + GRACE_MS })) as StopReply;
    } catch (e) {
      if (isHavmError(e) && e.code === "control.not-running") {
        log.info("havm is not running: nothing to stop");
        return ExitCode.ok;
      }
      // The supervisor may exit before its answer reaches us: that still counts as stopped if it is gone.
      if (!(isHavmError(e) && e.code === "control.closed")) throw e;
      reply = {};
    }
    const gone = await waitUntilGone(socket, GRACE_MS);
    if (!gone) {
      log.warn("the VM stopped but the havm supervisor is still running");
      process.exitCode = ExitCode.failure;
      return ExitCode.failure;
    }
    if (reply.clean === false) {
      log.warn(`the VM was stopped${reply.stoppedBy ? ` by ${reply.stoppedBy}` : ""}, not by a clean guest shutdown`);
      process.exitCode = ExitCode.failure;
      return ExitCode.failure;
    }
    log.info(`stopped${reply.stoppedBy ? ` (${reply.stoppedBy})` : ""}`);
    return ExitCode.ok;
  },
});

export function parseTimeout(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 3600) throw inputError(`--timeout must be a whole number of seconds from 1 to 3600, not "${value}"`, "For example: havm stop --timeout 60");
  return n;
}
