// Progress of a long byte transfer: a one-line bar (bytes, rate, ETA) on a terminal, periodic log lines
// otherwise (pipes, services, JSON logging). Copes with an unknown total.
import { formatSize } from "../config/units.ts";
import { log, loggerOptions } from "./log.ts";

export interface ProgressReporter {
  update(done: number, total?: number): void;
  /** Final line (or log entry) and stop. Idempotent. */
  finish(message?: string): void;
}

export interface ProgressOptions {
  total?: number;
  /** Where the bar goes; stderr by default. The bar is used only if it is a TTY and logging is text. */
  stream?: { isTTY?: boolean; columns?: number; write(s: string): unknown };
  /** Seconds between log lines when there is no bar. */
  logEverySeconds?: number;
  now?: () => number;
  /** Force the mode (tests). */
  mode?: "bar" | "log";
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** The bar line without terminal control characters (pure, tested). */
export function renderBar(label: string, done: number, total: number | undefined, rate: number, width: number): string {
  const rateText = `${formatSize(Math.round(rate))}/s`;
  if (total === undefined || total <= 0) return `${label} ${formatSize(done)} ${rateText}`;
  const frac = Math.min(1, done / total);
  const eta = rate > 0 ? (total - done) / rate : Infinity;
  const tail = ` ${formatSize(done)} / ${formatSize(total)} ${rateText} ETA ${formatDuration(eta)}`;
  const pct = `${String(Math.floor(frac * 100)).padStart(3)}%`;
  const barWidth = Math.max(10, Math.min(40, width - label.length - tail.length - pct.length - 4));
  const filled = Math.round(frac * barWidth);
  return `${label} [${"#".repeat(filled)}${"-".repeat(barWidth - filled)}] ${pct}${tail}`;
}

export function createProgress(label: string, opts: ProgressOptions = {}): ProgressReporter {
  const stream = opts.stream ?? process.stderr;
  const now = opts.now ?? (() => performance.now() / 1000);
  const mode = opts.mode ?? (stream.isTTY && loggerOptions().format === "text" ? "bar" : "log");
  const logEvery = opts.logEverySeconds ?? 5;
  const started = now();
  let total = opts.total;
  let done = 0;
  let lastDraw = -Infinity;
  let lastLog = started;
  let finished = false;
  // Rate over a sliding window so a resumed or bursty transfer shows a current speed.
  const samples: Array<[number, number]> = [[started, 0]];

  const rate = (t: number): number => {
    while (samples.length > 2 && t - samples[0]![0] > 5) samples.shift();
    const [t0, d0] = samples[0]!;
    return t > t0 ? (done - d0) / (t - t0) : 0;
  };

  return {
    update(d, t) {
      if (finished) return;
      done = d;
      if (t !== undefined) total = t;
      const ts = now();
      if (ts - samples[samples.length - 1]![0] >= 0.25) samples.push([ts, done]);
      if (mode === "bar") {
        if (ts - lastDraw < 0.1) return;
        lastDraw = ts;
        stream.write(`\r${renderBar(label, done, total, rate(ts), stream.columns ?? 80)}\x1b[K`);
      } else if (ts - lastLog >= logEvery) {
        lastLog = ts;
        const r = rate(ts);
        const fields: Record<string, unknown> = { done: formatSize(done), rate: `${formatSize(Math.round(r))}/s` };
        if (total) {
          fields.total = formatSize(total);
          fields.percent = Math.floor((done / total) * 100);
          fields.eta = formatDuration(r > 0 ? (total - done) / r : Infinity);
        }
        log.info(label, fields);
      }
    },
    finish(message) {
      if (finished) return;
      finished = true;
      const secs = Math.max(now() - started, 1e-6);
      if (mode === "bar") {
        stream.write(`\r${renderBar(label, done, total ?? done, done / secs, stream.columns ?? 80)}\x1b[K\n`);
      }
      if (message) log.info(message, { bytes: formatSize(done), seconds: Number(secs.toFixed(1)) });
    },
  };
}
