// Scrape benchmark: hammer GET /metrics on an in-process exporter (127.0.0.1 only) with bounded count and
// time, and GET /health in the same run as the baseline; print p50/p99 latency, requests/s and the ratio.
//   bun bench/metrics-scrape.ts [--requests N] [--seconds S] [--concurrency C] [--gzip]
import { parseArgs } from "node:util";
import { HavmMetrics } from "../src/metrics/havm-metrics.ts";
import { startMetricsServer } from "../src/metrics/server.ts";

const { values } = parseArgs({
  options: {
    requests: { type: "string", default: "5000" },
    seconds: { type: "string", default: "10" },
    concurrency: { type: "string", default: "4" },
    gzip: { type: "boolean", default: false },
  },
});
const maxRequests = Math.max(1, Number(values.requests));
const maxMs = Math.max(1, Number(values.seconds)) * 1000;
const concurrency = Math.max(1, Number(values.concurrency));

// A realistic body: every family populated, some restarts and shutdown steps, a few hundred probes.
const metrics = new HavmMetrics({ version: "0.1.0", backend: "qemu" });
metrics.setVmState("running");
metrics.vmStarted();
for (const r of ["watchdog", "schedule", "crash"]) metrics.vmRestarted(r);
for (const s of ["ha-api", "ssh-debug", "ssh-addon", "acpi", "force"]) for (const r of ["stopped", "failed"]) metrics.shutdownStep(s, r);
for (let i = 0; i < 500; i++) metrics.haProbed(i % 50 !== 0, Math.random() * 0.3);
metrics.setMemory(4 * 2 ** 30, { targetBytes: 2 ** 31, guestFreeBytes: 1e9, guestTotalBytes: 4e9, guestAvailableBytes: 2e9 });

const server = startMetricsServer({ host: "127.0.0.1", port: 0, render: () => metrics.render() });
const headers = { "Accept-Encoding": values.gzip ? "gzip" : "identity" };

interface Stats {
  count: number;
  seconds: number;
  p50: number;
  p99: number;
  rps: number;
  bytes: number;
}

async function hammer(path: string): Promise<Stats> {
  const url = `${server.url}${path}`;
  const latencies: number[] = [];
  let bytes = 0;
  let issued = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (issued < maxRequests && performance.now() - t0 < maxMs) {
      issued++;
      const s = performance.now();
      const res = await fetch(url, { headers });
      const body = await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status}`);
      latencies.push(performance.now() - s);
      bytes = body.byteLength;
    }
  };
  // Warm-up (JIT, connection pool), not measured.
  for (let i = 0; i < 50; i++) await (await fetch(url, { headers })).arrayBuffer();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { count: latencies.length, seconds, p50: q(0.5), p99: q(0.99), rps: latencies.length / seconds, bytes };
}

const health = await hammer("/health");
const scrape = await hammer("/metrics");
await server.stop();

const line = (name: string, s: Stats) =>
  `${name.padEnd(9)} n=${s.count} in ${s.seconds.toFixed(2)} s  p50=${s.p50.toFixed(3)} ms  p99=${s.p99.toFixed(3)} ms  ${s.rps.toFixed(0)} req/s  body=${s.bytes} B (decoded)`;
console.log(`concurrency=${concurrency} gzip=${values.gzip}`);
console.log(line("/health", health));
console.log(line("/metrics", scrape));
console.log(`ratio /metrics vs /health: p50 x${(scrape.p50 / health.p50).toFixed(2)}, p99 x${(scrape.p99 / health.p99).toFixed(2)}, req/s x${(scrape.rps / health.rps).toFixed(2)}`);
