import { describe, expect, test } from "bun:test";
import { resolveResources } from "../../src/vm/resources.ts";
import { parseConfigText } from "../../src/config/load.ts";
import type { HostLimits } from "../../src/vm/backend.ts";

const GiB = 1024 ** 3;
const small: HostLimits = { cpus: 2, memoryBytes: 3 * GiB, minCpus: 1, maxCpus: 64, minMemoryBytes: 512 * 1024 ** 2, maxMemoryBytes: 3 * GiB };
const big: HostLimits = { ...small, cpus: 16, memoryBytes: 64 * GiB, maxMemoryBytes: 48 * GiB };

describe("resources", () => {
  test("defaults are clamped on a small host, with a note for each", () => {
    const { config, userSet } = parseConfigText("", "c.yml");
    const r = resolveResources(config, userSet, small);
    expect(r.cpus).toBe(2);
    expect(r.memoryBytes).toBe(3 * GiB);
    expect(r.notes).toHaveLength(2);
    expect(r.notes[0]).toMatch(/using 2 CPUs instead of the default 4/);
    expect(r.notes[1]).toMatch(/using 3 GiB of memory instead of the default 4 GiB/);
  });
  test("defaults pass untouched on a big host", () => {
    const { config, userSet } = parseConfigText("", "c.yml");
    expect(resolveResources(config, userSet, big)).toEqual({ cpus: 4, memoryBytes: 4 * GiB, notes: [] });
  });
  test("values the user wrote are refused when they do not fit (exit 2)", () => {
    const a = parseConfigText("vm:\n  cpu_count: 8\n", "c.yml");
    expect(() => resolveResources(a.config, a.userSet, small, "c.yml")).toThrow(/vm.cpu_count 8 in c.yml does not fit this host: it allows 1 to 2 CPUs/);
    const b = parseConfigText("vm:\n  memory_size: 8 GiB\n", "c.yml");
    try {
      resolveResources(b.config, b.userSet, small, "c.yml");
      throw new Error("not refused");
    } catch (e) {
      expect((e as Error).message).toMatch(/vm.memory_size 8 GiB in c.yml does not fit this host: it allows 512 MiB to 3 GiB/);
      expect((e as { exitCode: number }).exitCode).toBe(2);
    }
  });
  test("memory limits round down to whole MiB", () => {
    const { config, userSet } = parseConfigText("", "c.yml");
    const r = resolveResources(config, userSet, { ...small, memoryBytes: 3 * GiB + 12345, maxMemoryBytes: 100 * GiB });
    expect(r.memoryBytes % (1024 * 1024)).toBe(0);
  });
});
