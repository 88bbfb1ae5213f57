// Every config field: its default, a valid override, and each kind of invalid value with its message.
import { describe, expect, test } from "bun:test";
import { parseConfigText, applyConfigOverrides, ConfigError } from "../../src/config/load.ts";
import { defaultConfig } from "../../src/config/schema.ts";
import { stringify } from "yaml";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** Build YAML for one dotted key. */
function yamlFor(path: string, value: unknown): string {
  const obj: Record<string, unknown> = {};
  const keys = path.split(".");
  let node = obj;
  for (const k of keys.slice(0, -1)) node = (node[k] = {}) as Record<string, unknown>;
  node[keys.at(-1)!] = value;
  return stringify(obj);
}

function get(obj: unknown, path: string): unknown {
  return path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

interface FieldCase {
  path: string;
  default: unknown;
  valid: [input: unknown, parsed: unknown][];
  invalid: [input: unknown, message: RegExp][];
}

const FIELDS: FieldCase[] = [
  {
    path: "vm.cpu_count",
    default: 4,
    valid: [[2, 2], [1, 1]],
    invalid: [["four", /a whole number from 1 to 256/], [0, /from 1 to 256/], [2.5, /whole number/], [1000, /from 1 to 256/]],
  },
  {
    path: "vm.memory_size",
    default: 4 * GiB,
    valid: [["4 GiB", 4 * GiB], ["4096 MiB", 4 * GiB], ["4G", 4 * GiB], [2 * GiB, 2 * GiB], ["1.5 GiB", 1.5 * GiB]],
    invalid: [["4 parsecs", /a size such as "4 GiB"/], ["100 MiB", /at least 512 MiB/], [4 * GiB + 1, /whole number of MiB/], [true, /a size such as/]],
  },
  {
    path: "vm.disk_size",
    default: 32 * GiB,
    valid: [["64 GiB", 64 * GiB], ["1T", 1024 * GiB], [8192 * MiB, 8 * GiB]],
    invalid: [["big", /a size such as/], ["1 MiB", /at least 64 MiB/], [-5, /a size such as/]],
  },
  { path: "network.type", default: "nat", valid: [["bridge", "bridge"], ["nat", "nat"]], invalid: [["host", /one of: nat, bridge/], [1, /one of: nat, bridge/]] },
  { path: "network.interface", default: undefined, valid: [["en0", "en0"]], invalid: [["", /not an empty string/], [5, /a string/]] },
  {
    path: "network.mac",
    default: undefined,
    valid: [["02:AB:cd:ef:01:23", "02:ab:cd:ef:01:23"], ["02-00-00-00-00-01", "02:00:00:00:00:01"]],
    invalid: [["02:ab:cd", /a MAC address/], ["01:00:5e:00:00:01", /unicast/], [42, /a MAC address/]],
  },
  { path: "network.hostname", default: undefined, valid: [["homeassistant", "homeassistant"]], invalid: [["bad_name!", /a hostname/], ["-x", /a hostname/]] },
  {
    path: "haos.release_channel",
    default: "stable",
    valid: [["pre-release", "pre-release"], ["stable", "stable"]],
    invalid: [["beta", /one of: stable, pre-release/]],
  },
  { path: "haos.version", default: undefined, valid: [["17.1", "17.1"], ["17.1.rc1", "17.1.rc1"]], invalid: [["latest", /a HAOS version/], [17, /a HAOS version/]] },
  { path: "haos.image", default: undefined, valid: [["/tmp/haos.img.xz", "/tmp/haos.img.xz"]], invalid: [["", /not an empty string/]] },
  { path: "haos.verify", default: "best-effort", valid: [["strict", "strict"]], invalid: [["paranoid", /one of: best-effort, strict/]] },
  {
    path: "haos.version_url",
    default: "https://version.home-assistant.io",
    valid: [["http://127.0.0.1:8000/", "http://127.0.0.1:8000"]],
    invalid: [["ftp://x", /an http\(s\) URL/], ["version.home-assistant.io", /an http\(s\) URL/]],
  },
  {
    path: "haos.releases_api",
    default: "https://api.github.com/repos/home-assistant/operating-system/releases",
    valid: [["http://127.0.0.1:8000/api", "http://127.0.0.1:8000/api"]],
    invalid: [["nope", /an http\(s\) URL/]],
  },
  {
    path: "haos.download_url",
    default: "https://github.com/home-assistant/operating-system/releases/download",
    valid: [["https://mirror.example/dl/", "https://mirror.example/dl"]],
    invalid: [[3, /an http\(s\) URL/]],
  },
  { path: "ssh.authorized_keys", default: undefined, valid: [["~/.ssh/id_ed25519.pub", "~/.ssh/id_ed25519.pub"]], invalid: [[12, /a string/], ["", /not an empty string/]] },
  { path: "usb.enabled", default: true, valid: [[false, false]], invalid: [["no", /true or false/]] },
  { path: "ha.url", default: undefined, valid: [["http://homeassistant.local:8123", "http://homeassistant.local:8123"]], invalid: [["homeassistant.local", /an http\(s\) URL/]] },
  { path: "ha.api_token", default: undefined, valid: [["eyJ0eXAi", "eyJ0eXAi"]], invalid: [["", /not an empty string/], [12, /a string/]] },
  { path: "logging.format", default: "text", valid: [["json", "json"]], invalid: [["xml", /one of: text, json/]] },
  { path: "logging.level", default: "info", valid: [["debug", "debug"], ["warning", "warning"], ["error", "error"]], invalid: [["warn", /one of: debug, info, warning, error/]] },
  { path: "metrics.enabled", default: false, valid: [[true, true]], invalid: [["yes please", /true or false/]] },
  { path: "metrics.type", default: "prometheus", valid: [["prometheus", "prometheus"]], invalid: [["statsd", /one of: prometheus/]] },
  { path: "metrics.prometheus.port", default: 9210, valid: [[9300, 9300]], invalid: [[0, /from 1 to 65535/], [70000, /from 1 to 65535/], ["http", /from 1 to 65535/]] },
  { path: "metrics.prometheus.host", default: "127.0.0.1", valid: [["0.0.0.0", "0.0.0.0"]], invalid: [["", /not an empty string/]] },
  { path: "shutdown.timeout_seconds", default: 30, valid: [[120, 120]], invalid: [[0, /from 1 to 3600/], ["30s", /whole number/]] },
  { path: "watchdog.enabled", default: false, valid: [[true, true]], invalid: [["on", /true or false/]] },
  { path: "watchdog.unhealthy_after", default: 300_000, valid: [["10m", 600_000], ["1h30m", 5_400_000], [90, 90_000]], invalid: [["soon", /a duration such as/]] },
  { path: "watchdog.action", default: "restart", valid: [["none", "none"]], invalid: [["reboot", /one of: restart, none/]] },
  { path: "watchdog.max_restarts_per_hour", default: 3, valid: [[5, 5]], invalid: [[0, /from 1 to 60/]] },
  { path: "watchdog.probe_interval", default: 15_000, valid: [["5s", 5000]], invalid: [["fast", /a duration/]] },
  { path: "schedule.reboot", default: undefined, valid: [["04:10", "04:10"]], invalid: [["25:00", /a time of day/], ["4pm", /a time of day/]] },
  { path: "qemu.accel", default: "auto", valid: [["tcg", "tcg"], ["kvm", "kvm"]], invalid: [["hvf", /one of: auto, kvm, tcg/]] },
  { path: "qemu.binary", default: undefined, valid: [["/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-system-x86_64"]], invalid: [["", /not an empty string/]] },
  { path: "qemu.firmware_code", default: undefined, valid: [["/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_CODE_4M.fd"]], invalid: [[1, /a string/]] },
  { path: "qemu.firmware_vars", default: undefined, valid: [["/usr/share/OVMF/OVMF_VARS_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"]], invalid: [[false, /a string/]] },
];

describe("every config field", () => {
  const defaults = defaultConfig();

  test("the table covers every leaf of the schema", () => {
    const leaves: string[] = [];
    const walk = (o: Record<string, unknown>, prefix: string) => {
      for (const [k, val] of Object.entries(o)) {
        const p = prefix ? `${prefix}.${k}` : k;
        if (val && typeof val === "object") walk(val as Record<string, unknown>, p);
        else leaves.push(p);
      }
    };
    // Optional fields without a default are absent from defaultConfig(): fill them to list them.
    const merged: Record<string, unknown> = {};
    for (const f of FIELDS) {
      const keys = f.path.split(".");
      let node = merged;
      for (const k of keys.slice(0, -1)) node = (node[k] ??= {}) as Record<string, unknown>;
      node[keys.at(-1)!] = f.valid[0]![0];
    }
    const full = parseConfigText(stringify(merged), "x").config;
    walk(full as unknown as Record<string, unknown>, "");
    expect(leaves.sort()).toEqual(FIELDS.map((f) => f.path).sort());
  });

  for (const f of FIELDS) {
    describe(f.path, () => {
      test("default", () => {
        expect(get(defaults, f.path)).toEqual(f.default);
      });
      for (const [input, parsed] of f.valid) {
        test(`accepts ${JSON.stringify(input)}`, () => {
          const { config, userSet } = parseConfigText(yamlFor(f.path, input), "/home/u/.config/havm/config.yml");
          expect(get(config, f.path)).toEqual(parsed);
          expect(userSet.has(f.path)).toBe(true);
        });
      }
      for (const [input, message] of f.invalid) {
        test(`refuses ${JSON.stringify(input)}`, () => {
          const text = "# havm config\n" + yamlFor(f.path, input);
          let err: unknown;
          try {
            parseConfigText(text, "/home/u/.config/havm/config.yml");
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(ConfigError);
          const ce = err as ConfigError;
          expect(ce.exitCode).toBe(2);
          expect(ce.problems).toHaveLength(1);
          expect(ce.problems[0]!.path).toBe(f.path);
          expect(ce.problems[0]!.message).toMatch(message);
          // the line of the offending key: its depth + 1 for the comment line
          expect(ce.problems[0]!.line).toBe(f.path.split(".").length + 1);
          expect(ce.message).toContain(`/home/u/.config/havm/config.yml:${ce.problems[0]!.line}: ${f.path}:`);
        });
      }
    });
  }
});

describe("file-level problems", () => {
  test("YAML syntax error names the line", () => {
    expect(() => parseConfigText("vm:\n  cpu_count: 2\n  memory_size: [\n", "c.yml")).toThrow(/c\.yml:\d+: YAML syntax error/);
  });
  test("unknown top-level key and unknown nested key, with lines", () => {
    try {
      parseConfigText("vm:\n  cpus: 2\nvms: {}\n", "c.yml");
      throw new Error("not refused");
    } catch (e) {
      const ce = e as ConfigError;
      expect(ce.problems.map((p) => [p.path, p.line])).toEqual(
        expect.arrayContaining([
          ["vm.cpus", 2],
          ["vms", 3],
        ]),
      );
      expect(ce.message).toContain("unknown key");
    }
  });
  test("a section that is not a mapping", () => {
    expect(() => parseConfigText("vm: 4\n", "c.yml")).toThrow(/c\.yml:1: vm: expected a mapping/);
  });
  test("duplicate keys are refused", () => {
    expect(() => parseConfigText("vm:\n  cpu_count: 2\n  cpu_count: 3\n", "c.yml")).toThrow(/YAML syntax error/);
  });
  test("an empty file and a comment-only file mean all defaults", () => {
    expect(parseConfigText("", "c.yml").config).toEqual(defaultConfig());
    expect(parseConfigText("# nothing here\n", "c.yml").config).toEqual(defaultConfig());
  });
  test("several problems are all reported", () => {
    try {
      parseConfigText("vm:\n  cpu_count: 0\nlogging:\n  level: loud\n", "c.yml");
      throw new Error("not refused");
    } catch (e) {
      expect((e as ConfigError).problems.map((p) => p.path)).toEqual(["vm.cpu_count", "logging.level"]);
    }
  });
});

describe("command-line overrides", () => {
  test("override the file and count as user-set", () => {
    const loaded = parseConfigText("vm:\n  cpu_count: 2\n", "c.yml");
    const o = applyConfigOverrides(loaded, { "vm.cpu_count": 1, "vm.memory_size": "1 GiB" });
    expect(o.config.vm.cpu_count).toBe(1);
    expect(o.config.vm.memory_size).toBe(GiB);
    expect(o.userSet.has("vm.memory_size")).toBe(true);
  });
  test("are validated like the file", () => {
    const loaded = parseConfigText("", "c.yml");
    expect(() => applyConfigOverrides(loaded, { "vm.memory_size": "lots" })).toThrow(/command line: vm\.memory_size: expected a memory size/);
  });
});
