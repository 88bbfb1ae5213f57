// The CLI as a user meets it: help, version, exit codes, and that a broken config touches nothing.
import { beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compiledHavm, runHavm, tempHome } from "../support/cli.ts";

let binary: string;
beforeAll(() => {
  binary = compiledHavm();
});

/** Every file and directory under `dir`, relative. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      out.push(join(rel, e.name));
      if (e.isDirectory()) walk(join(d, e.name), join(rel, e.name));
    }
  };
  walk(dir, "");
  return out.sort();
}

describe("compiled binary, run from another directory", () => {
  test("havm --help lists every command", () => {
    const r = runHavm(["--help"], { home: tempHome(), binary });
    expect(r.exitCode).toBe(0);
    for (const cmd of ["run", "prepare", "import-utm", "cleanup", "version", "status", "stop", "usb"]) {
      expect(r.stdout).toMatch(new RegExp(`\\b${cmd}\\b`));
    }
    expect(r.stdout).not.toContain("\x1b["); // no colours when piped
  });

  test("havm run --help shows the global and override flags", () => {
    const r = runHavm(["run", "--help"], { home: tempHome(), binary });
    expect(r.exitCode).toBe(0);
    for (const flag of ["--config", "--verbose", "--log-level", "--log-format", "--log-json", "--cpus", "--memory", "--disk-size"]) {
      expect(r.stdout).toContain(flag);
    }
  });

  test("havm version names version, commit, OS, arch and backend", () => {
    const r = runHavm(["version"], { home: tempHome(), binary });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^havm \d+\.\d+\.\d+ \([0-9a-f]{7,}(-dirty)?\)/);
    expect(r.stdout).toMatch(/os: +\S+/);
    expect(r.stdout).toMatch(/arch: +(x86_64|arm64)/);
    expect(r.stdout).toMatch(/backend: qemu \((usable|NOT usable)\)/);
  });

  test("havm version --json is machine-readable", () => {
    const r = runHavm(["version", "--json"], { home: tempHome(), binary });
    expect(r.exitCode).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.backend).toBe("qemu");
    expect(typeof info.usable).toBe("boolean");
    expect(Array.isArray(info.details)).toBe(true);
  });

  test("an unknown command is a usage error (exit 2)", () => {
    const r = runHavm(["frobnicate"], { home: tempHome(), binary });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/Unknown command frobnicate/);
  });
});

describe("a broken config", () => {
  const cases: [string, string, RegExp][] = [
    ["YAML syntax", "vm:\n  cpu_count: [\n", /config\.yml:\d+: YAML syntax error/],
    ["wrong type", "vm:\n  cpu_count: lots\n", /config\.yml:2: vm\.cpu_count: expected a CPU count/],
    ["unknown key", "vm:\n  cpus: 2\n", /config\.yml:2: vm\.cpus: unknown key/],
    ["out of range", "metrics:\n  prometheus:\n    port: 99999\n", /config\.yml:3: metrics\.prometheus\.port: expected a TCP port/],
    ["beyond the host", "vm:\n  cpu_count: 256\n", /vm\.cpu_count 256 .* does not fit this host/],
  ];
  for (const [name, text, message] of cases) {
    test(`${name}: havm run exits 2 and creates no file`, () => {
      const home = tempHome();
      mkdirSync(join(home, ".config/havm"), { recursive: true });
      writeFileSync(join(home, ".config/havm/config.yml"), text);
      const before = tree(home);
      const r = runHavm(["run"], { home, binary, env: { NO_COLOR: "1" } });
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toContain("hint:");
      expect(r.exitCode).toBe(2);
      expect(tree(home)).toEqual(before);
    });
  }

  test("--config pointing at a missing file is exit 2", () => {
    const home = tempHome();
    const r = runHavm(["run", "--config", join(home, "nope.yml")], { home });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/nope\.yml does not exist/);
  });

  test("a bad --log-level is exit 2", () => {
    const r = runHavm(["version", "--log-level", "loud"], { home: tempHome() });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--log-level must be one of debug, info, warning, error/);
  });

  test("-j logs JSON lines", () => {
    const home = tempHome();
    mkdirSync(join(home, ".config/havm"), { recursive: true });
    writeFileSync(join(home, ".config/havm/config.yml"), "vm:\n  cpu_count: lots\n");
    const r = runHavm(["run", "-j"], { home });
    expect(r.exitCode).toBe(2);
    const lines = r.stderr.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ level: "error" });
    expect(lines[0].msg).toContain("vm.cpu_count");
    expect(typeof lines[0].time).toBe("string");
  });
});
