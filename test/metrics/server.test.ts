// The metrics endpoint against real tools: promtool's linter and a real Prometheus server scrape.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { HavmMetrics } from "../../src/metrics/havm-metrics.ts";
import { acceptsGzip, startMetricsServer, type MetricsServer } from "../../src/metrics/server.ts";
import { HavmError } from "../../src/util/errors.ts";

const hasPromtool = Bun.which("promtool") !== null;
const hasPrometheus = Bun.which("prometheus") !== null;

function busyMetrics(): HavmMetrics {
  // A frozen clock, so two scrapes give the same body.
  const m = new HavmMetrics({ version: "0.1.0", backend: "qemu", now: () => 1_700_000_000_000 });
  m.setVmState("running");
  m.vmStarted();
  m.vmRestarted("watchdog");
  m.vmRestarted('schedule "nightly"\\\n');
  m.haProbed(true, 0.03);
  m.haProbed(false, 5.5);
  m.shutdownStep("ha-api", "failed");
  m.shutdownStep("ssh-debug", "stopped");
  m.setUsbAccessories(2);
  m.downloaded(123456789);
  m.imagePrepared("ok", 42.5);
  m.setMemory(4 * 2 ** 30, { targetBytes: 2 ** 31, guestFreeBytes: 1e9, guestTotalBytes: 4e9, guestAvailableBytes: 2e9 });
  return m;
}

let server: MetricsServer;
const metrics = busyMetrics();

beforeAll(() => {
  server = startMetricsServer({ host: "127.0.0.1", port: 0, render: () => metrics.render() });
});
afterAll(async () => {
  await server.stop();
});

describe("HTTP behaviour", () => {
  test("GET /metrics: 0.0.4 content type and the havm families", async () => {
    const res = await fetch(`${server.url}/metrics`, { headers: { "Accept-Encoding": "identity" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(res.headers.get("content-encoding")).toBeNull();
    const body = await res.text();
    expect(body).toContain('havm_vm_state{state="running"} 1\n');
    expect(body).toContain("havm_usb_accessories 2\n");
  });

  test("gzip when accepted, and it decodes to the same body", async () => {
    const raw = await (await fetch(`${server.url}/metrics`, { headers: { "Accept-Encoding": "identity" } })).text();
    // Bun's fetch would transparently decode: ask for the raw bytes.
    const res = await fetch(`${server.url}/metrics`, { headers: { "Accept-Encoding": "gzip" }, decompress: false } as RequestInit);
    expect(res.headers.get("content-encoding")).toBe("gzip");
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect([bytes[0], bytes[1]]).toEqual([0x1f, 0x8b]);
    expect(gunzipSync(bytes).toString("utf8")).toBe(raw);
  });

  test.each([
    ["gzip", true],
    ["gzip;q=0", false],
    ["deflate, gzip;q=0.5", true],
    ["br", false],
    ["*", true],
    [null, false],
  ])("acceptsGzip(%j) = %p", (h, want) => {
    expect(acceptsGzip(h)).toBe(want);
  });

  test("GET /health answers 200", async () => {
    const res = await fetch(`${server.url}/health`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("ok\n");
  });

  test("other paths 404, other methods 405 with Allow", async () => {
    expect((await fetch(`${server.url}/`)).status).toBe(404);
    expect((await fetch(`${server.url}/metrics/x`)).status).toBe(404);
    const post = await fetch(`${server.url}/metrics`, { method: "POST", body: "x" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    expect((await fetch(`${server.url}/health`, { method: "DELETE" })).status).toBe(405);
  });

  test("a port in use is a HavmError naming the port and the config key", () => {
    let err: unknown;
    try {
      startMetricsServer({ host: "127.0.0.1", port: server.port, render: () => "" });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HavmError);
    const e = err as HavmError;
    expect(e.message).toContain(String(server.port));
    expect(e.hint).toContain("metrics.prometheus.port");
    expect(e.code).toBe("metrics.port-in-use");
  });
});

describe.skipIf(!hasPromtool)("promtool check metrics (needs Debian package prometheus)", () => {
  test("no parse errors and zero lint output", async () => {
    const body = await (await fetch(`${server.url}/metrics`)).text();
    const p = Bun.spawnSync(["promtool", "check", "metrics"], { stdin: Buffer.from(body) });
    const out = p.stdout.toString() + p.stderr.toString();
    expect(out).toBe("");
    expect(p.exitCode).toBe(0);
  });

  test("promtool can fail: a counter without _total is linted", () => {
    const p = Bun.spawnSync(["promtool", "check", "metrics"], { stdin: Buffer.from("# HELP x X\n# TYPE x counter\nx 1\n") });
    expect(p.exitCode).not.toBe(0);
  });
});

describe.skipIf(!hasPrometheus)("a real Prometheus server scrapes it (needs Debian package prometheus)", () => {
  test(
    "up == 1 and havm_vm_state is ingested",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "havm-prom-"));
      const promPort = await freePort();
      const target = new URL(server.url).host;
      writeFileSync(
        join(dir, "prometheus.yml"),
        `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: havm\n    static_configs:\n      - targets: ["${target}"]\n`,
      );
      const prom = Bun.spawn(
        [
          "prometheus",
          `--config.file=${join(dir, "prometheus.yml")}`,
          `--storage.tsdb.path=${join(dir, "data")}`,
          `--web.listen-address=127.0.0.1:${promPort}`,
          "--log.level=warn",
        ],
        { stdout: "ignore", stderr: "pipe" },
      );
      try {
        const query = async (q: string) => {
          const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`);
          const j = (await res.json()) as { data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
          return j.data.result;
        };
        let up: string | undefined;
        const deadline = Date.now() + 30_000;
        while (Date.now() < deadline) {
          try {
            up = (await query('up{job="havm"}'))[0]?.value[1];
            if (up !== undefined) break;
          } catch {
            // Prometheus still starting.
          }
          await Bun.sleep(500);
        }
        expect(up).toBe("1");
        const state = await query('havm_vm_state{state="running"}');
        expect(state[0]?.value[1]).toBe("1");
        const reasons = (await query("havm_vm_restarts_total")).map((r) => r.metric.reason).sort();
        expect(reasons).toEqual(['schedule "nightly"\\\n', "watchdog"]);
      } finally {
        prom.kill();
        await prom.exited;
        rmSync(dir, { recursive: true, force: true });
      }
    },
    45_000,
  );
});

async function freePort(): Promise<number> {
  const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() });
  const port = s.port!;
  await s.stop(true);
  return port;
}
