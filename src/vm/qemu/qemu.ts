// The QEMU backend (Linux): spawns qemu-system-* with the argv from args.ts, drives it over QMP, and maps
// QMP events onto the backend's states and events. The guest agent is used when the guest runs one.
//
// Process ownership: QEMU is started through `setpriv --pdeathsig KILL` (util-linux) when available, so it
// dies with havm even when havm is SIGKILLed. The handle exposes QEMU's pid (`QemuVm.pid`, or
// `qemuPid(handle)`) so the run lock can record it. A handle owns its process: close() kills a QEMU that
// is still running.
import { accessSync, constants, existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { cpus, totalmem, arch as osArch } from "node:os";
import { join } from "node:path";
import type { Backend, BackendEvent, BackendProbe, Endpoint, HostLimits, MemoryStats, VmHandle, VmState } from "../backend.ts";
import type { GuestArch, PortForward, UsbDeviceRef, VmSpec } from "../spec.ts";
import type { VmPaths } from "../../config/paths.ts";
import type { Config } from "../../config/schema.ts";
import { HavmError, ExitCode, errorMessage } from "../../util/errors.ts";
import { log } from "../../util/log.ts";
import { writeFileAtomic } from "../../util/fs.ts";
import { launchArgv, qemuArgs, qemuBinaryName, type QemuAccel } from "./args.ts";
import { chooseAccel, probeKvm, type AccelMode, type KvmVerdict } from "./accel.ts";
import { ensureNvram, findFirmware, type FirmwarePair } from "./firmware.ts";
import { completeForwards } from "./ports.ts";
import { QmpClient, QmpError, type BalloonGuestStats, type BalloonInfo, type QmpEvent, type QueryStatus } from "./qmp.ts";
import { GuestAgentClient } from "./qga.ts";
import { listHostUsbDevices } from "../../usb/host.ts";

const MIB = 1024 * 1024;

export interface QemuBackendOptions {
  /** The config's `qemu` section (accel, binary, firmware overrides). */
  qemu?: Partial<Config["qemu"]>;
  paths: Pick<VmPaths, "dir" | "qmpSocket" | "guestAgentSocket">;
  /** Where the KVM probe caches its verdict; omitted = probe once per process. */
  cacheDir?: string;
  /** Attach the guest agent channel (default true). */
  guestAgent?: boolean;
  /** Test seams. */
  devKvm?: string;
  bridgeConfPath?: string;
  bridgeHelperCandidates?: string[];
}

/** The host's guest architecture (QEMU runs the guest natively only on the same one). */
export function hostGuestArch(a: string = osArch()): GuestArch | undefined {
  if (a === "x64") return "x86_64";
  if (a === "arm64") return "aarch64";
  return undefined;
}

/** The Debian package with the qemu-system binary for an architecture. */
export function qemuPackage(arch: GuestArch): string {
  return arch === "x86_64" ? "qemu-system-x86" : "qemu-system-arm";
}

/** Find qemu-system-* (config `qemu.binary` wins). */
export function findQemuBinary(arch: GuestArch, configured?: string): string {
  if (configured) {
    if (!isExecutable(configured)) {
      throw new HavmError(`qemu.binary ${configured} is not an executable file`, {
        hint: "Fix qemu.binary in the config file, or remove it to use qemu-system-* from PATH.",
        exitCode: ExitCode.badInput,
        code: "qemu.binary",
      });
    }
    return configured;
  }
  const name = qemuBinaryName(arch);
  const found = Bun.which(name);
  if (!found) {
    throw new HavmError(`${name} is not installed (not found on PATH)`, {
      hint: `Install it: sudo apt-get install ${qemuPackage(arch)} qemu-utils`,
      exitCode: ExitCode.unsupported,
      code: "qemu.missing",
    });
  }
  return found;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** `setpriv` from util-linux, if present. */
export function findSetpriv(): string | undefined {
  return Bun.which("setpriv") ?? ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => isExecutable(p));
}

/** The first line of `qemu-system-* --version`, e.g. "7.2.22". */
export async function qemuVersion(binary: string): Promise<string | undefined> {
  try {
    const p = Bun.spawn([binary, "--version"], { stdout: "pipe", stderr: "ignore", stdin: "ignore" });
    const out = await new Response(p.stdout).text();
    await p.exited;
    return /version\s+(\S+)/.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

/**
 * qemuVersion, remembered in the cache dir per binary (path, size, mtime): spawning QEMU costs 10-20 ms,
 * which is most of `havm version`'s start-up budget. An upgraded QEMU changes size or mtime.
 */
export async function cachedQemuVersion(binary: string, cacheDir: string | undefined): Promise<string | undefined> {
  if (!cacheDir) return qemuVersion(binary);
  const file = join(cacheDir, "qemu-version.json");
  let key: string;
  try {
    const st = statSync(binary);
    key = `${binary}|${st.size}|${st.mtimeMs}`;
  } catch {
    return undefined;
  }
  try {
    const cached = JSON.parse(readFileSync(file, "utf8")) as { key?: string; version?: string };
    if (cached.key === key && cached.version) return cached.version;
  } catch {
    // no cache yet, or unreadable: ask QEMU
  }
  const version = await qemuVersion(binary);
  if (version) {
    try {
      writeFileAtomic(file, JSON.stringify({ key, version }) + "\n");
    } catch {
      // a read-only cache dir only costs time
    }
  }
  return version;
}

// ---------------------------------------------------------------------------------------------------
// Bridge networking: qemu-bridge-helper must be setuid root (unless havm runs as root) and
// /etc/qemu/bridge.conf must allow the bridge. Check both up front and say what to change.

export const BRIDGE_HELPER_CANDIDATES = ["/usr/lib/qemu/qemu-bridge-helper", "/usr/libexec/qemu-bridge-helper", "/usr/lib/qemu-bridge-helper"];

/** Pure: does bridge.conf (with its includes already read) allow `iface`? The helper denies on any
 *  matching deny rule, then allows on any matching allow rule ("all" matches every bridge). */
export function bridgeAclAllows(confText: string, iface: string, readInclude: (path: string) => string | undefined = () => undefined, depth = 0): boolean | "denied" {
  let allowed = false;
  for (const raw of confText.split("\n")) {
    const line = raw.replace(/#.*/, "").trim();
    if (!line) continue;
    const [cmd, arg] = line.split(/\s+/, 2);
    if (!arg) continue;
    if (cmd === "deny" && (arg === "all" || arg === iface)) return "denied";
    if (cmd === "allow" && (arg === "all" || arg === iface)) allowed = true;
    if (cmd === "include" && depth < 4) {
      const inc = readInclude(arg);
      if (inc !== undefined) {
        const r = bridgeAclAllows(inc, iface, readInclude, depth + 1);
        if (r === "denied") return "denied";
        if (r) allowed = true;
      }
    }
  }
  return allowed;
}

export function checkBridge(
  iface: string,
  opts: { bridgeConfPath?: string; helperCandidates?: string[]; uid?: number; sysClassNet?: string } = {},
): string {
  const sysNet = opts.sysClassNet ?? "/sys/class/net";
  if (!existsSync(join(sysNet, iface))) {
    throw new HavmError(`network.interface ${iface} does not exist on this host`, {
      hint: "Set network.interface to a Linux bridge (see `ip link show type bridge`), e.g. br0.",
      exitCode: ExitCode.badInput,
      code: "qemu.bridge.interface",
    });
  }
  if (!existsSync(join(sysNet, iface, "bridge"))) {
    throw new HavmError(`network.interface ${iface} is not a Linux bridge`, {
      hint: `QEMU's bridge helper attaches the VM to a bridge, not to a NIC: create a bridge (e.g. br0) with ${iface} as its port, and set network.interface: br0.`,
      exitCode: ExitCode.badInput,
      code: "qemu.bridge.notbridge",
    });
  }
  const helper = (opts.helperCandidates ?? BRIDGE_HELPER_CANDIDATES).find((p) => existsSync(p));
  if (!helper) {
    throw new HavmError("qemu-bridge-helper is not installed", {
      hint: "Install it: sudo apt-get install qemu-system-common",
      exitCode: ExitCode.unsupported,
      code: "qemu.bridge.helper",
    });
  }
  const uid = opts.uid ?? process.getuid?.() ?? 0;
  const st = statSync(helper);
  if (uid !== 0 && !(st.uid === 0 && st.mode & 0o4000)) {
    throw new HavmError(`${helper} is not setuid root, so QEMU cannot attach the VM to bridge ${iface}`, {
      hint: `Allow it once: sudo chmod u+s ${helper}  (or run havm as root, or use network.type: nat)`,
      exitCode: ExitCode.unsupported,
      code: "qemu.bridge.setuid",
    });
  }
  const confPath = opts.bridgeConfPath ?? "/etc/qemu/bridge.conf";
  let conf: string | undefined;
  try {
    conf = readFileSync(confPath, "utf8");
  } catch {
    conf = undefined;
  }
  const verdict = conf === undefined ? false : bridgeAclAllows(conf, iface, (p) => {
    try {
      return readFileSync(p, "utf8");
    } catch {
      return undefined;
    }
  });
  if (verdict !== true) {
    const why = conf === undefined ? `${confPath} does not exist` : verdict === "denied" ? `${confPath} denies ${iface}` : `${confPath} has no "allow ${iface}" line`;
    throw new HavmError(`QEMU may not use bridge ${iface}: ${why}`, {
      hint: `Allow it: echo "allow ${iface}" | sudo tee -a ${confPath}  (the file must be owned by root)`,
      exitCode: ExitCode.unsupported,
      code: "qemu.bridge.acl",
    });
  }
  return helper;
}

// ---------------------------------------------------------------------------------------------------
// USB passthrough helpers.

/** A stable QMP device id for a host USB device. */
export function usbDeviceId(d: UsbDeviceRef): string {
  const hex = (n: number) => n.toString(16).padStart(4, "0");
  let id = `usb-${hex(d.vendorId)}-${hex(d.productId)}`;
  if (d.serial) id += `-${d.serial.replace(/[^A-Za-z0-9]/g, "").slice(0, 24)}`;
  else if (d.hostBus !== undefined && d.hostAddr !== undefined) id += `-${d.hostBus}-${d.hostAddr}`;
  return id;
}

/** Pure: the balloon's guest-stats as byte figures. QEMU reports a figure the guest never sent as
 *  u64 -1 (2^64-1, which JSON.parse rounds to 1.8e19): those, and everything before the first update, are
 *  unknown. */
export function guestMemoryFigures(gs: BalloonGuestStats): Pick<MemoryStats, "guestFreeBytes" | "guestTotalBytes" | "guestAvailableBytes"> {
  if (!(gs["last-update"] > 0)) return {};
  const val = (k: string) => {
    const v = gs.stats[k];
    return v !== undefined && v >= 0 && v <= Number.MAX_SAFE_INTEGER ? v : undefined;
  };
  const out: Pick<MemoryStats, "guestFreeBytes" | "guestTotalBytes" | "guestAvailableBytes"> = {};
  const free = val("stat-free-memory");
  const total = val("stat-total-memory");
  const avail = val("stat-available-memory");
  if (free !== undefined) out.guestFreeBytes = free;
  if (total !== undefined) out.guestTotalBytes = total;
  if (avail !== undefined) out.guestAvailableBytes = avail;
  return out;
}

/** The QMP device_add arguments for a host USB device on the XHCI bus. Pure. */
export function usbHostDeviceArgs(device: UsbDeviceRef, found: { bus: number; addr: number }, matchingDevices: number): Record<string, unknown> {
  const args: Record<string, unknown> = {
    driver: "usb-host",
    bus: "xhci.0",
    id: usbDeviceId(device),
    vendorid: device.vendorId,
    productid: device.productId,
  };
  // Pin the host location only when needed to tell identical devices apart; otherwise QEMU follows the
  // device when it is re-plugged (it gets a new address).
  if (matchingDevices > 1 || device.hostBus !== undefined) {
    args.hostbus = found.bus;
    args.hostaddr = found.addr;
  }
  return args;
}

function usbPermissionHint(d: UsbDeviceRef): string {
  const hex = (n: number) => n.toString(16).padStart(4, "0");
  return (
    `Give your user access with a udev rule, e.g. /etc/udev/rules.d/50-havm-usb.rules: ` +
    `SUBSYSTEM=="usb", ATTR{idVendor}=="${hex(d.vendorId)}", ATTR{idProduct}=="${hex(d.productId)}", MODE="0660", GROUP="plugdev" ` +
    `then: sudo udevadm control --reload && sudo udevadm trigger, add yourself to plugdev, and re-plug the device.`
  );
}

// ---------------------------------------------------------------------------------------------------

export class QemuBackend implements Backend {
  readonly name = "qemu" as const;
  constructor(private readonly opts: QemuBackendOptions) {}

  private kvmProbe(binary: string, arch: GuestArch, fw: FirmwarePair): Promise<KvmVerdict> {
    if (hostGuestArch() !== arch) return Promise.resolve({ usable: false, reason: `KVM cannot run ${arch} guests on this ${osArch()} host` });
    const setpriv = findSetpriv();
    return probeKvm({
      binary,
      arch,
      firmwareCode: fw.code,
      varsTemplate: fw.varsTemplate,
      cacheFile: this.opts.cacheDir ? join(this.opts.cacheDir, "kvm-probe.json") : undefined,
      devKvm: this.opts.devKvm,
      launchPrefix: setpriv ? [setpriv, "--pdeathsig", "KILL", "--"] : undefined,
    });
  }

  async probe(): Promise<BackendProbe> {
    const arch = hostGuestArch();
    if (!arch) {
      return { backend: "qemu", usable: false, details: [`host architecture ${osArch()} is not supported`], hint: "havm runs on x86_64 and aarch64 hosts." };
    }
    const details: string[] = [];
    const hints: string[] = [];
    let binary: string | undefined;
    try {
      binary = findQemuBinary(arch, this.opts.qemu?.binary);
      details.push(`${qemuBinaryName(arch)} ${(await cachedQemuVersion(binary, this.opts.cacheDir)) ?? "(version unknown)"} at ${binary}`);
    } catch (e) {
      details.push(errorMessage(e));
      hints.push((e as HavmError).hint ?? "");
    }
    let fw: FirmwarePair | undefined;
    try {
      fw = findFirmware(arch, { code: this.opts.qemu?.firmware_code, vars: this.opts.qemu?.firmware_vars });
      details.push(`UEFI firmware: ${fw.code} (vars template ${fw.varsTemplate})`);
    } catch (e) {
      details.push(errorMessage(e));
      hints.push((e as HavmError).hint ?? "");
    }
    const mode = (this.opts.qemu?.accel ?? "auto") as AccelMode;
    if (binary && fw) {
      if (mode === "auto") {
        const v = await this.kvmProbe(binary, arch, fw);
        details.push(v.usable ? `${v.reason}: KVM` : `${v.reason}: TCG (slow)`);
      } else {
        details.push(`accelerator: ${mode} (from qemu.accel)`);
      }
    }
    if (!findSetpriv()) details.push("setpriv: missing (QEMU may outlive a killed havm; install util-linux)");
    const usable = binary !== undefined && fw !== undefined;
    return { backend: "qemu", usable, details, hint: usable ? undefined : hints.filter(Boolean).join(" ") };
  }

  limits(): HostLimits {
    const hostCpus = cpus().length || 1;
    return {
      cpus: hostCpus,
      memoryBytes: totalmem(),
      minCpus: 1,
      maxCpus: hostCpus,
      minMemoryBytes: 512 * MIB,
      maxMemoryBytes: Math.floor(totalmem() / MIB) * MIB,
    };
  }

  async create(spec: VmSpec): Promise<VmHandle> {
    const binary = findQemuBinary(spec.arch, this.opts.qemu?.binary);
    const firmware = findFirmware(spec.arch, { code: this.opts.qemu?.firmware_code, vars: this.opts.qemu?.firmware_vars });
    let bridgeHelper: string | undefined;
    if (spec.network.mode === "bridge") {
      bridgeHelper = checkBridge(spec.network.interface ?? "", {
        bridgeConfPath: this.opts.bridgeConfPath,
        helperCandidates: this.opts.bridgeHelperCandidates,
      });
    }
    return new QemuVm(spec, {
      binary,
      firmware,
      bridgeHelper,
      paths: this.opts.paths,
      guestAgent: this.opts.guestAgent ?? true,
      chooseAccel: () =>
        chooseAccel((this.opts.qemu?.accel ?? "auto") as AccelMode, () => this.kvmProbe(binary, spec.arch, firmware), this.opts.devKvm),
    });
  }
}

interface QemuVmDeps {
  binary: string;
  firmware: FirmwarePair;
  bridgeHelper?: string;
  paths: Pick<VmPaths, "dir" | "qmpSocket" | "guestAgentSocket">;
  guestAgent: boolean;
  chooseAccel: () => Promise<{ accel: QemuAccel; warning?: string; reason: string }>;
}

const STDERR_TAIL = 8192;

/** One QEMU process. */
export class QemuVm implements VmHandle {
  readonly backend = "qemu" as const;
  private currentState: VmState = "stopped";
  private readonly listeners = new Set<(e: BackendEvent) => void>();
  private proc: ReturnType<typeof Bun.spawn> | undefined;
  private qmp: QmpClient | undefined;
  private qga: GuestAgentClient | undefined;
  private stderrTail = "";
  private forwards: PortForward[] = [];
  private stopRequested = false;
  /** QEMU reported a shutdown caused by a host signal havm did not send. */
  private hostSignalled = false;
  private pendingResetReason: string | undefined;
  private stoppedPromise: Promise<void> = Promise.resolve();
  private readonly attachedUsb = new Map<string, UsbDeviceRef>();
  /** The argv QEMU was started with (after port selection), for logs and tests. */
  argv: string[] = [];
  accel: QemuAccel | undefined;

  constructor(
    readonly spec: VmSpec,
    private readonly deps: QemuVmDeps,
  ) {}

  /** QEMU's pid while it runs (the run lock records it). */
  get pid(): number | undefined {
    return this.proc && this.proc.exitCode === null ? this.proc.pid : undefined;
  }

  /** The host ports forwarded to guest ports (NAT), as started. */
  get portForwards(): PortForward[] {
    return this.forwards.map((f) => ({ ...f }));
  }

  get pidFile(): string {
    return join(this.deps.paths.dir, "qemu.pid");
  }

  state(): VmState {
    return this.currentState;
  }

  onEvent(listener: (event: BackendEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: BackendEvent): void {
    for (const l of [...this.listeners]) {
      try {
        l(e);
      } catch (err) {
        log.warn("a VM event listener failed", { error: errorMessage(err) });
      }
    }
  }

  private setState(s: VmState): void {
    if (s === this.currentState) return;
    this.currentState = s;
    this.emit({ type: "state", state: s });
  }

  stopped(): Promise<void> {
    return this.stoppedPromise;
  }

  async start(): Promise<void> {
    if (this.currentState !== "stopped") {
      throw new HavmError(`the VM is already ${this.currentState}`, { code: "qemu.state", hint: "Stop it first." });
    }
    this.setState("starting");
    try {
      const nvram = ensureNvram(this.spec.efi.varsPath, this.deps.firmware.varsTemplate, { create: this.spec.efi.create });
      log.debug(nvram === "created" ? "EFI variable store created" : "EFI variable store reused", { nvram: this.spec.efi.varsPath });
      const accel = await this.deps.chooseAccel();
      if (accel.warning) log.warn(accel.warning);
      this.accel = accel.accel;
      const pickedPorts = this.spec.network.mode === "nat" && this.spec.network.forwards.some((f) => !f.hostPort);
      for (let attempt = 1; ; attempt++) {
        this.forwards = this.spec.network.mode === "nat" ? await completeForwards(this.spec.network.forwards) : [];
        try {
          await this.launch(accel.accel);
          break;
        } catch (e) {
          // Another program may grab a picked port between our check and QEMU's bind: pick again once.
          if (attempt < 2 && pickedPorts && /host ?forward/i.test(this.stderrTail)) {
            log.debug("a forwarded port was taken; picking new ports", { stderr: this.stderrTail.trim() });
            await this.killProcess();
            continue;
          }
          throw e;
        }
      }
    } catch (e) {
      await this.killProcess();
      this.qmp?.close();
      this.qmp = undefined;
      this.setState("stopped");
      throw e;
    }
  }

  private async launch(accel: QemuAccel): Promise<void> {
    const { paths } = this.deps;
    const spec: VmSpec = { ...this.spec, network: { ...this.spec.network, forwards: this.forwards } };
    // Sockets left by a killed run would make QEMU fail to bind; the run lock guarantees they are stale.
    for (const p of [paths.qmpSocket, paths.guestAgentSocket]) rmSync(p, { force: true });
    const args = qemuArgs(spec, {
      firmwareCode: this.deps.firmware.code,
      accel,
      qmpSocket: paths.qmpSocket,
      guestAgentSocket: this.deps.guestAgent ? paths.guestAgentSocket : undefined,
      pidFile: this.pidFile,
      bridgeHelper: this.deps.bridgeHelper,
      startPaused: true,
    });
    const setpriv = findSetpriv();
    if (!setpriv) log.warn("setpriv (util-linux) not found: QEMU may outlive havm if havm is killed");
    this.argv = launchArgv(this.deps.binary, args, setpriv);
    log.debug("starting QEMU", { argv: this.argv.join(" ") });
    this.stderrTail = "";
    this.stopRequested = false;
    // Its own process group: a terminal's Ctrl+C (or systemd/timeout signalling havm's group) must reach havm
    // alone, which then shuts the guest down gracefully. setpriv's parent-death signal still ties QEMU to havm.
    this.hostSignalled = false;
    const proc = Bun.spawn(this.argv, { stdin: "ignore", stdout: "ignore", stderr: "pipe", detached: true });
    this.proc = proc;
    const stderrDone = this.drainStderr(proc.stderr as ReadableStream<Uint8Array>);
    this.stoppedPromise = proc.exited.then(async (code) => {
      await stderrDone;
      this.onExit(code, proc.signalCode ? String(proc.signalCode) : null);
    });

    const qmp = await this.connectQmp(proc);
    this.qmp = qmp;
    qmp.onEvent((e) => this.onQmpEvent(e));
    if (this.deps.guestAgent) this.qga = new GuestAgentClient(paths.guestAgentSocket);
    if (spec.balloon) {
      // Ask the balloon driver for guest memory stats every 5 s (memoryStats() reads the latest).
      await qmp
        .execute("qom-set", { path: "/machine/peripheral/balloon0", property: "guest-stats-polling-interval", value: 5 }, { timeoutMs: 5000 })
        .catch((e) => log.debug("balloon stats polling not enabled", { error: errorMessage(e) }));
    }
    await qmp.execute("cont", undefined, { timeoutMs: 10_000 });
    const st = await qmp.execute<QueryStatus>("query-status", undefined, { timeoutMs: 10_000 });
    if (!st.running) {
      throw new HavmError(`QEMU did not start the VM (status ${st.status})`, {
        hint: st.status === "internal-error" ? "The accelerator failed; set qemu.accel: tcg in the config file." : "See the serial log and QEMU's messages above.",
        code: "qemu.start",
      });
    }
    this.setState("running");
    log.info("VM running under QEMU", { pid: proc.pid, accel, forwards: this.forwards.map((f) => `${f.hostPort}->${f.guestPort}`).join(" ") });
  }

  private async connectQmp(proc: ReturnType<typeof Bun.spawn>): Promise<QmpClient> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode) {
        await Promise.race([this.stoppedPromise, Bun.sleep(1000)]);
        throw this.startFailure();
      }
      if (existsSync(this.deps.paths.qmpSocket)) {
        try {
          return await QmpClient.connect(this.deps.paths.qmpSocket, { timeoutMs: 5000 });
        } catch {
          // QEMU created the socket but is not accepting yet, or exited: loop and look again.
        }
      }
      if (Date.now() > deadline) throw new HavmError("QEMU did not open its QMP socket within 30 s", { code: "qemu.start", hint: "See QEMU's messages in the log." });
      await Bun.sleep(50);
    }
  }

  private startFailure(): HavmError {
    const text = this.stderrTail.trim();
    const lines = text.split("\n").filter((l) => l.trim());
    const last = lines.slice(-3).join(" | ") || `exit code ${this.proc?.exitCode}`;
    let hint = "See QEMU's message above; run with logging.level: debug for the full command line.";
    if (/bridge helper|failed to (parse|get) .*bridge|access denied by acl/i.test(text)) {
      hint = `QEMU's bridge helper refused: check /etc/qemu/bridge.conf has "allow ${this.spec.network.interface}" and that qemu-bridge-helper is setuid root.`;
    } else if (/host ?forward/i.test(text)) {
      hint = "A forwarded host port is in use by another program; stop it or try again.";
    } else if (/pflash|firmware|OVMF|AAVMF/i.test(text)) {
      hint = "The UEFI firmware or the NVRAM file was refused; check qemu.firmware_code/qemu.firmware_vars and the NVRAM file.";
    } else if (/get "write" lock|lock/i.test(text)) {
      hint = "Another program (another QEMU?) has the disk open. Is another havm running this VM? See `havm status`.";
    } else if (/kvm/i.test(text)) {
      hint = "KVM failed: set qemu.accel: tcg in the config file.";
    }
    return new HavmError(`QEMU exited while starting: ${last}`, { hint, code: "qemu.start" });
  }

  private async drainStderr(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) {
        const text = decoder.decode(chunk, { stream: true });
        this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL);
        for (const line of text.split("\n")) if (line.trim()) log.debug("qemu: " + line.trim());
      }
    } catch {
      // The pipe closes when QEMU exits.
    }
  }

  private onQmpEvent(e: QmpEvent): void {
    const data = e.data ?? {};
    switch (e.event) {
      case "SHUTDOWN": {
        this.setState("stopping");
        if (data.guest === true) this.emit({ type: "guest-stopped" });
        // QEMU itself got SIGINT/SIGTERM/SIGHUP from someone other than havm: the guest was cut off, not shut down.
        else if (data.reason === "host-signal" && !this.stopRequested) this.hostSignalled = true;
        break;
      }
      case "RESET": {
        const reason = this.pendingResetReason ?? String(data.reason ?? (data.guest ? "guest-reset" : "host-reset"));
        this.pendingResetReason = undefined;
        this.emit({ type: "reset", reason });
        break;
      }
      case "WATCHDOG": {
        // QEMU sends WATCHDOG, then RESET: report one reset, attributed to the watchdog.
        const action = String(data.action ?? "");
        this.emit({ type: "log", level: "warning", message: `the guest watchdog fired (action: ${action})` });
        if (action === "reset") this.pendingResetReason = "watchdog";
        break;
      }
      case "STOP":
        if (this.currentState === "running") this.setState("paused");
        break;
      case "RESUME":
        if (this.currentState === "paused") this.setState("running");
        break;
      case "GUEST_PANICKED":
        this.emit({ type: "log", level: "warning", message: "the guest kernel panicked" });
        break;
      default:
        break;
    }
  }

  private onExit(code: number | null, signal: string | null): void {
    this.qmp?.close();
    this.qmp = undefined;
    const wasStarting = this.currentState === "starting";
    if (!wasStarting && !this.stopRequested && (code !== 0 || this.hostSignalled)) {
      const lines = this.stderrTail.trim().split("\n").filter((l) => l.trim());
      const how = this.hostSignalled ? "after a signal from outside havm (the guest did not shut down)" : signal ? `on ${signal}` : `with code ${code}`;
      const message = `QEMU exited ${how}${lines.length ? `: ${lines.slice(-2).join(" | ")}` : ""}`;
      this.emit({ type: "stopped-with-error", message });
    }
    for (const d of this.attachedUsb.values()) this.emit({ type: "usb", action: "detached", device: d });
    this.attachedUsb.clear();
    if (!wasStarting) this.setState("stopped");
  }

  async requestStop(): Promise<boolean> {
    if (this.currentState !== "running" && this.currentState !== "paused") return false;
    let delivered = false;
    // HAOS's generic boards ignore the ACPI power button; qemu-ga's guest-shutdown is graceful there.
    if (this.qga && (await this.qga.ping(1000))) {
      try {
        await this.qga.shutdown("powerdown");
        delivered = true;
      } catch (e) {
        log.debug("guest agent shutdown failed", { error: errorMessage(e) });
      }
    }
    try {
      await this.qmp?.execute("system_powerdown", undefined, { timeoutMs: 5000 });
      delivered = true;
    } catch (e) {
      log.debug("system_powerdown failed", { error: errorMessage(e) });
    }
    return delivered;
  }

  async forceStop(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null) return;
    this.stopRequested = true;
    this.setState("stopping");
    // `quit` lets QEMU close the disk cleanly (flush); SIGKILL if it does not go in time.
    await this.qmp?.execute("quit", undefined, { timeoutMs: 3000 }).catch(() => undefined);
    const exited = await Promise.race([this.stoppedPromise.then(() => true), Bun.sleep(5000).then(() => false)]);
    if (!exited) {
      log.warn("QEMU did not quit in time; killing it", { pid: proc.pid });
      proc.kill("SIGKILL");
    }
    await this.stoppedPromise;
  }

  private async killProcess(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode) return;
    this.stopRequested = true;
    proc.kill("SIGKILL");
    await this.stoppedPromise;
  }

  async endpoint(guestPort: number): Promise<Endpoint | null> {
    if (this.spec.network.mode === "nat") {
      const f = this.forwards.find((x) => x.guestPort === guestPort);
      return f ? { host: "127.0.0.1", port: f.hostPort } : null;
    }
    // Bridged: only the guest knows its address; ask the agent if there is one.
    if (!this.qga || this.currentState !== "running") return null;
    const ip = await this.qga.ipv4For(this.spec.network.mac, 2000).catch(() => null);
    return ip ? { host: ip, port: guestPort } : null;
  }

  private requireQmp(): QmpClient {
    if (!this.qmp || this.currentState === "stopped") {
      throw new HavmError("the VM is not running", { code: "qemu.state", hint: "Start the VM first." });
    }
    return this.qmp;
  }

  async attachUsb(device: UsbDeviceRef): Promise<void> {
    const qmp = this.requireQmp();
    if (!this.spec.usbController) {
      throw new HavmError("this VM has no USB controller", { code: "qemu.usb", hint: "Enable usb.enabled in the config file and restart havm." });
    }
    const id = usbDeviceId(device);
    if (this.attachedUsb.has(id)) return;
    const matches = listHostUsbDevices({ platform: "linux" }).devices.filter(
      (h) =>
        h.vendorId === device.vendorId &&
        h.productId === device.productId &&
        (device.serial === undefined || h.serial === device.serial) &&
        (device.hostBus === undefined || h.bus === device.hostBus) &&
        (device.hostAddr === undefined || h.address === device.hostAddr),
    );
    const hex = (n: number) => n.toString(16).padStart(4, "0");
    const label = `${device.name ? device.name + " " : ""}(${hex(device.vendorId)}:${hex(device.productId)})`;
    const found = matches[0];
    if (!found) {
      throw new HavmError(`USB device ${label} is not connected to this host`, {
        code: "qemu.usb.missing",
        hint: "Plug it in, then check it shows in `lsusb`.",
      });
    }
    if (!found.accessible) {
      throw new HavmError(`no permission to use USB device ${label} at ${found.devNode}`, {
        code: "qemu.usb.permission",
        hint: found.accessProblem ?? usbPermissionHint(device),
      });
    }
    const args = usbHostDeviceArgs(device, { bus: found.bus, addr: found.address }, matches.length);
    try {
      await qmp.execute("device_add", args, { timeoutMs: 10_000 });
    } catch (e) {
      const msg = errorMessage(e);
      if (/permission|access|EACCES|LIBUSB_ERROR_ACCESS/i.test(msg)) {
        throw new HavmError(`QEMU could not open USB device ${label}: ${msg}`, { code: "qemu.usb.permission", hint: usbPermissionHint(device) });
      }
      throw new HavmError(`QEMU could not attach USB device ${label}: ${msg}`, { code: "qemu.usb", hint: "See the log for QEMU's messages." });
    }
    this.attachedUsb.set(id, device);
    this.emit({ type: "usb", action: "attached", device });
  }

  async detachUsb(device: UsbDeviceRef): Promise<void> {
    const qmp = this.requireQmp();
    const id = usbDeviceId(device);
    await this.deviceDel(qmp, id);
    this.attachedUsb.delete(id);
    this.emit({ type: "usb", action: "detached", device });
  }

  /** device_del and wait for QEMU's DEVICE_DELETED (USB unplug completes asynchronously). */
  private async deviceDel(qmp: QmpClient, id: string): Promise<void> {
    const deleted = qmp.waitEvent("DEVICE_DELETED", (e) => e.data?.device === id, 10_000);
    try {
      await qmp.execute("device_del", { id }, { timeoutMs: 10_000 });
    } catch (e) {
      deleted.catch(() => undefined);
      if (e instanceof QmpError && e.errorClass === "DeviceNotFound") return;
      throw e;
    }
    await deleted;
  }

  async setBalloonTarget(bytes: number): Promise<void> {
    const qmp = this.requireQmp();
    if (!this.spec.balloon) throw new HavmError("this VM has no memory balloon", { code: "qemu.balloon" });
    const target = Math.max(1, Math.floor(bytes / MIB)) * MIB;
    await qmp.execute("balloon", { value: Math.min(target, this.spec.memoryBytes) }, { timeoutMs: 5000 });
  }

  async memoryStats(): Promise<MemoryStats> {
    const qmp = this.requireQmp();
    if (!this.spec.balloon) return { targetBytes: this.spec.memoryBytes };
    const info = await qmp.execute<BalloonInfo>("query-balloon", undefined, { timeoutMs: 5000 });
    const out: MemoryStats = { targetBytes: info.actual };
    const gs = await qmp
      .execute<BalloonGuestStats>("qom-get", { path: "/machine/peripheral/balloon0", property: "guest-stats" }, { timeoutMs: 5000 })
      .catch(() => undefined);
    if (gs) Object.assign(out, guestMemoryFigures(gs));
    return out;
  }

  async close(): Promise<void> {
    this.qmp?.close();
    this.qmp = undefined;
    await this.killProcess();
  }
}

/** QEMU's pid for a handle from the qemu backend (undefined for other backends or when not running). */
export function qemuPid(handle: VmHandle): number | undefined {
  return handle instanceof QemuVm ? handle.pid : undefined;
}
