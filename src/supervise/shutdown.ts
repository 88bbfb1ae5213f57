// The graceful shutdown chain. Generic HAOS images ignore a short power-button press, so the graceful paths
// are HA's API and SSH; ACPI is tried for guests that honour it, and force stop ends every chain.
//
//   1. ha-api     POST /api/services/hassio/host_shutdown with ha.api_token (only with a token)
//   2. ssh-debug  root@guest:22222  `ha host shutdown`, then `shutdown -h now` if that fails
//   3. ssh-addon  root@guest:22     `ha host shutdown` (the SSH add-on)
//   4. acpi       the backend's power-down request (VmHandle.requestStop)
//   5. force      VmHandle.forceStop
//
// The plan (which steps apply) is pure. The runner takes every dependency as a parameter. Each step is
// bounded; the whole chain is bounded by shutdown.timeout_seconds, with the last slice kept for force stop.
// A step that certainly started a shutdown waits for the VM until the graceful deadline; one that MAYBE
// started it (HA cut the connection, an SSH session died mid-command) waits half of the remaining time and
// then falls through; one that failed falls through at once. `escalate()` (a second Ctrl+C) skips to force.
import { GUEST_PORTS } from "../vm/build-spec.ts";
import type { Config } from "../config/schema.ts";
import { expandHome } from "../config/paths.ts";
import { HA_PORTS, haBaseUrls, type HaApi } from "../guest/ha-api.ts";
import { privateKeyPathFor, SshError, type SshExecOptions, type SshExecResult } from "../guest/ssh.ts";
import type { Endpoint, VmHandle } from "../vm/backend.ts";
import { errorMessage } from "../util/errors.ts";
import { log as defaultLog, type Logger } from "../util/log.ts";

export const SHUTDOWN_STEPS = ["ha-api", "ssh-debug", "ssh-addon", "acpi", "force"] as const;
export type ShutdownStepName = (typeof SHUTDOWN_STEPS)[number];

export const SSH_DEBUG_PORT = GUEST_PORTS.debugSsh;
export const SSH_ADDON_PORT = GUEST_PORTS.sshAddon;

export interface ShutdownPlanInput {
  /** Whole-chain bound (shutdown.timeout_seconds in ms). */
  timeoutMs: number;
  haUrl?: string;
  haToken?: string;
  /** Private key for root SSH; only pass a key that exists. */
  sshPrivateKeyPath?: string;
  /** `havm stop --force`: no graceful steps. */
  force?: boolean;
  haPorts?: readonly number[];
}

export interface PlannedStep {
  step: ShutdownStepName;
  /** What the step will do, for the log. */
  what: string;
}

export interface ShutdownPlan {
  steps: PlannedStep[];
  /** Steps left out, with why (logged once at the start). */
  skipped: Array<{ step: ShutdownStepName; reason: string }>;
  timeoutMs: number;
  /** The last slice of timeoutMs, kept for force stop. */
  forceReserveMs: number;
  haUrl?: string;
  haToken?: string;
  sshPrivateKeyPath?: string;
  haPorts: readonly number[];
}

/** Pure: which steps apply, given what is configured. */
export function planShutdown(input: ShutdownPlanInput): ShutdownPlan {
  const steps: PlannedStep[] = [];
  const skipped: ShutdownPlan["skipped"] = [];
  const haPorts = input.haPorts ?? HA_PORTS;
  if (input.force) {
    for (const s of SHUTDOWN_STEPS.slice(0, -1)) skipped.push({ step: s, reason: "force stop requested" });
  } else {
    if (input.haToken) {
      const where = input.haUrl ?? `the guest's port ${haPorts.join(" or ")}`;
      steps.push({ step: "ha-api", what: `POST /api/services/hassio/host_shutdown on ${where}` });
    } else skipped.push({ step: "ha-api", reason: "no ha.api_token configured" });
    if (input.sshPrivateKeyPath) {
      steps.push({ step: "ssh-debug", what: `root@guest:${SSH_DEBUG_PORT} "ha host shutdown", then "shutdown -h now"` });
      steps.push({ step: "ssh-addon", what: `root@guest:${SSH_ADDON_PORT} "ha host shutdown" (SSH add-on)` });
    } else {
      const reason = "no private key for ssh.authorized_keys (set it to a .pub file whose private key sits next to it)";
      skipped.push({ step: "ssh-debug", reason }, { step: "ssh-addon", reason });
    }
    steps.push({ step: "acpi", what: "ask the hypervisor to press the power button (ACPI / requestStop)" });
  }
  steps.push({ step: "force", what: "stop the VM at once (like pulling the plug)" });
  const timeoutMs = Math.max(1, input.timeoutMs);
  return {
    steps,
    skipped,
    timeoutMs,
    forceReserveMs: Math.min(5000, Math.floor(timeoutMs / 5)),
    haUrl: input.haUrl,
    haToken: input.haToken,
    sshPrivateKeyPath: input.sshPrivateKeyPath,
    haPorts,
  };
}

/** The plan input from the config. `keyExists` is injected so this stays free of I/O. */
export function shutdownInputFromConfig(config: Config, home: string, keyExists: (path: string) => boolean, overrides: { force?: boolean; timeoutMs?: number } = {}): ShutdownPlanInput {
  const authorizedKeys = config.ssh?.authorized_keys;
  const pub = authorizedKeys ? expandHome(authorizedKeys, home) : undefined;
  const key = privateKeyPathFor(pub);
  return {
    timeoutMs: overrides.timeoutMs ?? (config.shutdown?.timeout_seconds ?? 30) * 1000,
    haUrl: config.ha?.url,
    haToken: config.ha?.api_token,
    sshPrivateKeyPath: key && keyExists(key) ? key : undefined,
    force: overrides.force,
  };
}

/** What happened to one attempted step (also the `result` label of havm_shutdown_step_total). */
export type StepResult = "stopped" | "no-effect" | "failed" | "escalated";

export interface StepAttempt {
  step: ShutdownStepName;
  result: StepResult;
  detail: string;
  ms: number;
}

export interface ShutdownResult {
  /** The step after which the VM stopped; "already-stopped" when it was not running; null if it never stopped. */
  stoppedBy: ShutdownStepName | "already-stopped" | null;
  /** True when a graceful step stopped the VM (exit 0 for launchd's KeepAlive). */
  clean: boolean;
  attempts: StepAttempt[];
  elapsedMs: number;
  /** HA answered 401/403 to the token. */
  tokenRejected: boolean;
}

export interface ShutdownDeps {
  vm: VmHandle;
  haApi: Pick<HaApi, "requestHostShutdown">;
  ssh: (opts: SshExecOptions) => Promise<SshExecResult>;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  log?: Logger;
  /** Metrics hook: havm_shutdown_step_total{step,result}. */
  onStep?: (step: ShutdownStepName, result: StepResult) => void;
}

export interface RunningShutdown {
  readonly result: Promise<ShutdownResult>;
  /** Skip what is left of the graceful steps and force stop now (a second Ctrl+C). */
  escalate(): void;
}

/** How a graceful step ended before waiting for the VM. */
type Kick = { kind: "started" | "maybe" | "failed"; detail: string };

const HA_REQUEST_MS = 12_000;
const SSH_COMMAND_MS = 20_000;
const SSH_CONNECT_MS = 5_000;
const ENDPOINT_MS = 3_000;
const ACPI_REQUEST_MS = 5_000;

export function startShutdown(plan: ShutdownPlan, deps: ShutdownDeps): RunningShutdown {
  const now = deps.now ?? Date.now;
  // Cancellable timers by default, so a finished chain leaves no pending timer holding the process open.
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const sleep =
    deps.sleep ??
    ((ms: number) =>
      new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          timers.delete(t);
          resolve();
        }, ms);
        timers.add(t);
      }));
  const cancelTimers = () => {
    for (const t of timers) clearTimeout(t);
    timers.clear();
  };
  const log = deps.log ?? defaultLog;
  const vm = deps.vm;

  let escalated = false;
  let fireEscalation!: () => void;
  const escalation = new Promise<"escalated">((resolve) => (fireEscalation = () => resolve("escalated")));
  let vmStopped = vm.state() === "stopped";
  const stoppedSignal = vm.stopped().then(
    () => {
      vmStopped = true;
      return "stopped" as const;
    },
    () => {
      vmStopped = true;
      return "stopped" as const;
    },
  );

  /** Race `p` against the VM stopping, escalation and a bound. */
  async function bounded<T>(p: Promise<T>, ms: number): Promise<{ v: T } | "stopped" | "escalated" | "timeout"> {
    p.catch(() => {});
    return Promise.race([
      p.then((v) => ({ v })),
      stoppedSignal,
      escalation,
      sleep(Math.max(0, ms)).then(() => "timeout" as const),
    ]);
  }

  async function endpointOf(port: number, budget: number): Promise<Endpoint | null | string> {
    try {
      const r = await bounded(vm.endpoint(port), Math.min(ENDPOINT_MS, budget));
      if (typeof r === "object") return r.v;
      return r === "timeout" ? "the guest address lookup timed out" : null;
    } catch (e) {
      return `the guest address lookup failed: ${errorMessage(e)}`;
    }
  }

  async function kickHaApi(budget: number): Promise<Kick> {
    let bases: string[];
    if (plan.haUrl) bases = haBaseUrls(plan.haUrl, []);
    else {
      const eps: Array<Endpoint | null> = [];
      for (const port of plan.haPorts) {
        const e = await endpointOf(port, budget);
        if (e && typeof e === "object") eps.push(e);
      }
      bases = haBaseUrls(undefined, eps);
    }
    if (bases.length === 0) return { kind: "failed", detail: "the guest's address is not known yet" };
    const errors: string[] = [];
    for (const base of bases) {
      const r = await deps.haApi.requestHostShutdown(base, plan.haToken!, Math.max(1, Math.min(HA_REQUEST_MS, budget)));
      if (r.outcome === "accepted") return { kind: "started", detail: `${base}: ${r.detail}` };
      if (r.outcome === "maybe-started") return { kind: "maybe", detail: `${base}: ${r.detail}` };
      if (r.outcome === "unauthorized") {
        tokenRejected = true;
        return { kind: "failed", detail: `${base}: ${r.detail}` };
      }
      errors.push(`${base}: ${r.detail}`);
    }
    return { kind: "failed", detail: errors.join("; ") };
  }

  async function kickSsh(port: number, commands: readonly string[], budget: number): Promise<Kick> {
    const ep = await endpointOf(port, budget);
    if (ep === null) return { kind: "failed", detail: `no address for guest port ${port} yet` };
    if (typeof ep === "string") return { kind: "failed", detail: ep };
    const tried: string[] = [];
    for (const command of commands) {
      try {
        const r = await deps.ssh({
          host: ep.host,
          port: ep.port,
          username: "root",
          privateKeyPath: plan.sshPrivateKeyPath!,
          command,
          timeoutMs: Math.max(1, Math.min(SSH_COMMAND_MS, budget)),
          connectTimeoutMs: SSH_CONNECT_MS,
        });
        if (r.exitCode === 0) return { kind: "started", detail: `"${command}" exited 0` };
        if (r.exitCode === null) return { kind: "maybe", detail: `"${command}" ended without an exit status (session cut)` };
        const why = (r.stderr || r.stdout).trim().split("\n").pop() ?? "";
        tried.push(`"${command}" exited ${r.exitCode}${why ? `: ${why.slice(0, 200)}` : ""}`);
      } catch (e) {
        if (e instanceof SshError && e.commandSent) return { kind: "maybe", detail: e.message };
        return { kind: "failed", detail: [...tried, errorMessage(e)].join("; ") };
      }
    }
    return { kind: "failed", detail: tried.join("; ") };
  }

  async function kickAcpi(budget: number): Promise<Kick> {
    const r = await bounded(vm.requestStop(), Math.min(ACPI_REQUEST_MS, budget));
    if (r === "stopped" || r === "escalated") return { kind: "started", detail: "power-down request delivered" };
    if (r === "timeout") return { kind: "failed", detail: "the hypervisor did not take the power-down request in time" };
    const delivered = r.v;
    return delivered ? { kind: "started", detail: "power-down request delivered" } : { kind: "failed", detail: "the hypervisor did not deliver the power-down request" };
  }

  let tokenRejected = false;

  async function run(): Promise<ShutdownResult> {
    const t0 = now();
    const deadline = t0 + plan.timeoutMs;
    const gracefulDeadline = deadline - plan.forceReserveMs;
    const attempts: StepAttempt[] = [];
    const done = (stoppedBy: ShutdownResult["stoppedBy"], clean: boolean): ShutdownResult => ({
      stoppedBy,
      clean,
      attempts,
      elapsedMs: now() - t0,
      tokenRejected,
    });
    const record = (step: ShutdownStepName, result: StepResult, detail: string, startedAt: number) => {
      attempts.push({ step, result, detail, ms: now() - startedAt });
      deps.onStep?.(step, result);
    };

    if (vmStopped) {
      log.info("shutdown: the VM is not running");
      return done("already-stopped", true);
    }
    for (const s of plan.skipped) log.debug(`shutdown: skipping ${s.step}: ${s.reason}`);
    log.info(`shutdown: stopping the VM (at most ${Math.round(plan.timeoutMs / 1000)} s)`, {
      steps: plan.steps.map((s) => s.step).join(","),
    });

    for (const { step, what } of plan.steps) {
      if (step === "force") break;
      if (escalated) break;
      const remaining = gracefulDeadline - now();
      if (remaining <= 0) {
        log.warn(`shutdown: no time left for ${step} and later graceful steps; forcing`);
        break;
      }
      const startedAt = now();
      // Leave later graceful steps a chance: a step may use at most half of what is left, unless it is the last.
      const isLastGraceful = plan.steps.filter((s) => s.step !== "force").at(-1)?.step === step;
      const budget = isLastGraceful ? remaining : remaining / 2;
      log.info(`shutdown: trying ${step}: ${what}`);
      const kickPromise =
        step === "ha-api"
          ? kickHaApi(budget)
          : step === "ssh-debug"
            ? kickSsh(SSH_DEBUG_PORT, ["ha host shutdown", "shutdown -h now"], budget)
            : step === "ssh-addon"
              ? kickSsh(SSH_ADDON_PORT, ["ha host shutdown"], budget)
              : kickAcpi(budget);
      const kicked = await bounded(
        kickPromise.catch((e): Kick => ({ kind: "failed", detail: errorMessage(e) })),
        budget + 250,
      );
      if (kicked === "stopped") {
        record(step, "stopped", "the VM stopped while the step ran", startedAt);
        log.info(`shutdown: the VM stopped (${step})`, { seconds: secs(now() - t0) });
        return done(step, true);
      }
      if (kicked === "escalated") {
        record(step, "escalated", "interrupted", startedAt);
        break;
      }
      if (kicked === "timeout") {
        record(step, "failed", "ran out of time", startedAt);
        log.warn(`shutdown: ${step} did not finish in time; moving on`);
        continue;
      }
      const kick = kicked.v;
      if (kick.kind === "failed") {
        record(step, "failed", kick.detail, startedAt);
        log.warn(`shutdown: ${step} failed: ${kick.detail}; moving on`);
        continue;
      }
      const left = gracefulDeadline - now();
      const waitMs = kick.kind === "started" ? left : left / 2;
      log.info(`shutdown: ${step}: ${kick.kind === "started" ? "shutdown started" : "shutdown maybe started"} (${kick.detail}); waiting up to ${secs(waitMs)} s for the VM to stop`);
      const waited = await bounded(new Promise<never>(() => {}), waitMs);
      if (waited === "stopped") {
        record(step, "stopped", kick.detail, startedAt);
        log.info(`shutdown: the VM stopped cleanly after ${step}`, { seconds: secs(now() - t0) });
        return done(step, true);
      }
      if (waited === "escalated") {
        record(step, "escalated", kick.detail, startedAt);
        break;
      }
      record(step, "no-effect", kick.detail, startedAt);
      log.warn(`shutdown: the VM still runs ${secs(now() - startedAt)} s after ${step}; moving on`);
    }

    if (vmStopped) return done(attempts.at(-1)?.step ?? "already-stopped", true);
    const startedAt = now();
    const forceMs = Math.max(plan.forceReserveMs, deadline - startedAt, 1000);
    log.warn(`shutdown: forcing the VM off${escalated ? " (interrupted again)" : ""}`);
    let forced: { v: undefined } | "stopped" | "timeout";
    try {
      // escalation already fired cannot interrupt force stop itself: race only the VM and the bound.
      forced = await Promise.race([
        vm.forceStop().then(() => ({ v: undefined })),
        stoppedSignal,
        sleep(forceMs).then(() => "timeout" as const),
      ]);
    } catch (e) {
      record("force", "failed", errorMessage(e), startedAt);
      log.error(`shutdown: force stop failed: ${errorMessage(e)}`);
      return done(null, false);
    }
    if (forced === "timeout" && !vmStopped) {
      record("force", "failed", `the VM did not stop within ${secs(forceMs)} s`, startedAt);
      log.error(`shutdown: the VM did not stop even when forced (${secs(forceMs)} s)`);
      return done(null, false);
    }
    record("force", "stopped", "forced off", startedAt);
    log.warn("shutdown: the VM was forced off (not a clean guest shutdown)", { seconds: secs(now() - t0) });
    return done("force", false);
  }

  return {
    result: run().finally(cancelTimers),
    escalate() {
      if (escalated) return;
      escalated = true;
      log.warn("shutdown: interrupted again: skipping to force stop");
      fireEscalation();
    },
  };
}

function secs(ms: number): number {
  return Math.round(ms / 100) / 10;
}
