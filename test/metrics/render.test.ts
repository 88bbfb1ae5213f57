import { describe, expect, test } from "bun:test";
import { Counter, Gauge, Histogram, Registry } from "../../src/metrics/registry.ts";
import { escapeHelp, escapeLabelValue, formatValue, renderText } from "../../src/metrics/render.ts";
import { HavmMetrics } from "../../src/metrics/havm-metrics.ts";
import { VM_STATES } from "../../src/vm/backend.ts";

describe("escaping", () => {
  test.each([
    ["plain", "plain"],
    ['a"b', 'a\\"b'],
    ["a\\b", "a\\\\b"],
    ["a\nb", "a\\nb"],
    ['\\"\n', '\\\\\\"\\n'],
    ["ünïcødé", "ünïcødé"],
  ])("label value %j -> %j", (input, want) => {
    expect(escapeLabelValue(input)).toBe(want);
  });

  test.each([
    ["a\\b\nc", "a\\\\b\\nc"],
    ['quotes "stay"', 'quotes "stay"'],
  ])("help %j -> %j", (input, want) => {
    expect(escapeHelp(input)).toBe(want);
  });

  test.each([
    [1, "1"],
    [0.5, "0.5"],
    [-0, "0"],
    [NaN, "NaN"],
    [Infinity, "+Inf"],
    [-Infinity, "-Inf"],
    [1e21, "1e+21"],
  ])("value %p -> %j", (v, want) => {
    expect(formatValue(v)).toBe(want);
  });
});

describe("renderText", () => {
  test("HELP and TYPE for every family, also without samples", () => {
    const text = renderText([
      { name: "a_total", help: "A.", type: "counter", samples: [] },
      { name: "b", help: "B\nline", type: "gauge", samples: [{ name: "b", labels: { x: 'q"' }, value: 2 }] },
    ]);
    expect(text).toBe(['# HELP a_total A.', "# TYPE a_total counter", "# HELP b B\\nline", "# TYPE b gauge", 'b{x="q\\""} 2', ""].join("\n"));
  });

  test("duplicate series and families are refused (promtool does not flag them)", () => {
    const s = { name: "b", labels: { x: "1", y: "2" }, value: 1 };
    expect(() => renderText([{ name: "b", help: "B", type: "gauge", samples: [s, { ...s, labels: { y: "2", x: "1" } }] }])).toThrow(/duplicate series/);
    expect(() =>
      renderText([
        { name: "b", help: "B", type: "gauge", samples: [] },
        { name: "b", help: "B", type: "gauge", samples: [] },
      ]),
    ).toThrow(/twice/);
  });

  test("empty registry renders nothing", () => {
    expect(renderText([])).toBe("");
  });
});

describe("registry", () => {
  test("names are checked", () => {
    expect(() => new Counter("requests", "x")).toThrow(/_total/);
    expect(() => new Gauge("bad_total", "x")).toThrow(/_total/);
    expect(() => new Gauge("bad:name", "x")).toThrow(/invalid metric name/);
    expect(() => new Gauge("ok", "x", ["__reserved"])).toThrow(/invalid label/);
    expect(() => new Histogram("h_seconds", "x", [1], ["le"])).toThrow(/le/);
    const r = new Registry();
    r.gauge("g", "x");
    expect(() => r.gauge("g", "x")).toThrow(/twice/);
  });

  test("series are keyed by label values, in declared order", () => {
    const g = new Gauge("g", "x", ["a", "b"]);
    g.set(1, { a: "1", b: "2" });
    g.set(5, { b: "2", a: "1" });
    expect(g.snapshot().samples).toEqual([{ name: "g", labels: { a: "1", b: "2" }, value: 5 }]);
    expect(() => g.set(1, { a: "1" } as never)).toThrow(/expects labels/);
  });

  test("counters only go up", () => {
    const c = new Counter("c_total", "x");
    c.inc(2);
    c.inc();
    expect(c.get()).toBe(3);
    expect(() => c.inc(-1)).toThrow(/only goes up/);
  });

  test("histogram buckets are cumulative with +Inf, sum and count", () => {
    const h = new Histogram("h_seconds", "x", [0.1, 1]);
    for (const v of [0.05, 0.5, 0.5, 7]) h.observe(v);
    const lines = renderText([h.snapshot()]).split("\n");
    expect(lines).toContain('h_seconds_bucket{le="0.1"} 1');
    expect(lines).toContain('h_seconds_bucket{le="1.0"} 3');
    expect(lines).toContain('h_seconds_bucket{le="+Inf"} 4');
    expect(lines).toContain("h_seconds_sum 8.05");
    expect(lines).toContain("h_seconds_count 4");
  });
});

describe("HavmMetrics", () => {
  test("one havm_vm_state series per state, 1 for the current", () => {
    const m = new HavmMetrics({ version: "1.2.3", backend: "qemu", now: () => 0 });
    m.setVmState("running");
    const lines = m.render().split("\n").filter((l) => l.startsWith("havm_vm_state{"));
    expect(lines).toHaveLength(VM_STATES.length);
    expect(lines.filter((l) => l.endsWith(" 1"))).toEqual(['havm_vm_state{state="running"} 1']);
  });

  test("uptime and unhealthy seconds follow the injected clock", () => {
    let now = 1_000_000;
    const m = new HavmMetrics({ version: "1", backend: "vz", now: () => now });
    m.setVmState("running");
    now += 90_000;
    m.haProbed(false, 0.2);
    now += 30_000;
    m.haProbed(false, 0.2);
    let text = m.render();
    expect(text).toContain("havm_vm_uptime_seconds 120\n");
    expect(text).toContain("havm_ha_unhealthy_seconds 30\n");
    expect(text).toContain("havm_ha_up 0\n");
    m.haProbed(true, 0.01);
    m.setVmState("stopped");
    text = m.render();
    expect(text).toContain("havm_ha_unhealthy_seconds 0\n");
    expect(text).toContain("havm_vm_uptime_seconds 0\n");
    expect(text).toContain('havm_build_info{version="1",backend="vz"} 1\n');
  });

  test("unknown memory figures are absent, known ones present", () => {
    const m = new HavmMetrics({ version: "1", backend: "qemu" });
    m.setMemory(4 * 2 ** 30, { targetBytes: 2 ** 31 });
    const text = m.render();
    expect(text).toContain(`havm_vm_memory_limit_bytes ${4 * 2 ** 30}\n`);
    expect(text).toContain(`havm_vm_memory_target_bytes ${2 ** 31}\n`);
    expect(text).not.toMatch(/^havm_guest_memory_free_bytes /m);
  });

  test("restart reasons with odd characters stay one escaped series", () => {
    const m = new HavmMetrics({ version: "1", backend: "qemu" });
    m.vmRestarted('watch"dog\\x\ny');
    m.vmRestarted('watch"dog\\x\ny');
    expect(m.render()).toContain('havm_vm_restarts_total{reason="watch\\"dog\\\\x\\ny"} 2\n');
  });
});
