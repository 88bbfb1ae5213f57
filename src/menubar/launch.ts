// Starting the menu bar from `havm run`: a separate `havm menubar` process (same binary), detached, so the VM
// process never runs AppKit and keeps working under launchd without a GUI session (vz-facts.md "Menu bar").
// The decision is pure (menubarDecision); maybeStartMenubar does the I/O around it.
import { spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import type { HavmPaths } from "../config/paths.ts";
import { errorMessage } from "../util/errors.ts";

export interface MenubarDecisionInput {
  platform: string;
  env: Record<string, string | undefined>;
  /** `launchctl managername`: "Aqua" in a GUI login session, "Background"/"System" otherwise. */
  managerName: string | undefined;
  /** A menu bar process for this VM is already alive. */
  alreadyRunning: boolean;
}

export interface MenubarDecision {
  start: boolean;
  reason: string;
}

/** Whether `havm run` should start the menu bar. Pure. */
export function menubarDecision(i: MenubarDecisionInput): MenubarDecision {
  if (i.platform !== "darwin") return { start: false, reason: "the menu bar is macOS only" };
  const off = i.env.HAVM_NO_MENUBAR;
  if (off !== undefined && off !== "" && off !== "0") return { start: false, reason: "HAVM_NO_MENUBAR is set" };
  if (i.managerName !== "Aqua") return { start: false, reason: `no GUI session (launchctl managername: ${i.managerName ?? "unknown"})` };
  if (i.alreadyRunning) return { start: false, reason: "a menu bar for this VM is already running" };
  return { start: true, reason: "GUI session" };
}

/** The menu bar's pid file, next to the VM's other runtime files. */
export function menubarPidFile(paths: HavmPaths): string {
  return join(paths.vm.dir, "menubar.pid");
}

/** The menu bar's log (its stdout/stderr when started by `havm run`). */
export function menubarLogFile(paths: HavmPaths): string {
  return join(paths.vm.dir, "menubar.log");
}

/** True when the pid file names a live process that is a havm menu bar (not a recycled pid). */
export function menubarAlive(pidFile: string, commandOf: (pid: number) => string | undefined = psCommand): boolean {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(pidFile, "utf8").trim(), 10);
  } catch {
    return false;
  }
  if (!Number.isInteger(pid) || pid <= 1) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: alive but someone else's, so not ours.
    return false;
  }
  const cmd = commandOf(pid);
  return cmd === undefined || /\bmenubar\b/.test(cmd);
}

function psCommand(pid: number): string | undefined {
  const r = spawnSync("ps", ["-p", String(pid), "-o", "command="], { encoding: "utf8", timeout: 2000 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** `launchctl managername` (macOS), undefined when it cannot be asked. */
export function launchctlManagerName(): string | undefined {
  const r = spawnSync("launchctl", ["managername"], { encoding: "utf8", timeout: 2000 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/**
 * argv that runs this havm again: the compiled binary is process.execPath itself; in a checkout it is
 * `bun <path to src/main.ts>`.
 */
export function selfCommand(execPath: string = process.execPath, main: string = Bun.main): string[] {
  const isBun = /^bun(-debug)?(\.exe)?$/.test(basename(execPath));
  return isBun && existsSync(main) ? [execPath, main] : [execPath];
}

export interface StartMenubarDeps {
  platform?: string;
  env?: Record<string, string | undefined>;
  managerName?: () => string | undefined;
  alive?: (pidFile: string) => boolean;
  spawnDetached?: (argv: string[], logFile: string) => number | undefined;
}

function spawnDetached(argv: string[], logFile: string): number | undefined {
  const fd = openSync(logFile, "a", 0o600);
  try {
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ["ignore", fd, fd], env: process.env });
    child.on("error", () => {});
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/**
 * Start `havm menubar` for this VM when a GUI session is present on macOS (see menubarDecision). Never throws:
 * the menu bar is a convenience and must not keep the VM from starting.
 */
export function maybeStartMenubar(
  paths: HavmPaths,
  log: { info(msg: string, f?: Record<string, unknown>): void; debug(msg: string, f?: Record<string, unknown>): void; warn(msg: string, f?: Record<string, unknown>): void },
  deps: StartMenubarDeps = {},
): MenubarDecision & { pid?: number } {
  try {
    const platform = deps.platform ?? process.platform;
    const env = deps.env ?? process.env;
    const pidFile = menubarPidFile(paths);
    const decision = menubarDecision({
      platform,
      env,
      // Only ask launchctl where it exists.
      managerName: platform === "darwin" ? (deps.managerName ?? launchctlManagerName)() : undefined,
      alreadyRunning: platform === "darwin" && (deps.alive ?? menubarAlive)(pidFile),
    });
    if (!decision.start) {
      log.debug("menu bar not started", { reason: decision.reason });
      return decision;
    }
    const argv = [...selfCommand(), "menubar", "--socket", paths.vm.controlSocket, "--exit-when-stopped"];
    const pid = (deps.spawnDetached ?? spawnDetached)(argv, menubarLogFile(paths));
    log.info("menu bar started", { pid, log: menubarLogFile(paths) });
    return { ...decision, pid };
  } catch (e) {
    log.warn("cannot start the menu bar", { error: errorMessage(e) });
    return { start: false, reason: `cannot start: ${errorMessage(e)}` };
  }
}
