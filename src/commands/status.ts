// `havm status [--json]`: ask the running supervisor over its control socket (see src/supervise/control.ts).
// Exit codes follow the LSB/systemctl convention for status: 0 when the supervisor runs, 3 when it does not
// (it prints "not running"; with --json: {"running": false}). Any other failure exits 1.
// run() returns the exit code and also sets process.exitCode (citty drops a subcommand's return value).
// --json is the global flag (it also switches log lines to JSON, which go to stderr): stdout gets one JSON object.
import { defineCommand } from "citty";
import { globalArgs, loadContext } from "../cli/context.ts";
import { controlRequest, type StatusReply } from "../supervise/control.ts";
import { ExitCode, isHavmError } from "../util/errors.ts";

/** LSB: "program is not running". */
export const STATUS_NOT_RUNNING = 3;

export default defineCommand({
  meta: { name: "status", description: "Show whether the VM runs, its address, uptime, Home Assistant and USB accessories" },
  args: {
    ...globalArgs,
  },
  async run({ args }) {
    const ctx = loadContext(args);
    const socket = ctx.paths.vm.controlSocket;
    let reply: StatusReply & Record<string, unknown>;
    try {
      reply = await controlRequest(socket, { cmd: "status" }, { timeoutMs: 5000 });
    } catch (e) {
      if (isHavmError(e) && e.code === "control.not-running") {
        process.stdout.write(args.json ? JSON.stringify({ running: false }) + "\n" : "not running\n");
        process.exitCode = STATUS_NOT_RUNNING;
        return STATUS_NOT_RUNNING;
      }
      throw e;
    }
    const { ok: _ok, ...rest } = reply;
    process.stdout.write(args.json ? JSON.stringify({ running: true, ...rest }) + "\n" : formatStatus(reply));
    return ExitCode.ok;
  },
});

/** Human-readable status, one fact per line. Pure. */
export function formatStatus(s: StatusReply): string {
  const lines: string[] = [];
  lines.push(`state:    ${s.state ?? "unknown"}${s.activity ? ` (${s.activity})` : ""}`);
  if (s.backend) lines.push(`backend:  ${s.backend}`);
  if (s.pid !== undefined) lines.push(`pid:      ${s.pid}`);
  if (s.uptimeSeconds !== undefined) lines.push(`uptime:   ${formatDuration(s.uptimeSeconds)}`);
  if (s.guestIp) lines.push(`guest IP: ${s.guestIp}`);
  for (const [guest, host] of Object.entries(s.endpoints ?? {})) lines.push(`port:     ${guest} -> ${host}`);
  if (s.haUp !== undefined) lines.push(`HA:       ${s.haUp ? "answering" : "not answering"}${s.haUrl ? ` (${s.haUrl})` : ""}`);
  const usb = s.usb ?? [];
  lines.push(`USB:      ${usb.length === 0 ? "none" : usb.map((u) => `${u.name}${u.attached === false ? " (detached)" : ""}`).join(", ")}`);
  return lines.join("\n") + "\n";
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const parts = [d ? `${d}d` : "", h ? `${h}h` : "", m ? `${m}m` : "", `${s % 60}s`].filter(Boolean);
  return parts.join(" ");
}
