// Is Home Assistant alive? A probe loop against HA's HTTP port without credentials (a bad token would
// create a "Login attempt failed" notification at every probe). It tracks up/down, latency and how long HA
// has been unhealthy; the watchdog decides what to do about it, the metrics show it.
// Time comes from an injected clock so tests run hours of probes in milliseconds.
import { errorMessage } from "../util/errors.ts";

/** Wall-clock time and timers, injectable. Timer handles are opaque. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/** The clock to use: an injected one, else real timers with an injected `now`, else the system clock. */
export function resolveClock(clock?: Clock, now?: () => number): Clock {
  if (clock) return clock;
  return now ? { ...systemClock, now } : systemClock;
}

/**
 * One liveness probe, e.g. `() => probeHa(urls, {timeoutMs})` from src/guest/ha-api.ts. Resolving true or
 * {up: true} means HA answered; false, {up: false, error} or a rejection means it did not. The signal aborts
 * when the monitor's own timeout passes (probes that have their own timeout may ignore it).
 */
export type HaProbe = (signal: AbortSignal) => Promise<boolean | { up: boolean; error?: string; detail?: string; url?: string; status?: number }>;

/** What each probe produced, as handed to onResult. */
export interface HealthProbeResult {
  up: boolean;
  durationSeconds: number;
  error?: string;
  url?: string;
  status?: number;
}

export interface HealthState {
  /** The last probe got an answer. */
  up: boolean;
  /** HA answered at least once since this supervisor started (unhealthiness only counts after that). */
  everUp: boolean;
  /** HA answered since the last VM (re)start: false while a restarted guest boots. */
  upSinceBoot: boolean;
  probes: number;
  consecutiveFailures: number;
  lastProbeAt?: number;
  /** Latency of the last probe, answered or not (a timeout reports the timeout). */
  lastLatencyMs?: number;
  /** Why the last failed probe failed. */
  lastError?: string;
  lastUpAt?: number;
  /** Start of the current unhealthy stretch: first failed probe after HA was up, or the last VM restart. */
  unhealthySince?: number;
}

export interface HealthLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  debug(msg: string, fields?: Record<string, unknown>): void;
}

export interface HealthMonitorDeps {
  probe: HaProbe;
  /** config.watchdog.probe_interval (ms) */
  intervalMs: number;
  /** A probe that takes longer counts as failed (default: the interval, at most 10 s). */
  timeoutMs?: number;
  /** Injected clock (tests); or only `now` with real timers. */
  clock?: Clock;
  now?: () => number;
  /** Transitions (up, stopped answering) are logged here when given. */
  log?: HealthLog;
  /** HavmMetrics satisfies it (havm_ha_up, havm_ha_probe_duration_seconds). */
  metrics?: { haProbed(up: boolean, durationSeconds: number): void };
  /** Called after every probe. */
  onResult?: (result: HealthProbeResult, state: HealthState) => void;
}

/** A HealthMonitor that is already probing (probe now, then every interval). */
export function createHealthMonitor(deps: HealthMonitorDeps): HealthMonitor {
  const h = new HealthMonitor(deps);
  h.start();
  return h;
}

export class HealthMonitor {
  private readonly clock: Clock;
  private readonly timeoutMs: number;
  private s: HealthState = { up: false, everUp: false, upSinceBoot: false, probes: 0, consecutiveFailures: 0 };
  private timer: unknown;
  private running = false;
  /** Bumped by start/stop: a probe that was in flight across a stop() is dropped, not recorded. */
  private generation = 0;
  private inFlight: Promise<HealthState> | undefined;
  private readonly listeners = new Set<(state: HealthState) => void>();

  constructor(private readonly deps: HealthMonitorDeps) {
    this.clock = resolveClock(deps.clock, deps.now);
    this.timeoutMs = deps.timeoutMs ?? Math.min(deps.intervalMs, 10_000);
  }

  /** Probe now and then every interval (the next probe is scheduled after the previous one finished). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.generation++;
    this.schedule(0);
  }

  stop(): void {
    this.running = false;
    this.generation++;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  state(): Readonly<HealthState> {
    return { ...this.s };
  }

  /** How long HA has been failing since it was last up (0 while up, or before it was ever up). */
  unhealthyMs(now = this.clock.now()): number {
    return this.s.unhealthySince === undefined ? 0 : Math.max(0, now - this.s.unhealthySince);
  }

  /** Called after every probe with the new state. Returns an unsubscribe function. */
  onProbe(listener: (state: HealthState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * The VM was restarted (any reason); call it, then start(), once the VM runs again (stop() the monitor
   * while the restart is under way, so the shutdown itself does not count as unhealthy): HA is down until it answers again. If it was up before, the unhealthy
   * stretch starts now, so a guest that never comes back is still noticed (the watchdog gives a booting
   * guest its boot grace first).
   */
  vmRestarted(): void {
    this.s.up = false;
    this.s.upSinceBoot = false;
    this.s.consecutiveFailures = 0;
    this.s.unhealthySince = this.s.everUp ? this.clock.now() : undefined;
  }

  /** One probe (also used by the loop). Concurrent callers share the probe in flight. */
  probeOnce(): Promise<HealthState> {
    this.inFlight ??= this.runProbe().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private schedule(ms: number): void {
    if (!this.running) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.probeOnce().then(() => this.schedule(this.deps.intervalMs));
    }, ms);
  }

  private async runProbe(): Promise<HealthState> {
    const generation = this.generation;
    const started = this.clock.now();
    const abort = new AbortController();
    let timeoutHandle: unknown;
    type Outcome = Awaited<ReturnType<HaProbe>>;
    const timedOut = new Promise<Outcome>((resolve) => {
      timeoutHandle = this.clock.setTimeout(() => {
        abort.abort(new Error(`no answer within ${this.timeoutMs} ms`));
        resolve({ up: false, error: `no answer within ${this.timeoutMs} ms` });
      }, this.timeoutMs);
    });
    let result: Omit<HealthProbeResult, "durationSeconds">;
    try {
      const r = await Promise.race([this.deps.probe(abort.signal), timedOut]);
      if (typeof r === "boolean") result = { up: r };
      else {
        result = { up: r.up };
        const error = r.error ?? r.detail;
        if (!r.up && error) result.error = error;
        if (r.url) result.url = r.url;
        if (r.status !== undefined) result.status = r.status;
      }
    } catch (e) {
      result = { up: false, error: errorMessage(e) };
    } finally {
      this.clock.clearTimeout(timeoutHandle);
    }
    // Stopped meanwhile (the VM is being restarted): this answer says nothing about the next boot.
    if (generation !== this.generation) return this.state();
    const now = this.clock.now();
    this.record(result.up, now - started, now, result.error);
    const full: HealthProbeResult = { ...result, durationSeconds: (now - started) / 1000 };
    this.deps.onResult?.(full, this.state());
    for (const l of this.listeners) l(this.state());
    return this.state();
  }

  private record(up: boolean, latencyMs: number, now: number, detail: string | undefined): void {
    const s = this.s;
    const wasUp = s.up;
    s.probes++;
    s.lastProbeAt = now;
    s.lastLatencyMs = latencyMs;
    if (up) {
      if (!wasUp) {
        const downFor = s.unhealthySince !== undefined ? now - s.unhealthySince : undefined;
        this.deps.log?.info(s.everUp ? "Home Assistant answers again" : "Home Assistant is up", {
          latency_ms: latencyMs,
          ...(downFor !== undefined ? { unhealthy_for_s: Math.round(downFor / 1000) } : {}),
        });
      }
      s.up = true;
      s.everUp = true;
      s.upSinceBoot = true;
      s.consecutiveFailures = 0;
      s.lastUpAt = now;
      s.lastError = undefined;
      s.unhealthySince = undefined;
    } else {
      s.up = false;
      s.consecutiveFailures++;
      s.lastError = detail ?? "no answer";
      if (s.everUp && s.unhealthySince === undefined) s.unhealthySince = now;
      if (wasUp) this.deps.log?.warn("Home Assistant stopped answering", { error: s.lastError });
      else this.deps.log?.debug("Home Assistant probe failed", { error: s.lastError, failures: s.consecutiveFailures });
    }
    this.deps.metrics?.haProbed(up, latencyMs / 1000);
  }
}
