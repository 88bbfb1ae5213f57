// The foreground supervisor `havm run` becomes once the VM is prepared: boot, watch, restart when the
// watchdog or the schedule says so, shut down gracefully on SIGTERM/SIGINT/`havm stop`, and exit with a
// code that tells launchd/systemd whether the guest stopped cleanly (0) or not (1).
import type { Context } from "../cli/context.ts";
import type { Backend, BackendEvent, VmHandle, VmState } from "../vm/backend.ts";
import type { VmSpec } from "../vm/spec.ts";
import { processStartTime, type VmLock } from "./lock.ts";
import type { HavmMetrics } from "../metrics/havm-metrics.ts";
import { GUEST_PORTS } from "../vm/build-spec.ts";
import { createHaApi, haBaseUrls, type HaApi } from "../guest/ha-api.ts";
import { planShutdown, shutdownInputFromConfig, startShutdown, type RunningShutdown, type ShutdownResult } from "./shutdown.ts";
import { startControlServer, type StatusReply } from "./control.ts";
import { sshExec } from "../guest/ssh.ts";
import { HealthMonitor } from "./health.ts";
import { createWatchdog } from "./watchdog.ts";
import { createRebootSchedule } from "./schedule.ts";
import { UsbRegistry } from "../usb/registry.ts";
import { listHostUsbDevices } from "../usb/host.ts";
import { createUsbService, type UsbService } from "../usb/service.ts";
import { ExitCode, HavmError, errorMessage } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { existsSync, rmSync } from "node:fs";

export interface SupervisorHooks {
  /** Milliseconds since the epoch (tests inject a clock for the watchdog and the schedule). */
  now?: () => number;
  /** Called once the VM runs, with what `havm status` would show. */
  onRunning?: (status: SupervisorStatus) => void;
}

/** What `havm status` shows (the control protocol's StatusReply, filled in). */
export type SupervisorStatus = StatusReply & { restarts: number; startedAt?: string; metricsUrl?: string };

export interface SuperviseArgs {
  ctx: Context;
  backend: Backend;
  spec: VmSpec;
  lock: VmLock;
  metrics: HavmMetrics;
  metricsUrl?: string;
  hooks?: SupervisorHooks;
}

type StopReason = { kind: "shutdown"; source: string; force: boolean; timeoutMs?: number } | { kind: "restart"; reason: string };

export async function supervise(a: SuperviseArgs): Promise<number> {
  const { ctx, backend, spec, lock, metrics } = a;
  const { config, paths } = ctx;
  const now = a.hooks?.now ?? Date.now;
  const haApi: HaApi = createHaApi();

  let vm: VmHandle | undefined;
  let startedAt: number | undefined;
  let restarts = 0;
  let haReachable = false;
  let pending: StopReason | undefined;
  let chain: RunningShutdown | undefined;
  let activity: string | undefined;
  // `havm stop` answers once the VM is down, with how it went.
  const stopWaiters: Array<(r: { clean: boolean; stoppedBy: string | null }) => void> = [];
  let wake: (() => void) | undefined;
  const requestStop = (reason: StopReason) => {
    // A shutdown request wins over a restart; a forced one escalates a running chain.
    if (reason.kind === "shutdown" && reason.force) chain?.escalate();
    if (!pending || (pending.kind === "restart" && reason.kind === "shutdown") || (reason.kind === "shutdown" && reason.force)) pending = reason;
    wake?.();
  };

  const endpoints = async (): Promise<Record<string, string>> => {
    const out: Record<string, string> = {};
    for (const port of Object.values(GUEST_PORTS)) {
      const e = vm ? await vm.endpoint(port).catch(() => null) : null;
      if (e) out[String(port)] = `${e.host}:${e.port}`;
    }
    return out;
  };
  const haUrls = async () => (vm ? haBaseUrls(config.ha.url, [await vm.endpoint(GUEST_PORTS.haNew), await vm.endpoint(GUEST_PORTS.ha)]) : []);
  // The URL HA last answered on. A forwarded NAT port accepts connections even when nothing listens in the
  // guest, so the shutdown call must go where HA really is, not to every candidate port.
  let liveHaUrl: string | undefined;

  const usbRegistry = new UsbRegistry(paths.vm.usbRegistry);
  let usb: UsbService | undefined;

  const usbNow = (): UsbService => {
    if (usb) return usb;
    throw new HavmError(`the VM is not running right now${activity ? ` (${activity})` : ""}`, { hint: "Try again in a moment.", exitCode: ExitCode.busy, code: "usb.not-running" });
  };

  // One health monitor and one watchdog for the supervisor's life: the restart cap and backoff must
  // survive the restarts they cause. The monitor probes only while a VM runs.
  const health = new HealthMonitor({
    probe: async () => {
      const r = await haApi.probe(await haUrls(), 5000);
      if (r.up && r.url) liveHaUrl = r.url;
      return r;
    },
    intervalMs: config.watchdog.probe_interval,
    now,
    onResult: (r) => {
      metrics.haProbed(r.up, r.durationSeconds);
      if (r.up !== haReachable) log.info(r.up ? "Home Assistant is answering" : "Home Assistant stopped answering", r.up ? { url: r.url } : { error: r.error });
      haReachable = r.up;
    },
  });
  metrics.unhealthySecondsFrom(() => health.unhealthyMs() / 1000);
  const watchdog = createWatchdog({
    config: config.watchdog,
    health,
    now,
    onRestart: (reason) => requestStop({ kind: "restart", reason }),
    log,
  });

  const status = async (): Promise<SupervisorStatus> => ({
    pid: process.pid,
    state: vm?.state() ?? "stopped",
    backend: backend.name,
    ...(startedAt ? { startedAt: new Date(startedAt).toISOString() } : {}),
    ...(startedAt && vm?.state() === "running" ? { uptimeSeconds: Math.round((now() - startedAt) / 1000) } : {}),
    endpoints: await endpoints(),
    haUp: haReachable,
    ...(config.ha.url ? { haUrl: config.ha.url } : {}),
    usb: usb ? usb.attachedDevices().map((d) => ({ name: d.name ?? `${d.vendorId}:${d.productId}`, attached: true })) : [],
    ...(activity ? { activity } : {}),
    restarts,
    ...(a.metricsUrl ? { metricsUrl: a.metricsUrl } : {}),
  });

  const control = await startControlServer(paths.vm.controlSocket, {
    status: async () => ({ ok: true, ...(await status()) }),
    stop: async (req) => {
      const done = new Promise<{ clean: boolean; stoppedBy: string | null }>((res) => stopWaiters.push(res));
      const seconds = Number(req.timeoutSeconds);
      requestStop({
        kind: "shutdown",
        source: "havm stop",
        force: Boolean(req.force),
        ...(Number.isInteger(seconds) && seconds > 0 ? { timeoutMs: seconds * 1000 } : {}),
      });
      return { ok: true, ...(await done) };
    },
    "usb.list": async (req) => usbNow().handlers()["usb.list"]!(req),
    "usb.attach": async (req) => usbNow().handlers()["usb.attach"]!(req),
    "usb.detach": async (req) => usbNow().handlers()["usb.detach"]!(req),
  });

  // macOS with a GUI session: the menu bar runs as its own process (AppKit never runs in the VM process).
  if (process.platform === "darwin") {
    const { maybeStartMenubar } = await import("../menubar/launch.ts");
    maybeStartMenubar(paths, log);
  }

  // Signals: the first SIGTERM/SIGINT starts the graceful chain; a second SIGINT forces the stop.
  let sigints = 0;
  const onSigterm = () => {
    log.info("SIGTERM: shutting Home Assistant down gracefully");
    requestStop({ kind: "shutdown", source: "SIGTERM", force: false });
  };
  const onSigint = () => {
    sigints++;
    if (sigints === 1) log.info("interrupt: shutting Home Assistant down gracefully (press Ctrl+C again to force)");
    else log.warn("second interrupt: forcing the VM off");
    requestStop({ kind: "shutdown", source: "SIGINT", force: sigints > 1 });
  };
  process.on("SIGTERM", onSigterm);
  process.on("SIGINT", onSigint);
  process.on("SIGHUP", onSigterm);
  // A native hypervisor thread does not keep Bun alive: hold a timer while the VM exists.
  const keepAlive = setInterval(() => {}, 1 << 30);

  let exitCode: number = ExitCode.ok;
  try {
    for (;;) {
      vm = await backend.create(spec);
      const handle = vm;
      let stopError: string | undefined;
      const unsubscribe = handle.onEvent((e) => {
        if (e.type === "stopped-with-error") stopError = e.message;
        logVmEvent(e, metrics);
      });
      metrics.setVmState(handle.state());
      await handle.start();
      recordChild(handle, lock);
      startedAt = now();
      metrics.vmStarted();
      metrics.setVmState("running");
      log.info("VM running", { backend: backend.name, cpus: spec.cpus, memory: `${spec.memoryBytes / 1024 / 1024} MiB` });
      writeRuntimeState(paths.vm.runtimeState, await status());

      usb = createUsbService({
        vm: handle,
        registry: usbRegistry,
        listHost: () => listHostUsbDevices(),
        enabled: config.usb.enabled,
        log,
        metrics,
      });
      void usb.reattachRemembered().catch((e) => log.warn("re-attaching remembered USB accessories failed", { error: errorMessage(e) }));

      health.start();
      const schedule = config.schedule.reboot
        ? createRebootSchedule({ at: config.schedule.reboot, now, onReboot: () => requestStop({ kind: "restart", reason: "schedule" }), log })
        : undefined;
      const memoryPoll = setInterval(() => {
        void handle.memoryStats().then((m) => metrics.setMemory(spec.memoryBytes, m)).catch(() => {});
      }, 15_000);

      // Wait for: the VM stopping on its own, or a stop/restart request.
      const stoppedByItself = handle.stopped().then(() => "stopped" as const);
      while (!pending) {
        const r = await Promise.race([stoppedByItself, new Promise<"wake">((res) => (wake = () => res("wake")))]);
        if (r === "stopped") break;
      }
      health.stop();
      schedule?.stop();
      clearInterval(memoryPoll);

      let result: ShutdownResult | undefined;
      if (pending && handle.state() !== "stopped") {
        activity = pending.kind === "restart" ? `restarting (${pending.reason})` : "shutting down";
        const force = pending.kind === "shutdown" && pending.force;
        const timeoutMs = pending.kind === "shutdown" ? pending.timeoutMs : undefined;
        const input = shutdownInputFromConfig(config, paths.home, existsSync, { force, ...(timeoutMs ? { timeoutMs } : {}) });
        const plan = planShutdown({ ...input, haUrl: input.haUrl ?? liveHaUrl });
        chain = startShutdown(plan, { vm: handle, haApi, ssh: sshExec, log, onStep: (step, r) => metrics.shutdownStep(step, r) });
        result = await chain.result;
        chain = undefined;
      } else {
        await stoppedByItself;
      }
      unsubscribe();
      metrics.setVmState("stopped");
      await handle.close();
      usb = undefined;

      const reason = pending;
      pending = undefined;
      if (reason?.kind === "restart") {
        restarts++;
        metrics.vmRestarted(reason.reason);
        health.vmRestarted();
        log.info("restarting the VM", { reason: reason.reason, cleanShutdown: result?.clean ?? true });
        activity = undefined;
        continue;
      }
      if (reason?.kind === "shutdown") {
        // A hypervisor that died meanwhile (e.g. QEMU signalled from outside) is never a clean shutdown,
        // whichever step was running when it went.
        const clean = (result?.clean ?? true) && !stopError;
        exitCode = clean ? ExitCode.ok : ExitCode.failure;
        if (clean) log.info("Home Assistant shut down cleanly", { stoppedBy: result?.stoppedBy ?? "itself" });
        else if (stopError) log.error("the VM did not shut down cleanly", { error: stopError });
        else log.warn("the VM had to be forced off", { stoppedBy: result?.stoppedBy ?? "none" });
        for (const w of stopWaiters.splice(0)) w({ clean, stoppedBy: stopError ? null : (result?.stoppedBy ?? null) });
      } else {
        const err = stopError;
        exitCode = err ? ExitCode.failure : ExitCode.ok;
        if (err) log.error("the VM stopped with an error", { error: err });
        else log.info("the guest powered itself off");
        for (const w of stopWaiters.splice(0)) w({ clean: !err, stoppedBy: "guest" });
      }
      break;
    }
  } finally {
    health.stop();
    watchdog.stop();
    clearInterval(keepAlive);
    process.off("SIGTERM", onSigterm);
    process.off("SIGINT", onSigint);
    process.off("SIGHUP", onSigterm);
    await control.close().catch(() => {});
    rmSync(paths.vm.runtimeState, { force: true });
    if (vm && vm.state() !== "stopped") {
      await vm.forceStop().catch(() => {});
      await vm.close().catch(() => {});
    }
  }
  return exitCode;
}

function logVmEvent(e: BackendEvent, metrics: HavmMetrics): void {
  switch (e.type) {
    case "state":
      metrics.setVmState(e.state);
      log.debug("VM state", { state: e.state });
      break;
    case "stopped-with-error":
      log.error("the hypervisor reports an error", { error: e.message });
      break;
    case "guest-stopped":
      log.info("the guest powered off");
      break;
    case "reset":
      log.warn("the guest reset", { reason: e.reason });
      break;
    case "network-disconnected":
      log.warn("the VM's network was disconnected", { error: e.message });
      break;
    case "usb":
      log.info(`USB accessory ${e.action}`, { device: e.device.name ?? `${e.device.vendorId}:${e.device.productId}` });
      break;
    case "log":
      if (e.level === "warning") log.warn(e.message);
      else if (e.level === "info") log.info(e.message);
      else log.debug(e.message);
      break;
  }
}

/** Record the hypervisor child in the lock, so a later run can stop it if havm is killed. */
function recordChild(vm: VmHandle, lock: VmLock): void {
  if (!vm.pid) return;
  const start = processStartTime(vm.pid);
  lock.update({ childPid: vm.pid, ...(start ? { childProcStart: start } : {}) });
}

function writeRuntimeState(path: string, status: SupervisorStatus): void {
  try {
    writeFileAtomic(path, JSON.stringify(status, null, 2) + "\n");
  } catch (e) {
    log.debug("could not write runtime state", { error: errorMessage(e) });
  }
}
