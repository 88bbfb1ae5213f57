// Formula/havm.rb: Ruby syntax, Homebrew-like rubocop style, and the launchd plist it ships (rendered by
// Ruby itself with a stub Formula class, parsed by python3's plistlib).
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { DEFAULTS } from "../../src/config/schema.ts";

const formulaDir = join(import.meta.dir, "../../Formula");
const formula = join(formulaDir, "havm.rb");
const has = (tool: string) => Bun.which(tool) !== null;

function run(cmd: string[], opts: { cwd?: string; stdin?: string } = {}) {
  const p = Bun.spawnSync(cmd, { cwd: opts.cwd, stdin: opts.stdin === undefined ? undefined : Buffer.from(opts.stdin) });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

// Just enough of Homebrew for `Havm.new.launchd_plist`: class-level DSL calls are ignored.
const RENDER_PLIST_RB = `
require "pathname"
HOMEBREW_PREFIX = Pathname("/opt/homebrew")
class Formula
  def self.method_missing(*) = nil
  def self.respond_to_missing?(*) = true
  def self.test(*) = nil # Kernel#test would shadow the DSL
  def opt_bin = HOMEBREW_PREFIX/"opt/havm/bin"
  def var = HOMEBREW_PREFIX/"var"
end
load ARGV.fetch(0)
print Havm.new.launchd_plist
`;

const PLIST_TO_JSON_PY = `
import json, plistlib, sys
print(json.dumps(plistlib.loads(sys.stdin.buffer.read())))
`;

describe.skipIf(!has("ruby"))("Formula/havm.rb (Debian package ruby)", () => {
  test("ruby -c: syntax OK", () => {
    const r = run(["ruby", "-c", formula]);
    expect(r.out).toContain("Syntax OK");
    expect(r.code).toBe(0);
  });

  test.skipIf(!has("rubocop"))("rubocop with the Homebrew-like config: no offenses (Debian package rubocop)", () => {
    const r = run(["rubocop", "--no-color", "-c", ".rubocop.yml", "havm.rb"], { cwd: formulaDir });
    expect(r.out).toContain("no offenses detected");
    expect(r.code).toBe(0);
  });

  test("service block: havm run, KeepAlive on failure only, logs under var/log, PATH, working dir", async () => {
    const text = await Bun.file(formula).text();
    const service = text.slice(text.indexOf("service do"), text.indexOf("end", text.indexOf("service do")));
    expect(service).toContain('run [opt_bin/"havm", "run"]');
    expect(service).toContain("keep_alive successful_exit: false");
    expect(service).toMatch(/log_path var\/"log\/havm\.log"/);
    expect(service).toMatch(/error_log_path var\/"log\/havm\.log"/);
    expect(service).toContain("environment_variables PATH: std_service_path_env");
    expect(service).toContain('working_dir var/"havm"');
    expect(text).toMatch(/test do\n\s+assert_match version\.to_s, shell_output\("#\{bin\}\/havm version"\)/);
  });

  test.skipIf(!has("python3"))("the shipped LaunchAgent plist is valid and its ExitTimeOut covers the shutdown chain", () => {
    const rendered = run(["ruby", "-e", RENDER_PLIST_RB, formula]);
    expect(rendered.err).toBe("");
    expect(rendered.code).toBe(0);
    const parsed = run(["python3", "-c", PLIST_TO_JSON_PY], { stdin: rendered.out });
    expect(parsed.err).toBe("");
    const plist = JSON.parse(parsed.out) as Record<string, unknown>;
    expect(plist).toMatchObject({
      Label: "io.github.havm",
      ProgramArguments: ["/opt/homebrew/opt/havm/bin/havm", "run"],
      KeepAlive: { SuccessfulExit: false },
      RunAtLoad: true,
      WorkingDirectory: "/opt/homebrew/var/havm",
      StandardOutPath: "/opt/homebrew/var/log/havm.log",
      StandardErrorPath: "/opt/homebrew/var/log/havm.log",
    });
    expect((plist.EnvironmentVariables as { PATH: string }).PATH.split(":")).toContain("/opt/homebrew/bin");
    // The default chain (30 s) plus time for havm to answer and exit must fit before launchd's SIGKILL.
    expect(plist.ExitTimeOut as number).toBeGreaterThanOrEqual(DEFAULTS.shutdownTimeoutSeconds + 15);
  });

  test.skipIf(!has("python3"))("plistlib really rejects a broken plist (the check can fail)", () => {
    const r = run(["python3", "-c", PLIST_TO_JSON_PY], { stdin: "<plist><dict><key>x</key></plist>" });
    expect(r.code).not.toBe(0);
  });
});
