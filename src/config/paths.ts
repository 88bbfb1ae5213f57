// The one module that owns every path havm reads or writes. Everything derives from HOME (and XDG on
// Linux), so tests run in a temp HOME. Pure: takes the environment and platform as arguments.
import { join } from "node:path";
import { HavmError, ExitCode } from "../util/errors.ts";

export interface VmPaths {
  /** The VM directory: everything that makes up the user's Home Assistant. */
  dir: string;
  /** The persistent disk (raw). Never replaced once it exists. */
  disk: string;
  /** EFI variable store (VZ store on macOS, edk2 pflash vars on Linux). */
  nvram: string;
  /** Persisted machine identifier (VZGenericMachineIdentifier data representation / a UUID on qemu). */
  machineIdentifier: string;
  /** The CONFIG USB disk image with authorized_keys. */
  configDisk: string;
  /** The run lock; holds the supervisor's pid while it runs. */
  lock: string;
  /** Alias kept for the original tool's layout: same file as `lock`. */
  pidFile: string;
  /** Unix control socket of the running supervisor (0600). */
  controlSocket: string;
  /** QEMU monitor socket (qemu backend only). */
  qmpSocket: string;
  /** QEMU guest agent socket (qemu backend only). */
  guestAgentSocket: string;
  /** Guest serial console log. */
  serialLog: string;
  /** Remembered USB accessories. */
  usbRegistry: string;
  /** Small JSON state the supervisor publishes for `havm status` (ports, guest IP, start time). */
  runtimeState: string;
}

export interface HavmPaths {
  platform: NodeJS.Platform;
  home: string;
  configFile: string;
  configDir: string;
  /** Download cache: release .img.xz files and decoded .img files. `havm cleanup` empties it. */
  cacheDir: string;
  /** Data root (VM dirs live under it, plus extracted native libraries). */
  dataDir: string;
  /** Content-addressed copies of embedded native libraries (the shim). */
  libDir: string;
  vm: VmPaths;
}

export type Env = Record<string, string | undefined>;

export function vmPaths(dir: string): VmPaths {
  const lock = join(dir, "havm.pid");
  return {
    dir,
    disk: join(dir, "haos.img"),
    nvram: join(dir, "NVRAM"),
    machineIdentifier: join(dir, "MachineIdentifier"),
    configDisk: join(dir, "config.img"),
    lock,
    pidFile: lock,
    controlSocket: join(dir, "havm.sock"),
    qmpSocket: join(dir, "qmp.sock"),
    guestAgentSocket: join(dir, "qga.sock"),
    serialLog: join(dir, "serial.log"),
    usbRegistry: join(dir, "usb.json"),
    runtimeState: join(dir, "runtime.json"),
  };
}

export function resolvePaths(env: Env = process.env, platform: NodeJS.Platform = process.platform): HavmPaths {
  const home = env.HOME;
  if (!home) {
    throw new HavmError("HOME is not set, so havm cannot tell where its files live", {
      hint: "Run havm as a user with a home directory, or set HOME.",
      exitCode: ExitCode.badInput,
      code: "paths.home",
    });
  }
  // Config lives in ~/.config/havm on both platforms, like the original tool.
  const configDir = platform === "darwin" ? join(home, ".config", "havm") : join(xdg(env, "XDG_CONFIG_HOME", home, ".config"), "havm");
  const cacheDir = platform === "darwin" ? join(home, "Library", "Caches", "havm") : join(xdg(env, "XDG_CACHE_HOME", home, ".cache"), "havm");
  const dataDir =
    platform === "darwin"
      ? join(home, "Library", "Application Support", "havm")
      : join(xdg(env, "XDG_DATA_HOME", home, ".local/share"), "havm");
  return {
    platform,
    home,
    configDir,
    configFile: join(configDir, "config.yml"),
    cacheDir,
    dataDir,
    libDir: join(dataDir, "lib"),
    vm: vmPaths(join(dataDir, "vm")),
  };
}

/** XDG base dir: only absolute values count (the spec says relative ones are invalid). */
function xdg(env: Env, name: string, home: string, fallback: string): string {
  const v = env[name];
  return v && v.startsWith("/") ? v : join(home, fallback);
}

/** Expand a leading "~" or "~/" against HOME. */
export function expandHome(p: string, home: string): string {
  if (p === "~") return home;
  if (p.startsWith("~/")) return join(home, p.slice(2));
  return p;
}
