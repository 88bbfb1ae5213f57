// The watchdog: when Home Assistant has failed its probes for `unhealthy_after` (after it was up once),
// restart the VM gracefully, or with `action: none` only say so. A broken guest must not loop: every
// recent restart doubles the time HA gets before the next one, and at most `max_restarts_per_hour`
// happen in any hour. The policy is pure; the driver below applies it after each probe.
import type { Config } from "../config/schema.ts";
import { errorMessage } from "../util/errors.ts";
import { resolveClock, type Clock, type HealthState } from "./health.ts";

export const HOUR_MS = 60 * 60 * 1000;

/** Label values of havm_vm_restarts_total{reason}. */
export type RestartReason = "watchdog" | "schedule" | "user" | "guest";

/** How long a restarted guest may take to boot before HA must answer (HAOS: 1-5 min, more after an update). */
export const DEFAULT_BOOT_GRACE_MS = 10 * 60 * 1000;

export interface WatchdogPolicy {
  enabled: boolean;
  unhealthyAfterMs: number;
  action: "restart" | "none";
  maxRestartsPerHour: number;
  /** After a restart, until HA answered once: wait at least this long (so a short unhealthy_after cannot
   *  restart a guest that is still booting). */
  bootGraceMs: number;
}

export function watchdogPolicy(config: Config["watchdog"], bootGraceMs = DEFAULT_BOOT_GRACE_MS): WatchdogPolicy {
  return {
    enabled: config.enabled,
    unhealthyAfterMs: config.unhealthy_after,
    action: config.action,
    maxRestartsPerHour: config.max_restarts_per_hour,
    bootGraceMs,
  };
}

export type WatchdogDecision =
  | { kind: "off" }
  | { kind: "healthy" }
  /** HA has never answered since havm started: booting, or never worked; not the watchdog's business. */
  | { kind: "never-up" }
  | { kind: "waiting"; unhealthyMs: number; thresholdMs: number }
  | { kind: "restart"; unhealthyMs: number; thresholdMs: number; message: string }
  /** action: none */
  | { kind: "report"; unhealthyMs: number; message: string }
  /** The hourly cap is reached: no restart before retryAt. */
  | { kind: "capped"; unhealthyMs: number; retryAt: number; message: string };

/** Watchdog restarts (their times) within the hour before `now`, oldest first. */
export function restartsInLastHour(restartTimes: readonly number[], now: number): number[] {
  return restartTimes.filter((t) => t > now - HOUR_MS && t <= now).sort((a, b) => a - b);
}

/** How long HA may be unhealthy before the next restart: doubled per restart in the last hour, at most an hour. */
export function unhealthyThresholdMs(policy: WatchdogPolicy, recentRestarts: number): number {
  const backedOff = policy.unhealthyAfterMs * 2 ** recentRestarts;
  return Math.min(backedOff, Math.max(policy.unhealthyAfterMs, HOUR_MS));
}

/**
 * What to do now. `unhealthySince` is the start of the current unhealthy stretch (HealthState); the stretch
 * never counts from before the watchdog's own last restart, so a missed health reset cannot cause a loop.
 */
export function decideWatchdog(
  policy: WatchdogPolicy,
  health: Pick<HealthState, "up" | "everUp" | "unhealthySince"> & { upSinceBoot?: boolean },
  restartTimes: readonly number[],
  now: number,
): WatchdogDecision {
  if (!policy.enabled) return { kind: "off" };
  if (health.up) return { kind: "healthy" };
  if (!health.everUp || health.unhealthySince === undefined) return health.everUp ? { kind: "healthy" } : { kind: "never-up" };
  const recent = restartsInLastHour(restartTimes, now);
  const since = Math.max(health.unhealthySince, recent.at(-1) ?? -Infinity);
  const unhealthyMs = Math.max(0, now - since);
  const booting = health.upSinceBoot === false;
  const thresholdMs = Math.max(unhealthyThresholdMs(policy, recent.length), booting ? policy.bootGraceMs : 0);
  if (unhealthyMs < thresholdMs) return { kind: "waiting", unhealthyMs, thresholdMs };
  const forText = formatDuration(unhealthyMs);
  if (policy.action === "none") {
    return { kind: "report", unhealthyMs, message: `Home Assistant has not answered for ${forText} (watchdog action: none, not restarting)` };
  }
  if (recent.length >= policy.maxRestartsPerHour) {
    const retryAt = recent[0]! + HOUR_MS;
    return {
      kind: "capped",
      unhealthyMs,
      retryAt,
      message:
        `Home Assistant has not answered for ${forText}, but the watchdog already restarted the VM ${recent.length} times ` +
        `in the last hour (max_restarts_per_hour: ${policy.maxRestartsPerHour}); next restart no earlier than ${new Date(retryAt).toISOString()}`,
    };
  }
  const message = booting ? `Home Assistant has not answered since the VM restarted ${forText} ago` : `Home Assistant has not answered for ${forText}`;
  return { kind: "restart", unhealthyMs, thresholdMs, message };
}

/** "5m", "1h 2m", "45s": for log lines. */
export function formatDuration(ms: number): string {
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const parts = [h ? `${h}h` : "", m ? `${m}m` : "", s || (!h && !m) ? `${s}s` : ""].filter(Boolean);
  return parts.join(" ");
}

export interface WatchdogLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface WatchdogDeps {
  /** config.watchdog (or an explicit policy). */
  config?: Config["watchdog"];
  policy?: WatchdogPolicy;
  /** HealthMonitor satisfies it. */
  health: { state(): Readonly<HealthState>; onProbe(listener: (state: HealthState) => void): () => void };
  /** Injected clock (tests), or only `now`. */
  clock?: Clock;
  now?: () => number;
  /**
   * Ask the supervisor for a graceful restart (shutdown chain, then start). The supervisor logs and counts it
   * (havm_vm_restarts_total{reason}). May return at once (fire and forget) or when the VM runs again.
   */
  onRestart: (reason: RestartReason, message: string) => void | Promise<void>;
  log: WatchdogLog;
  /**
   * Times of watchdog restarts, owned by the supervisor so that the hourly cap and the backoff survive the
   * VM restarts (pass the same array to the watchdog of every boot). Default: this watchdog's own.
   */
  history?: number[];
}

/** A Watchdog already watching the health monitor (a no-op when the watchdog is disabled). */
export function createWatchdog(deps: WatchdogDeps): Watchdog {
  const w = new Watchdog(deps);
  w.start();
  return w;
}

/** Applies the policy after every health probe. At most one restart per unhealthy stretch. */
export class Watchdog {
  readonly policy: WatchdogPolicy;
  private readonly clock: Clock;
  private readonly restartTimes: number[];
  private unsubscribe: (() => void) | undefined;
  private restarting = false;
  /** The unhealthy stretch a restart was asked for: no second restart until health starts a new one. */
  private restartedStretch: number | undefined;
  /** Log report/capped once per unhealthy stretch, not at every probe. */
  private reportedStretch: number | undefined;

  constructor(private readonly deps: WatchdogDeps) {
    if (!deps.policy && !deps.config) throw new Error("watchdog: config or policy is required");
    this.policy = deps.policy ?? watchdogPolicy(deps.config!);
    this.clock = resolveClock(deps.clock, deps.now);
    this.restartTimes = deps.history ?? [];
  }

  start(): void {
    if (this.unsubscribe || !this.policy.enabled) return;
    this.unsubscribe = this.deps.health.onProbe(() => void this.check());
    const p = this.policy;
    this.deps.log.info("watchdog on", { unhealthy_after: formatDuration(p.unhealthyAfterMs), action: p.action, max_restarts_per_hour: p.maxRestartsPerHour });
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /** Times of the watchdog's restarts within the last hour (for status output and tests). */
  restarts(): readonly number[] {
    return restartsInLastHour(this.restartTimes, this.clock.now());
  }

  /** Evaluate now; asks for a restart when the policy says so. Returns the decision. */
  async check(): Promise<WatchdogDecision> {
    const now = this.clock.now();
    const health = this.deps.health.state();
    if (this.restarting || (this.restartedStretch !== undefined && !health.up && health.unhealthySince === this.restartedStretch)) {
      return { kind: "waiting", unhealthyMs: 0, thresholdMs: 0 };
    }
    this.restartedStretch = undefined;
    const decision = decideWatchdog(this.policy, health, this.restartTimes, now);
    if (decision.kind === "healthy" || decision.kind === "off") this.reportedStretch = undefined;
    if (decision.kind === "report" || decision.kind === "capped") {
      if (this.reportedStretch !== health.unhealthySince) {
        this.reportedStretch = health.unhealthySince;
        this.deps.log.warn(decision.message, { unhealthy_s: Math.round(decision.unhealthyMs / 1000), ...(decision.kind === "capped" ? { retry_at: new Date(decision.retryAt).toISOString() } : {}) });
      }
    }
    if (decision.kind === "restart") {
      this.restartTimes.push(now);
      // Keep only what the cap looks at (the array may be shared across boots).
      while (this.restartTimes.length > 0 && this.restartTimes[0]! <= now - HOUR_MS) this.restartTimes.shift();
      this.restartedStretch = health.unhealthySince;
      this.restarting = true;
      this.deps.log.warn(`watchdog: ${decision.message}; restarting the VM`, { reason: "watchdog", unhealthy_s: Math.round(decision.unhealthyMs / 1000), restarts_last_hour: this.restartTimes.length });
      try {
        await this.deps.onRestart("watchdog", decision.message);
      } catch (e) {
        this.deps.log.error("watchdog restart failed", { error: errorMessage(e) });
        // Try again later (after the backed-off wait), even though health saw no restart.
        this.restartedStretch = undefined;
      } finally {
        // A stretch after a restart counts from when the VM is back, not from when we asked.
        const i = this.restartTimes.lastIndexOf(now);
        if (i >= 0) this.restartTimes[i] = Math.max(now, this.clock.now());
        this.restarting = false;
      }
    }
    return decision;
  }
}
