import { describe, expect, test } from "bun:test";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseConfigText } from "../../src/config/load.ts";
import { mergeConfigText, prepareConfigMerge, writeConfigText } from "../../src/utm/config-merge.ts";
import { HavmError } from "../../src/util/errors.ts";
import type { ImportedConfig } from "../../src/utm/plan.ts";
import { tempDir } from "./fixtures.ts";

const MIB_ = 1024 * 1024;
const bridged: ImportedConfig = { cpuCount: 2, memorySize: "6144 MiB", network: { type: "bridge", interface: "en0" }, mac: "02:ab:cd:ef:01:23" };

describe("mergeConfigText", () => {
  test("no file yet: a config with just the imported settings", () => {
    expect(mergeConfigText("", bridged)).toBe(
      'vm:\n  cpu_count: 2\n  memory_size: 6144 MiB\nnetwork:\n  type: bridge\n  interface: en0\n  mac: "02:ab:cd:ef:01:23"\n',
    );
  });

  test("keeps the user's comments, unrelated keys and their order; replaces only imported keys", () => {
    const text = [
      "# my havm config",
      "vm:",
      "  cpu_count: 8 # was eight",
      "  disk_size: 64 GiB # room for backups",
      "ha:",
      "  url: http://homeassistant.local:8123",
      "  api_token: abcd1234",
      "metrics:",
      "  enabled: true",
      "",
    ].join("\n");
    const out = mergeConfigText(text, bridged);
    expect(out).toBe(
      [
        "# my havm config",
        "vm:",
        "  cpu_count: 2 # was eight",
        "  disk_size: 64 GiB # room for backups",
        "  memory_size: 6144 MiB",
        "ha:",
        "  url: http://homeassistant.local:8123",
        "  api_token: abcd1234",
        "metrics:",
        "  enabled: true",
        "network:",
        "  type: bridge",
        "  interface: en0",
        '  mac: "02:ab:cd:ef:01:23"',
        "",
      ].join("\n"),
    );
    const cfg = parseConfigText(out, undefined).config;
    expect([cfg.vm.cpu_count, cfg.vm.memory_size, cfg.vm.disk_size, cfg.network.type, cfg.network.mac, cfg.metrics.enabled]).toEqual([
      2,
      6144 * 1024 * 1024,
      64 * 1024 ** 3,
      "bridge",
      "02:ab:cd:ef:01:23",
      true,
    ]);
  });

  test("NAT drops a stale bridge interface; unset values leave the user's keys alone", () => {
    const out = mergeConfigText("network:\n  type: bridge\n  interface: en1\n  hostname: ha\nvm:\n  memory_size: 8 GiB\n", { cpuCount: 4, network: { type: "nat" } });
    expect(out).toBe("network:\n  type: nat\n  hostname: ha\nvm:\n  memory_size: 8 GiB\n  cpu_count: 4\n");
  });

  test("vm.disk_size: the imported disk's size, unless the user set a larger one; exact units", () => {
    const GIB = 1024 ** 3;
    expect(mergeConfigText("", { cpuCount: 4, diskSize: 32 * GIB })).toBe("vm:\n  cpu_count: 4\n  disk_size: 32 GiB\n");
    expect(mergeConfigText("", { cpuCount: 4, diskSize: 20 * GIB + MIB_ })).toBe("vm:\n  cpu_count: 4\n  disk_size: 20481 MiB\n");
    expect(mergeConfigText("vm:\n  disk_size: 64G # growing\n", { cpuCount: 4, diskSize: 32 * GIB })).toBe("vm:\n  disk_size: 64G # growing\n  cpu_count: 4\n");
    expect(mergeConfigText("vm:\n  disk_size: 16 GiB\n", { cpuCount: 4, diskSize: 32 * GIB })).toBe("vm:\n  disk_size: 32 GiB\n  cpu_count: 4\n");
  });

  test("an empty section (`vm:` with nothing after it) becomes a mapping", () => {
    expect(mergeConfigText("# header\nvm:\n", { cpuCount: 3 })).toBe("# header\nvm:\n  cpu_count: 3\n");
  });

  test("a section that is not a mapping is refused, not overwritten", () => {
    expect(() => mergeConfigText("vm: 3\n", { cpuCount: 3 })).toThrow(HavmError);
  });
});

test("prepare + write: atomic, keeps the file's mode", () => {
  const dir = tempDir();
  const file = join(dir, "config.yml");
  writeFileSync(file, "# secret token inside\nha:\n  api_token: abcd1234\n", { mode: 0o600 });
  const merged = prepareConfigMerge(file, { cpuCount: 4 });
  expect(readFileSync(file, "utf8")).toBe("# secret token inside\nha:\n  api_token: abcd1234\n"); // nothing written yet
  writeConfigText(file, merged.text, merged.mode);
  expect(readFileSync(file, "utf8")).toBe("# secret token inside\nha:\n  api_token: abcd1234\nvm:\n  cpu_count: 4\n");
  expect(statSync(file).mode & 0o777).toBe(0o600);
  const fresh = prepareConfigMerge(join(dir, "sub", "new.yml"), { cpuCount: 4 });
  expect(fresh).toEqual({ text: "vm:\n  cpu_count: 4\n", mode: 0o644, applied: [[["vm", "cpu_count"], 4]] });
});
