import { describe, expect, test } from "bun:test";
import { formatSize, parseDuration, parseSize, parseTimeOfDay } from "../../src/config/units.ts";
import { expandHome, resolvePaths } from "../../src/config/paths.ts";

describe("sizes", () => {
  test.each([
    ["4 GiB", 4 * 1024 ** 3],
    ["4096 MiB", 4 * 1024 ** 3],
    ["4G", 4 * 1024 ** 3],
    ["4gb", 4 * 1024 ** 3],
    ["512", 512],
    ["1.5 GiB", 1.5 * 1024 ** 3],
    [1024, 1024],
  ] as const)("%p -> %p bytes", (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });
  test.each(["", "GiB", "4 parsecs", "-4G", "4 G B", "1e3"])("%p is not a size", (input) => {
    expect(parseSize(input)).toBeUndefined();
  });
  test("negative and fractional byte counts are not sizes", () => {
    expect(parseSize(-1)).toBeUndefined();
    expect(parseSize(1.5)).toBeUndefined();
  });
  test("format round-trips whole units", () => {
    for (const s of ["4 GiB", "512 MiB", "1.5 GiB", "100 B", "2 TiB"]) expect(formatSize(parseSize(s)!)).toBe(s);
  });
});

describe("durations and times of day", () => {
  test.each([
    ["5m", 300_000],
    ["30s", 30_000],
    ["1h30m", 5_400_000],
    ["250ms", 250],
    ["1d", 86_400_000],
    [90, 90_000],
  ] as const)("%p -> %p ms", (input, ms) => expect(parseDuration(input)).toBe(ms));
  test.each(["", "5", "5 minutes", "m5", "1h 30m"])("%p is not a duration", (input) => expect(parseDuration(input)).toBeUndefined());
  test.each([
    ["04:10", 250],
    ["0:00", 0],
    ["23:59", 1439],
  ] as const)("%p -> minute %p", (input, m) => expect(parseTimeOfDay(input)).toBe(m));
  test.each(["24:00", "4:7", "noon", "12:60"])("%p is not a time of day", (input) => expect(parseTimeOfDay(input)).toBeUndefined());
});

describe("paths", () => {
  test("linux uses XDG dirs, with defaults under HOME", () => {
    const p = resolvePaths({ HOME: "/h" }, "linux");
    expect(p.configFile).toBe("/h/.config/havm/config.yml");
    expect(p.cacheDir).toBe("/h/.cache/havm");
    expect(p.vm.dir).toBe("/h/.local/share/havm/vm");
    expect(p.vm.disk).toBe("/h/.local/share/havm/vm/haos.img");
    const x = resolvePaths({ HOME: "/h", XDG_CACHE_HOME: "/c", XDG_DATA_HOME: "/d", XDG_CONFIG_HOME: "/e" }, "linux");
    expect([x.cacheDir, x.vm.dir, x.configFile]).toEqual(["/c/havm", "/d/havm/vm", "/e/havm/config.yml"]);
  });
  test("relative XDG values are ignored (the spec says they are invalid)", () => {
    expect(resolvePaths({ HOME: "/h", XDG_CACHE_HOME: "rel" }, "linux").cacheDir).toBe("/h/.cache/havm");
  });
  test("macOS uses the original tool's layout", () => {
    const p = resolvePaths({ HOME: "/Users/u", XDG_CACHE_HOME: "/ignored" }, "darwin");
    expect(p.cacheDir).toBe("/Users/u/Library/Caches/havm");
    expect(p.vm.dir).toBe("/Users/u/Library/Application Support/havm/vm");
    expect(p.vm.nvram).toBe("/Users/u/Library/Application Support/havm/vm/NVRAM");
    expect(p.vm.machineIdentifier).toBe("/Users/u/Library/Application Support/havm/vm/MachineIdentifier");
    expect(p.vm.configDisk).toBe("/Users/u/Library/Application Support/havm/vm/config.img");
    expect(p.vm.pidFile).toBe("/Users/u/Library/Application Support/havm/vm/havm.pid");
    expect(p.configFile).toBe("/Users/u/.config/havm/config.yml");
  });
  test("no HOME is a clear error", () => {
    expect(() => resolvePaths({}, "linux")).toThrow(/HOME is not set/);
  });
  test("~ expansion", () => {
    expect(expandHome("~/.ssh/k.pub", "/h")).toBe("/h/.ssh/k.pub");
    expect(expandHome("~", "/h")).toBe("/h");
    expect(expandHome("/abs/~x", "/h")).toBe("/abs/~x");
    expect(expandHome("~other/x", "/h")).toBe("~other/x");
  });
});
