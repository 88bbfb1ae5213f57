// `schedule.reboot: "04:10"`: a graceful VM restart once a day at that local time, what people otherwise do
// from cron to work around HA's memory leaks. The next-occurrence math is pure and uses local Date
// arithmetic, so DST changes move the UTC instant, not the wall-clock time. The driver wakes at least every
// minute (timers drift and stall across host sleep) and skips a reboot it woke up too late for.
import { parseTimeOfDay } from "../config/units.ts";
import { errorMessage, inputError } from "../util/errors.ts";
import { resolveClock, type Clock } from "./health.ts";
import type { RestartReason } from "./watchdog.ts";

/**
 * The first instant strictly after `afterMs` whose local wall-clock time is `minutesOfDay` after midnight.
 * On a spring-forward day a time inside the gap (02:30) happens at the shifted instant JS gives it (03:30);
 * on a fall-back day a repeated time happens once, at its first occurrence.
 */
export function nextDailyOccurrence(minutesOfDay: number, afterMs: number): number {
  const after = new Date(afterMs);
  const h = Math.floor(minutesOfDay / 60);
  const m = minutesOfDay % 60;
  for (let day = 0; day <= 2; day++) {
    const t = new Date(after.getFullYear(), after.getMonth(), after.getDate() + day, h, m, 0, 0).getTime();
    if (t > afterMs) return t;
  }
  // Unreachable: two days later is always later.
  throw new Error(`no next occurrence of ${minutesOfDay} min after ${after.toISOString()}`);
}

export interface DailyRebootLog {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface DailyRebootDeps {
  /** config.schedule.reboot, "HH:MM" local time. */
  at: string;
  /** Injected clock (tests), or only `now` with real timers. */
  clock?: Clock;
  now?: () => number;
  /**
   * Ask the supervisor for a graceful restart; it logs and counts it (havm_vm_restarts_total{reason="schedule"}).
   * May return at once (fire and forget) or when the VM runs again.
   */
  onReboot: (reason: RestartReason, message: string) => void | Promise<void>;
  log: DailyRebootLog;
  /** Woke up later than this after the planned time (host asleep): skip to the next day. Default 15 min. */
  maxLateMs?: number;
  /** Longest single timer; the driver re-checks the clock at least this often. Default 60 s. */
  maxSleepMs?: number;
}

/** A DailyReboot already waiting for its time. */
export function createRebootSchedule(deps: DailyRebootDeps): DailyReboot {
  const s = new DailyReboot(deps);
  s.start();
  return s;
}

export class DailyReboot {
  private readonly clock: Clock;
  private readonly minutes: number;
  private readonly maxLateMs: number;
  private readonly maxSleepMs: number;
  private timer: unknown;
  private nextAt: number | undefined;
  private running = false;
  private firing = false;

  constructor(private readonly deps: DailyRebootDeps) {
    const minutes = parseTimeOfDay(deps.at);
    if (minutes === undefined) throw inputError(`schedule.reboot: "${deps.at}" is not a time of day`, 'Use 24-hour HH:MM, such as "04:10".');
    this.minutes = minutes;
    this.clock = resolveClock(deps.clock, deps.now);
    this.maxLateMs = deps.maxLateMs ?? 15 * 60 * 1000;
    this.maxSleepMs = deps.maxSleepMs ?? 60 * 1000;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.plan(this.clock.now());
  }

  stop(): void {
    this.running = false;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** When the next reboot is planned (epoch ms), for `havm status`. */
  next(): number | undefined {
    return this.running ? this.nextAt : undefined;
  }

  private plan(afterMs: number): void {
    this.nextAt = nextDailyOccurrence(this.minutes, afterMs);
    this.deps.log.info("scheduled reboot planned", { at: this.deps.at, next: new Date(this.nextAt).toISOString() });
    this.arm();
  }

  private arm(): void {
    if (!this.running || this.nextAt === undefined) return;
    const wait = Math.max(0, Math.min(this.nextAt - this.clock.now(), this.maxSleepMs));
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.tick();
    }, wait);
  }

  private async tick(): Promise<void> {
    if (!this.running || this.nextAt === undefined || this.firing) return;
    const now = this.clock.now();
    if (now < this.nextAt) return this.arm();
    const planned = this.nextAt;
    if (now - planned > this.maxLateMs) {
      this.deps.log.warn("scheduled reboot skipped: havm woke up too late for it (host asleep?)", { planned: new Date(planned).toISOString(), late_s: Math.round((now - planned) / 1000) });
      return this.plan(now);
    }
    this.firing = true;
    const message = `scheduled daily reboot at ${this.deps.at}`;
    this.deps.log.info(`${message}: restarting the VM`, { reason: "schedule" });
    try {
      await this.deps.onReboot("schedule", message);
    } catch (e) {
      this.deps.log.error("scheduled reboot failed", { error: errorMessage(e) });
    } finally {
      this.firing = false;
    }
    // From the planned time, not from now: a restart that takes minutes must not skip or repeat a day.
    if (this.running) this.plan(Math.max(planned, this.clock.now() - this.maxLateMs));
  }
}
