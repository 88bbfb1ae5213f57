// `havm menubar`: the macOS menu bar item (a status item listing USB accessories, attached ones checked; a
// click attaches or detaches; the VM state; Quit). A separate process that pumps AppKit on its main thread and
// talks to the running supervisor over the control socket; `havm run` starts it in a GUI session.
import { defineCommand } from "citty";
import { existsSync, rmSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { spawn } from "node:child_process";
import { configureLoggingFromFlags, globalArgs, loadContext } from "../cli/context.ts";
import { controlRequest } from "../supervise/control.ts";
import { HavmError, ExitCode } from "../util/errors.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { log } from "../util/log.ts";
import { menubarAlive } from "../menubar/launch.ts";
import { runMenubarLoop } from "../menubar/menubar.ts";

export function refuseOffMac(platform: string = process.platform): void {
  if (platform !== "darwin") {
    throw new HavmError("the menu bar is macOS only", {
      hint: "On this host use `havm status` and `havm usb list|attach|detach`.",
      exitCode: ExitCode.unsupported,
      code: "menubar.platform",
    });
  }
}

export default defineCommand({
  meta: { name: "menubar", description: "Show the macOS menu bar item (VM state, USB accessories); `havm run` starts it in a GUI session" },
  args: {
    ...globalArgs,
    socket: { type: "string", description: "The supervisor's control socket (default: the VM's)", valueHint: "PATH" },
    "exit-when-stopped": { type: "boolean", description: "Exit once the supervisor has been gone for a minute (used by `havm run`)" },
  },
  async run({ args }) {
    refuseOffMac();
    let socket = args.socket;
    if (socket) configureLoggingFromFlags(args);
    else socket = loadContext(args).paths.vm.controlSocket;
    // Next to the socket, i.e. in the VM dir (where maybeStartMenubar looks for it).
    const pidFile = join(dirname(socket), "menubar.pid");
    if (!args.socket && menubarAlive(pidFile)) {
      throw new HavmError("a havm menu bar is already running for this VM", { hint: "Look for the HA item in the menu bar.", exitCode: ExitCode.busy, code: "menubar.busy" });
    }
    const { openMenubar } = await import("../ffi/menubar.ts");
    const native = openMenubar();
    if (existsSync(dirname(pidFile))) writeFileAtomic(pidFile, `${process.pid}\n`, 0o644);
    let stop = false;
    const onSignal = () => {
      stop = true;
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
    try {
      return await runMenubarLoop({
        native,
        request: (req, timeoutMs) => controlRequest(socket, req, { timeoutMs }),
        openUrl: (url) => {
          spawn("open", [url], { stdio: "ignore", detached: true }).on("error", () => {}).unref();
        },
        log,
        now: () => Date.now(),
        sleep: (ms) => Bun.sleep(ms),
        stopRequested: () => stop,
        exitWhenStoppedMs: args["exit-when-stopped"] ? 60_000 : undefined,
      });
    } finally {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
      // Only our own pid file: a newer menu bar may have replaced it.
      try {
        if (readFileSync(pidFile, "utf8").trim() === String(process.pid)) rmSync(pidFile, { force: true });
      } catch {
        // Already gone.
      }
    }
  },
});
