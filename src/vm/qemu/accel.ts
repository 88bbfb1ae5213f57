// KVM or TCG. `/dev/kvm` existing is not enough: under nested virtualisation (e.g. kvm_pvm) it opens fine
// but QEMU stops with a KVM internal error as soon as the firmware runs. So "auto" boots the real firmware
// under KVM for about a second and asks QMP whether the CPU is still running. The verdict is cached on
// disk, keyed by what could change it (kernel, QEMU binary, firmware).
import { accessSync, constants, copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { tmpdir, release } from "node:os";
import type { GuestArch } from "../spec.ts";
import type { QemuAccel } from "./args.ts";
import { HavmError, ExitCode, errorMessage } from "../../util/errors.ts";
import { writeFileAtomic } from "../../util/fs.ts";
import { log } from "../../util/log.ts";
import { QmpClient, type QueryStatus } from "./qmp.ts";

export type AccelMode = "auto" | "kvm" | "tcg";

export interface KvmVerdict {
  usable: boolean;
  /** One line for `havm version` / the warning. */
  reason: string;
}

export interface KvmProbeInput {
  binary: string;
  arch: GuestArch;
  firmwareCode: string;
  varsTemplate: string;
  /** Where to cache the verdict (JSON); omitted = no disk cache. */
  cacheFile?: string;
  devKvm?: string;
  /** How long the firmware must keep running under KVM. */
  runMs?: number;
  /** Prepended to the QEMU argv (the `setpriv --pdeathsig KILL` wrapper). */
  launchPrefix?: string[];
}

/** Cheap part: is there a /dev/kvm this user can open read-write? */
export function devKvmAccessible(devKvm = "/dev/kvm"): KvmVerdict {
  try {
    statSync(devKvm);
  } catch {
    return { usable: false, reason: `${devKvm}: missing` };
  }
  try {
    accessSync(devKvm, constants.R_OK | constants.W_OK);
  } catch {
    return { usable: false, reason: `${devKvm}: present but not accessible to this user (add yourself to the kvm group)` };
  }
  return { usable: true, reason: `${devKvm}: accessible` };
}

function cacheKey(input: KvmProbeInput): string {
  const st = (p: string) => {
    try {
      const s = statSync(p);
      return `${s.size}:${Math.floor(s.mtimeMs)}`;
    } catch {
      return "none";
    }
  };
  return [release(), input.arch, input.binary, st(input.binary), input.firmwareCode, st(input.firmwareCode)].join("|");
}

const memoryCache = new Map<string, KvmVerdict>();

/** Does KVM really run UEFI firmware here? Cached in memory and (when given) on disk. */
export async function probeKvm(input: KvmProbeInput): Promise<KvmVerdict> {
  const dev = devKvmAccessible(input.devKvm);
  if (!dev.usable) return dev;
  const key = cacheKey(input);
  const mem = memoryCache.get(key);
  if (mem) return mem;
  if (input.cacheFile) {
    try {
      const cached = JSON.parse(readFileSync(input.cacheFile, "utf8")) as { key?: string; verdict?: KvmVerdict };
      if (cached.key === key && cached.verdict && typeof cached.verdict.usable === "boolean") {
        memoryCache.set(key, cached.verdict);
        return cached.verdict;
      }
    } catch {
      // No cache or unreadable: probe again.
    }
  }
  const verdict = await bootFirmwareUnderKvm(input);
  memoryCache.set(key, verdict);
  if (input.cacheFile) {
    try {
      writeFileAtomic(input.cacheFile, JSON.stringify({ key, verdict, probedAt: new Date().toISOString() }) + "\n");
    } catch (e) {
      log.debug("could not cache the KVM probe", { error: errorMessage(e) });
    }
  }
  return verdict;
}

/** Forget the in-memory verdicts (tests). */
export function clearKvmProbeCache(): void {
  memoryCache.clear();
}

async function bootFirmwareUnderKvm(input: KvmProbeInput): Promise<KvmVerdict> {
  const runMs = input.runMs ?? 1500;
  const dir = mkdtempSync(join(tmpdir(), "havm-kvm-probe-"));
  const vars = join(dir, "vars.fd");
  const qmpPath = join(dir, "qmp.sock");
  let proc: ReturnType<typeof Bun.spawn> | undefined;
  let qmp: QmpClient | undefined;
  try {
    copyFileSync(input.varsTemplate, vars);
    const machine = input.arch === "x86_64" ? "q35" : "virt,gic-version=max";
    proc = Bun.spawn(
      [
        ...(input.launchPrefix ?? []),
        input.binary,
        "-machine", machine, "-accel", "kvm", "-cpu", "host",
        "-m", "256M", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "none",
        "-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${input.firmwareCode.replaceAll(",", ",,")}`,
        "-drive", `if=pflash,format=raw,unit=1,file=${vars.replaceAll(",", ",,")}`,
        "-chardev", `socket,id=qmp0,path=${qmpPath.replaceAll(",", ",,")},server=on,wait=off`,
        "-mon", "chardev=qmp0,mode=control",
      ],
      { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
    );
    const started = Date.now();
    while (!qmp) {
      if (proc.exitCode !== null) break;
      try {
        qmp = await QmpClient.connect(qmpPath, { timeoutMs: 2000 });
      } catch {
        if (Date.now() - started > 5000) break;
        await Bun.sleep(50);
      }
    }
    if (!qmp) {
      const stderr = await new Response(proc.stderr as ReadableStream).text().catch(() => "");
      const first = stderr.split("\n").find((l) => l.trim()) ?? "QEMU exited";
      return { usable: false, reason: `/dev/kvm: present but QEMU cannot use it (${first.trim()})` };
    }
    const deadline = Date.now() + runMs;
    while (Date.now() < deadline) {
      const st = await qmp.execute<QueryStatus>("query-status", undefined, { timeoutMs: 2000 }).catch(() => undefined);
      if (!st) return { usable: false, reason: "/dev/kvm: present but QEMU stopped under KVM" };
      if (!st.running && st.status !== "prelaunch") {
        return { usable: false, reason: `/dev/kvm: present but unusable (firmware stopped with status ${st.status})` };
      }
      await Bun.sleep(100);
    }
    return { usable: true, reason: "/dev/kvm: usable (firmware runs under KVM)" };
  } catch (e) {
    return { usable: false, reason: `/dev/kvm: probe failed (${errorMessage(e)})` };
  } finally {
    qmp?.close();
    if (proc && proc.exitCode === null) {
      proc.kill("SIGKILL");
      await proc.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface AccelChoice {
  accel: QemuAccel;
  /** Set when havm falls back to TCG: a warning for the log. */
  warning?: string;
  reason: string;
}

/** Decide the accelerator from config `qemu.accel` and, for "auto", the probe. */
export async function chooseAccel(mode: AccelMode, probe: () => Promise<KvmVerdict>, devKvm = "/dev/kvm"): Promise<AccelChoice> {
  if (mode === "tcg") return { accel: "tcg", reason: "qemu.accel is tcg" };
  if (mode === "kvm") {
    const dev = devKvmAccessible(devKvm);
    if (!dev.usable) {
      throw new HavmError(`qemu.accel is kvm but ${dev.reason}`, {
        hint: "Enable virtualisation (and the kvm module), give your user access to /dev/kvm, or set qemu.accel to auto or tcg.",
        exitCode: ExitCode.unsupported,
        code: "qemu.kvm",
      });
    }
    return { accel: "kvm", reason: "qemu.accel is kvm" };
  }
  const verdict = await probe();
  if (verdict.usable) return { accel: "kvm", reason: verdict.reason };
  return {
    accel: "tcg",
    reason: verdict.reason,
    warning: `KVM is not usable (${verdict.reason}); running with TCG software emulation, which is much slower`,
  };
}
