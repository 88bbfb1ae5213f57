// Typed metric families (gauge, counter, histogram-lite) keyed by their label values. No client library:
// the registry only holds numbers; render.ts turns a snapshot into the text format.
// Series are keyed by their label values, so the same series can never appear twice in a scrape.

export type MetricType = "gauge" | "counter" | "histogram";

/** Label values of one series, by label name. */
export type Labels<L extends string> = { readonly [K in L]: string };

/** One exposed line: the sample's full name (family name plus _bucket/_sum/_count for histograms). */
export interface Sample {
  name: string;
  labels: Readonly<Record<string, string>>;
  value: number;
}

/** What render.ts needs about one family: pure data. */
export interface FamilySnapshot {
  name: string;
  help: string;
  type: MetricType;
  samples: Sample[];
}

const METRIC_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

function checkNames(name: string, type: MetricType, labelNames: readonly string[]): void {
  // Colons are reserved for recording rules; promtool's lint flags them, so refuse them here.
  if (!METRIC_NAME_RE.test(name)) throw new Error(`invalid metric name "${name}"`);
  if (type === "counter" && !name.endsWith("_total")) throw new Error(`counter "${name}" must end in _total`);
  if (type !== "counter" && name.endsWith("_total")) throw new Error(`non-counter "${name}" must not end in _total`);
  const seen = new Set<string>();
  for (const l of labelNames) {
    if (!LABEL_NAME_RE.test(l) || l.startsWith("__")) throw new Error(`invalid label name "${l}" on ${name}`);
    if (type === "histogram" && l === "le") throw new Error(`histogram ${name} cannot use the label "le"`);
    if (seen.has(l)) throw new Error(`label "${l}" repeated on ${name}`);
    seen.add(l);
  }
}

abstract class Family<L extends string> {
  protected readonly series = new Map<string, { labels: Labels<L>; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricType,
    readonly labelNames: readonly L[],
  ) {
    checkNames(name, type, labelNames);
  }

  /** A stable key for a label set (in declared label order; extra or missing labels are errors). */
  protected key(labels: Labels<L>): string {
    const given = Object.keys(labels);
    if (given.length !== this.labelNames.length || this.labelNames.some((n) => typeof labels[n] !== "string")) {
      throw new Error(`${this.name} expects labels {${this.labelNames.join(",")}}, got {${given.join(",")}}`);
    }
    return JSON.stringify(this.labelNames.map((n) => labels[n]));
  }

  /** Forget one series (a gauge that is unknown right now should be absent, not 0). */
  remove(labels: Labels<L>): void {
    this.series.delete(this.key(labels));
  }

  clear(): void {
    this.series.clear();
  }

  abstract snapshot(): FamilySnapshot;
}

const NO_LABELS = {} as Labels<never>;

export class Gauge<L extends string = never> extends Family<L> {
  constructor(name: string, help: string, labelNames: readonly L[] = []) {
    super(name, help, "gauge", labelNames);
  }
  set(value: number, labels: Labels<L> = NO_LABELS as Labels<L>): void {
    this.series.set(this.key(labels), { labels, value });
  }
  inc(by = 1, labels: Labels<L> = NO_LABELS as Labels<L>): void {
    const k = this.key(labels);
    this.series.set(k, { labels, value: (this.series.get(k)?.value ?? 0) + by });
  }
  get(labels: Labels<L> = NO_LABELS as Labels<L>): number | undefined {
    return this.series.get(this.key(labels))?.value;
  }
  snapshot(): FamilySnapshot {
    return {
      name: this.name,
      help: this.help,
      type: "gauge",
      samples: [...this.series.values()].map((s) => ({ name: this.name, labels: s.labels, value: s.value })),
    };
  }
}

export class Counter<L extends string = never> extends Family<L> {
  constructor(name: string, help: string, labelNames: readonly L[] = []) {
    super(name, help, "counter", labelNames);
  }
  inc(by = 1, labels: Labels<L> = NO_LABELS as Labels<L>): void {
    if (!(by >= 0)) throw new Error(`${this.name}: a counter only goes up (got ${by})`);
    const k = this.key(labels);
    this.series.set(k, { labels, value: (this.series.get(k)?.value ?? 0) + by });
  }
  get(labels: Labels<L> = NO_LABELS as Labels<L>): number {
    return this.series.get(this.key(labels))?.value ?? 0;
  }
  snapshot(): FamilySnapshot {
    return {
      name: this.name,
      help: this.help,
      type: "counter",
      samples: [...this.series.values()].map((s) => ({ name: this.name, labels: s.labels, value: s.value })),
    };
  }
}

interface HistogramSeries<L extends string> {
  labels: Labels<L>;
  /** Non-cumulative counts per bucket; cumulated at snapshot time. */
  counts: number[];
  sum: number;
  count: number;
}

/** Fixed buckets, cumulative at exposition, +Inf implied. Enough for probe latencies. */
export class Histogram<L extends string = never> extends Family<L> {
  readonly buckets: readonly number[];
  private readonly hseries = new Map<string, HistogramSeries<L>>();

  constructor(name: string, help: string, buckets: readonly number[], labelNames: readonly L[] = []) {
    super(name, help, "histogram", labelNames);
    const sorted = [...buckets].sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.some((b, i) => !Number.isFinite(b) || (i > 0 && b === sorted[i - 1]))) {
      throw new Error(`${name}: buckets must be distinct finite numbers`);
    }
    this.buckets = sorted;
  }

  observe(value: number, labels: Labels<L> = NO_LABELS as Labels<L>): void {
    const k = this.key(labels);
    let s = this.hseries.get(k);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.hseries.set(k, s);
    }
    const i = this.buckets.findIndex((b) => value <= b);
    if (i >= 0) s.counts[i] = (s.counts[i] ?? 0) + 1;
    s.sum += value;
    s.count += 1;
  }

  override remove(labels: Labels<L>): void {
    this.hseries.delete(this.key(labels));
  }
  override clear(): void {
    this.hseries.clear();
  }

  snapshot(): FamilySnapshot {
    const samples: Sample[] = [];
    for (const s of this.hseries.values()) {
      let cumulative = 0;
      this.buckets.forEach((b, i) => {
        cumulative += s.counts[i] ?? 0;
        samples.push({ name: `${this.name}_bucket`, labels: { ...s.labels, le: formatLe(b) }, value: cumulative });
      });
      samples.push({ name: `${this.name}_bucket`, labels: { ...s.labels, le: "+Inf" }, value: s.count });
      samples.push({ name: `${this.name}_sum`, labels: s.labels, value: s.sum });
      samples.push({ name: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: "histogram", samples };
  }
}

function formatLe(b: number): string {
  return Number.isInteger(b) ? b.toFixed(1) : String(b);
}

/** A set of families, exposed in registration order. Collect hooks refresh computed values (uptime). */
export class Registry {
  private readonly families = new Map<string, { name: string; snapshot(): FamilySnapshot }>();
  private readonly hooks: Array<() => void> = [];

  private add<F extends { name: string; snapshot(): FamilySnapshot }>(f: F): F {
    if (this.families.has(f.name)) throw new Error(`metric family "${f.name}" registered twice`);
    this.families.set(f.name, f);
    return f;
  }

  gauge<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    return this.add(new Gauge<L>(name, help, labelNames));
  }
  counter<L extends string = never>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return this.add(new Counter<L>(name, help, labelNames));
  }
  histogram<L extends string = never>(name: string, help: string, buckets: readonly number[], labelNames: readonly L[] = []): Histogram<L> {
    return this.add(new Histogram<L>(name, help, buckets, labelNames));
  }

  /** Run `hook` before every collect (for values computed from a clock). */
  onCollect(hook: () => void): void {
    this.hooks.push(hook);
  }

  collect(): FamilySnapshot[] {
    for (const h of this.hooks) h();
    return [...this.families.values()].map((f) => f.snapshot());
  }
}
