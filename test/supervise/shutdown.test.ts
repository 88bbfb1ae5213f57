// The shutdown chain against real servers: an HTTP server answering like HA, a real sshd, and a fake VM.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHaApi, probeHa, requestHostShutdown } from "../../src/guest/ha-api.ts";
import { privateKeyPathFor, SshError, sshExec } from "../../src/guest/ssh.ts";
import { defaultConfig } from "../../src/config/schema.ts";
import { planShutdown, shutdownInputFromConfig, startShutdown, type ShutdownDeps, type ShutdownPlanInput, type StepResult } from "../../src/supervise/shutdown.ts";
import { configureLogger } from "../../src/util/log.ts";
import { canRunSshd, closedPort, FakeHa, FakeVm, TestSshd, whenCalled } from "./fixtures.ts";

const logLines: string[] = [];
configureLogger({ write: (l) => logLines.push(l), level: "debug", format: "text", color: false });

function deps(vm: FakeVm, extra: Partial<ShutdownDeps> = {}) {
  const steps: Array<[string, StepResult]> = [];
  return {
    steps,
    deps: {
      vm,
      haApi: createHaApi(),
      ssh: sshExec,
      onStep: (s, r) => steps.push([s, r]),
      ...extra,
    } satisfies ShutdownDeps,
  };
}

describe("planShutdown (pure)", () => {
  test.each<[string, ShutdownPlanInput, string[]]>([
    ["nothing configured", { timeoutMs: 30_000 }, ["acpi", "force"]],
    ["token", { timeoutMs: 30_000, haToken: "t" }, ["ha-api", "acpi", "force"]],
    ["key", { timeoutMs: 30_000, sshPrivateKeyPath: "/k" }, ["ssh-debug", "ssh-addon", "acpi", "force"]],
    ["token and key", { timeoutMs: 30_000, haToken: "t", sshPrivateKeyPath: "/k" }, ["ha-api", "ssh-debug", "ssh-addon", "acpi", "force"]],
    ["force", { timeoutMs: 30_000, haToken: "t", sshPrivateKeyPath: "/k", force: true }, ["force"]],
  ])("%s", (_name, input, want) => {
    const plan = planShutdown(input);
    expect(plan.steps.map((s) => s.step)).toEqual(want as never);
    expect(plan.steps.length + plan.skipped.length).toBe(5);
  });

  test("force keeps the last fifth of the budget, at most 5 s", () => {
    expect(planShutdown({ timeoutMs: 30_000 }).forceReserveMs).toBe(5000);
    expect(planShutdown({ timeoutMs: 3000 }).forceReserveMs).toBe(600);
  });

  test("from config: the private key is the authorized_keys path without .pub, only if it exists", () => {
    const config = defaultConfig();
    config.ssh.authorized_keys = "~/.ssh/id_ed25519.pub";
    config.ha.api_token = "tok";
    config.shutdown.timeout_seconds = 45;
    const input = shutdownInputFromConfig(config, "/home/u", (p) => p === "/home/u/.ssh/id_ed25519");
    expect(input).toMatchObject({ timeoutMs: 45_000, haToken: "tok", sshPrivateKeyPath: "/home/u/.ssh/id_ed25519" });
    expect(shutdownInputFromConfig(config, "/home/u", () => false).sshPrivateKeyPath).toBeUndefined();
    expect(privateKeyPathFor("/k/authorized_keys")).toBeUndefined();
    expect(privateKeyPathFor("/k/id_rsa.pub")).toBe("/k/id_rsa");
  });
});

describe("HA API (real HTTP server)", () => {
  test("probe: any HTTP answer is up, without credentials", async () => {
    const ha = await new FakeHa("unauthorized").start();
    try {
      const dead = await closedPort();
      const r = await probeHa([`http://127.0.0.1:${dead}`, `http://127.0.0.1:${ha.port}`], { timeoutMs: 2000 });
      expect(r.up).toBe(true);
      expect(r.url).toBe(`http://127.0.0.1:${ha.port}`);
      expect(ha.requests[0]?.authorization).toBeUndefined();
      const down = await probeHa([`http://127.0.0.1:${dead}`], { timeoutMs: 2000 });
      expect(down.up).toBe(false);
      expect(down.error).toContain("ECONNREFUSED");
    } finally {
      await ha.stop();
    }
  });

  test("probe: a frozen HA (connects, never answers) is down after the timeout", async () => {
    const ha = await new FakeHa("silent").start();
    try {
      const r = await probeHa([`http://127.0.0.1:${ha.port}`], { timeoutMs: 300 });
      expect(r.up).toBe(false);
      expect(r.error).toContain("no answer within 300 ms");
      expect(r.durationSeconds).toBeGreaterThanOrEqual(0.29);
    } finally {
      await ha.stop();
    }
  });

  test.each([
    ["ok", "accepted"],
    ["unauthorized", "unauthorized"],
    ["error500", "maybe-started"],
    ["cut", "maybe-started"],
    ["hang", "maybe-started"],
  ] as const)("HA answering %s -> %s", async (behaviour, want) => {
    const ha = await new FakeHa(behaviour).start();
    try {
      const r = await requestHostShutdown({ baseUrl: `http://127.0.0.1:${ha.port}`, token: "secret-token", timeoutMs: 500 });
      expect(r.outcome).toBe(want);
      expect(ha.requests[0]?.authorization).toBe("Bearer secret-token");
    } finally {
      await ha.stop();
    }
  });

  test("nothing listening -> unreachable, and the request is never sent", async () => {
    const r = await requestHostShutdown({ baseUrl: `http://127.0.0.1:${await closedPort()}`, token: "t", timeoutMs: 1000 });
    expect(r.outcome).toBe("unreachable");
  });

  test("a rejected token is reported once and never sent again", async () => {
    const ha = await new FakeHa("unauthorized").start();
    logLines.length = 0;
    try {
      const api = createHaApi();
      const base = `http://127.0.0.1:${ha.port}`;
      expect((await api.requestHostShutdown(base, "bad-token", 1000)).outcome).toBe("unauthorized");
      expect((await api.requestHostShutdown(base, "bad-token", 1000)).outcome).toBe("unauthorized");
      expect(ha.shutdownRequests()).toBe(1);
      expect(logLines.filter((l) => l.includes("not an admin token or is wrong"))).toHaveLength(1);
    } finally {
      await ha.stop();
    }
  });
});

describe("the chain against a fake HA", () => {
  test("HA accepts: stopped by ha-api, clean", async () => {
    const vm = new FakeVm();
    const ha = await new FakeHa("ok", () => setTimeout(() => vm.powerOff(), 150)).start();
    vm.endpoints[8123] = ha.endpoint;
    try {
      const { deps: d, steps } = deps(vm);
      const r = await startShutdown(planShutdown({ timeoutMs: 5000, haToken: "tok" }), d).result;
      expect(r).toMatchObject({ stoppedBy: "ha-api", clean: true });
      expect(steps).toEqual([["ha-api", "stopped"]]);
      expect(vm.calls).not.toContain("forceStop");
    } finally {
      await ha.stop();
    }
  });

  test.each(["error500", "cut"] as const)("HA %s but shuts down anyway: maybe started, waits, clean", async (behaviour) => {
    const vm = new FakeVm();
    const ha = await new FakeHa(behaviour, () => setTimeout(() => vm.powerOff(), 300)).start();
    vm.endpoints[80] = ha.endpoint;
    try {
      const r = await startShutdown(planShutdown({ timeoutMs: 5000, haToken: "tok" }), deps(vm).deps).result;
      expect(r).toMatchObject({ stoppedBy: "ha-api", clean: true });
    } finally {
      await ha.stop();
    }
  });

  test("HA 401: moves on to ACPI (a guest that honours it), token flagged", async () => {
    const vm = new FakeVm({}, { honourAcpiAfterMs: 100 });
    const ha = await new FakeHa("unauthorized").start();
    vm.endpoints[8123] = ha.endpoint;
    try {
      const { deps: d, steps } = deps(vm);
      const r = await startShutdown(planShutdown({ timeoutMs: 5000, haToken: "tok" }), d).result;
      expect(r).toMatchObject({ stoppedBy: "acpi", clean: true, tokenRejected: true });
      expect(steps).toEqual([
        ["ha-api", "failed"],
        ["acpi", "stopped"],
      ]);
    } finally {
      await ha.stop();
    }
  });

  test("HA hangs and the guest ignores everything: force stop within the bound", async () => {
    const vm = new FakeVm();
    const ha = await new FakeHa("hang").start();
    vm.endpoints[8123] = ha.endpoint;
    try {
      const { deps: d, steps } = deps(vm);
      const t0 = Date.now();
      const r = await startShutdown(planShutdown({ timeoutMs: 3000, haToken: "tok" }), d).result;
      const elapsed = Date.now() - t0;
      expect(r).toMatchObject({ stoppedBy: "force", clean: false });
      expect(steps.map(([s]) => s)).toEqual(["ha-api", "acpi", "force"]);
      expect(r.attempts[0]?.detail).toMatch(/timed out|no answer/);
      expect(elapsed).toBeLessThan(3000 + 500);
    } finally {
      await ha.stop();
    }
  });
});

describe("the chain survives unreachable guests", () => {
  test("No route to host everywhere, guest ignores ACPI: forced, each failure logged", async () => {
    const noRoute = Object.assign(new Error("connect EHOSTUNREACH 192.168.64.5:22222"), { code: "EHOSTUNREACH" });
    const vm = new FakeVm({ 80: { host: "192.168.64.5", port: 80 }, 8123: { host: "192.168.64.5", port: 8123 }, 22222: { host: "192.168.64.5", port: 22222 }, 22: noRoute });
    logLines.length = 0;
    const { deps: d, steps } = deps(vm, {
      haApi: createHaApi({ connect: async () => ({ ok: false, error: "EHOSTUNREACH" }) }),
      ssh: async () => {
        throw new SshError("connect", "cannot connect: EHOSTUNREACH", false);
      },
    });
    const r = await startShutdown(planShutdown({ timeoutMs: 2000, haToken: "tok", sshPrivateKeyPath: "/nonexistent" }), d).result;
    expect(r).toMatchObject({ stoppedBy: "force", clean: false });
    expect(steps).toEqual([
      ["ha-api", "failed"],
      ["ssh-debug", "failed"],
      ["ssh-addon", "failed"],
      ["acpi", "no-effect"],
      ["force", "stopped"],
    ]);
    expect(logLines.some((l) => l.includes("ssh-debug failed") && l.includes("EHOSTUNREACH"))).toBe(true);
    expect(logLines.some((l) => l.includes("ssh-addon failed") && l.includes("EHOSTUNREACH"))).toBe(true);
  });

  test("a second interrupt skips straight to force stop", async () => {
    const vm = new FakeVm();
    const running = startShutdown(planShutdown({ timeoutMs: 20_000 }), deps(vm).deps);
    const t0 = Date.now();
    setTimeout(() => running.escalate(), 200);
    const r = await running.result;
    expect(r).toMatchObject({ stoppedBy: "force", clean: false });
    expect(r.attempts.map((a) => [a.step, a.result])).toEqual([
      ["acpi", "escalated"],
      ["force", "stopped"],
    ]);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  test("a force stop that never returns is reported as a failure within the bound", async () => {
    const vm = new FakeVm({}, { forceStopHangs: true });
    const t0 = Date.now();
    const r = await startShutdown(planShutdown({ timeoutMs: 1500, force: true }), deps(vm).deps).result;
    expect(r).toMatchObject({ stoppedBy: null, clean: false });
    expect(Date.now() - t0).toBeLessThan(1500 + 500);
  });

  test("already stopped: nothing is tried", async () => {
    const vm = new FakeVm({}, { initiallyStopped: true });
    const r = await startShutdown(planShutdown({ timeoutMs: 1000, haToken: "t" }), deps(vm).deps).result;
    expect(r).toMatchObject({ stoppedBy: "already-stopped", clean: true, attempts: [] });
    expect(vm.calls).toEqual([]);
  });
});

describe.skipIf(!canRunSshd)("the chain against a real sshd (root; Debian openssh-server)", () => {
  let okSshd: TestSshd;
  let failingHaSshd: TestSshd;
  let cuttingSshd: TestSshd;
  beforeAll(async () => {
    [okSshd, failingHaSshd, cuttingSshd] = await Promise.all([
      new TestSshd().start({ haExit: 0 }),
      new TestSshd().start({ haExit: 1 }),
      new TestSshd().start({ haExit: "cut" }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([okSshd?.stop(), failingHaSshd?.stop(), cuttingSshd?.stop()]);
  });

  test("the session dies during `ha host shutdown`: maybe started, the chain waits and the guest stops", async () => {
    const vm = new FakeVm({ 22222: cuttingSshd.endpoint });
    const cancel = whenCalled(cuttingSshd, (c) => c.includes("ha host shutdown"), () => setTimeout(() => vm.powerOff(), 300));
    const r = await startShutdown(planShutdown({ timeoutMs: 8000, sshPrivateKeyPath: cuttingSshd.clientKey }), deps(vm).deps).result;
    cancel();
    expect(r).toMatchObject({ stoppedBy: "ssh-debug", clean: true });
    expect(r.attempts[0]?.detail).toMatch(/without an exit status|connection (closed|lost)/);
    // Not retried with `shutdown -h now`: the first command may already be shutting the guest down.
    expect(cuttingSshd.calls()).toEqual(["ha host shutdown"]);
  });

  test("debug SSH: `ha host shutdown` stops the guest", async () => {
    const vm = new FakeVm({ 22222: okSshd.endpoint });
    const cancel = whenCalled(okSshd, (c) => c.includes("ha host shutdown"), () => setTimeout(() => vm.powerOff(), 100));
    const r = await startShutdown(planShutdown({ timeoutMs: 8000, sshPrivateKeyPath: okSshd.clientKey }), deps(vm).deps).result;
    cancel();
    expect(r).toMatchObject({ stoppedBy: "ssh-debug", clean: true });
    expect(okSshd.calls()).toEqual(["ha host shutdown"]);
  });

  test("debug SSH: when `ha` fails, `shutdown -h now` follows", async () => {
    const vm = new FakeVm({ 22222: failingHaSshd.endpoint });
    const cancel = whenCalled(failingHaSshd, (c) => c.includes("shutdown -h now"), () => setTimeout(() => vm.powerOff(), 100));
    const r = await startShutdown(planShutdown({ timeoutMs: 8000, sshPrivateKeyPath: failingHaSshd.clientKey }), deps(vm).deps).result;
    cancel();
    expect(r).toMatchObject({ stoppedBy: "ssh-debug", clean: true });
    expect(failingHaSshd.calls()).toEqual(["ha host shutdown", "shutdown -h now"]);
  });

  test("debug port closed: the SSH add-on on port 22 does it", async () => {
    const before = okSshd.calls().length;
    const vm = new FakeVm({ 22222: { host: "127.0.0.1", port: await closedPort() }, 22: okSshd.endpoint });
    const cancel = whenCalled(okSshd, (c) => c.length > before, () => setTimeout(() => vm.powerOff(), 100));
    const { deps: d, steps } = deps(vm);
    const r = await startShutdown(planShutdown({ timeoutMs: 8000, sshPrivateKeyPath: okSshd.clientKey }), d).result;
    cancel();
    expect(r).toMatchObject({ stoppedBy: "ssh-addon", clean: true });
    expect(steps).toEqual([
      ["ssh-debug", "failed"],
      ["ssh-addon", "stopped"],
    ]);
  });

  test("a key the guest does not accept: auth fails, the chain moves on", async () => {
    const dir = mkdtempSync(join(tmpdir(), "havm-key-"));
    try {
      const key = join(dir, "other");
      Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key]);
      await expect(sshExec({ host: "127.0.0.1", port: okSshd.port, privateKeyPath: key, command: "ha host shutdown", timeoutMs: 3000 })).rejects.toMatchObject({
        stage: "auth",
      });
      writeFileSync(join(dir, "garbage"), "not a key");
      await expect(sshExec({ host: "127.0.0.1", port: okSshd.port, privateKeyPath: join(dir, "garbage"), command: "x", timeoutMs: 3000 })).rejects.toMatchObject({
        stage: "key",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
