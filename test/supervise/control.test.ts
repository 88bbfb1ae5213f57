// The control socket, and `havm status` / `havm stop` run as real processes against it.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolvePaths } from "../../src/config/paths.ts";
import { controlRequest, startControlServer, waitUntilGone, type ControlServer } from "../../src/supervise/control.ts";
import { formatDuration, formatStatus } from "../../src/commands/status.ts";
import { HavmError, ExitCode } from "../../src/util/errors.ts";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "havm-ctl-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

async function serve(path: string, handlers: Parameters<typeof startControlServer>[1]): Promise<ControlServer> {
  const s = await startControlServer(path, handlers);
  cleanups.push(() => s.close());
  return s;
}

describe("control socket", () => {
  test("request/response, 0600, errors carry hint and exit code", async () => {
    const path = join(tempDir(), "havm.sock");
    await serve(path, {
      status: async () => ({ state: "running" }),
      boom: async () => {
        throw new HavmError("no such accessory", { hint: "Run havm usb list.", exitCode: ExitCode.badInput });
      },
      crash: async () => {
        throw new Error("bug");
      },
    });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await controlRequest(path, { cmd: "status" }, { timeoutMs: 2000 })).toEqual({ ok: true, state: "running" });
    await expect(controlRequest(path, { cmd: "boom" }, { timeoutMs: 2000 })).rejects.toMatchObject({ message: "no such accessory", hint: "Run havm usb list.", exitCode: 2 });
    await expect(controlRequest(path, { cmd: "crash" }, { timeoutMs: 2000 })).rejects.toMatchObject({ message: "bug", exitCode: 1 });
    await expect(controlRequest(path, { cmd: "nope" }, { timeoutMs: 2000 })).rejects.toMatchObject({ message: 'unknown command "nope"' });
  });

  test("several requests on one connection are answered in order; junk gets an error line", async () => {
    const path = join(tempDir(), "havm.sock");
    await serve(path, {
      slow: async () => (await Bun.sleep(100), { n: 1 }),
      fast: async () => ({ n: 2 }),
    });
    const lines = await new Promise<string[]>((resolve) => {
      const out: string[] = [];
      let buf = "";
      Bun.connect({
        unix: path,
        socket: {
          open: (s) => void s.write('{"cmd":"slow"}\n{"cmd":"fast"}\nnot json\n'),
          data: (s, d) => {
            buf += d.toString();
            const parts = buf.split("\n");
            buf = parts.pop() ?? "";
            out.push(...parts);
            if (out.length === 3) {
              s.end();
              resolve(out);
            }
          },
        },
      });
    });
    expect(lines.map((l) => JSON.parse(l))).toEqual([{ n: 1, ok: true }, { n: 2, ok: true }, { ok: false, error: "a request is one line of JSON" }]);
  });

  test("no supervisor: a clear HavmError with the `havm run` hint", async () => {
    const path = join(tempDir(), "havm.sock");
    await expect(controlRequest(path, { cmd: "status" }, { timeoutMs: 1000 })).rejects.toMatchObject({ code: "control.not-running", hint: expect.stringContaining("havm run") });
  });

  test("a stale socket file is replaced; a live one is refused (busy)", async () => {
    const path = join(tempDir(), "havm.sock");
    // Someone answers on the socket: another supervisor runs this VM.
    const other = createServer();
    await new Promise<void>((r) => other.listen(path, r));
    const live = await startControlServer(path, {}).catch((e) => e);
    expect(live).toBeInstanceOf(HavmError);
    expect((live as HavmError).exitCode).toBe(ExitCode.busy);
    await new Promise<void>((r) => other.close(() => r()));

    // A socket file without a listener: what a supervisor killed with SIGKILL leaves behind.
    const child = Bun.spawn(["bun", "-e", `require("node:net").createServer().listen(${JSON.stringify(path)}, () => console.log("up"))`], { stdout: "pipe" });
    const reader = child.stdout.getReader();
    await reader.read();
    child.kill("SIGKILL");
    await child.exited;
    expect(statSync(path).isSocket()).toBe(true);
    await serve(path, { status: async () => ({ state: "fresh" }) });
    expect(await controlRequest(path, { cmd: "status" }, { timeoutMs: 2000 })).toMatchObject({ state: "fresh" });
  });

  test("a regular file in the way is refused, not deleted", async () => {
    const path = join(tempDir(), "havm.sock");
    writeFileSync(path, "precious");
    await expect(startControlServer(path, {})).rejects.toThrow(/not a socket/);
  });

  test("waitUntilGone sees the supervisor leave", async () => {
    const path = join(tempDir(), "havm.sock");
    const s = await startControlServer(path, {});
    setTimeout(() => void s.close(), 200);
    expect(await waitUntilGone(path, 3000, 50)).toBe(true);
  });
});

describe("formatting", () => {
  test("status text", () => {
    expect(formatStatus({ state: "running", backend: "qemu", uptimeSeconds: 90061, endpoints: { "8123": "127.0.0.1:8123" }, haUp: true, usb: [{ name: "SkyConnect" }] })).toBe(
      ["state:    running", "backend:  qemu", "uptime:   1d 1h 1m 1s", "port:     8123 -> 127.0.0.1:8123", "HA:       answering", "USB:      SkyConnect", ""].join("\n"),
    );
    expect(formatDuration(0)).toBe("0s");
  });
});

describe("havm status / havm stop as processes", () => {
  function home(): { env: Record<string, string>; socket: string } {
    const h = tempDir();
    const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: h, NO_COLOR: "1" };
    const socket = resolvePaths(env, "linux").vm.controlSocket;
    mkdirSync(join(socket, ".."), { recursive: true });
    return { env, socket };
  }
  // The command modules run through citty in a child process (run-command.ts), with a temp HOME.
  const havm = ([name, ...args]: string[], env: Record<string, string>) =>
    Bun.spawn(["bun", join(import.meta.dir, "run-command.ts"), join(import.meta.dir, `../../src/commands/${name}.ts`), ...args], { env, stdout: "pipe", stderr: "pipe" });

  test("status: not running -> exit 3 and 'not running'; running -> JSON", async () => {
    const { env, socket } = home();
    let p = havm(["status"], env);
    expect(await p.exited).toBe(3);
    expect(await new Response(p.stdout).text()).toBe("not running\n");

    await serve(socket, { status: async () => ({ state: "running", backend: "qemu", haUp: false, usb: [] }) });
    p = havm(["status", "--json"], env);
    expect(await p.exited).toBe(0);
    expect(JSON.parse(await new Response(p.stdout).text())).toEqual({ running: true, state: "running", backend: "qemu", haUp: false, usb: [] });
  });

  test("stop: sends force and timeout, waits for the supervisor to exit", async () => {
    const { env, socket } = home();
    let got: unknown;
    const server = await serve(socket, {
      stop: async (req) => {
        got = req;
        setTimeout(() => void server.close(), 300);
        return { clean: true, stoppedBy: "ssh-debug" };
      },
    });
    const t0 = Date.now();
    const p = havm(["stop", "--force", "--timeout", "7"], env);
    expect(await p.exited).toBe(0);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(got).toEqual({ cmd: "stop", force: true, timeoutSeconds: 7 });
  });

  test("stop: nothing running is fine (exit 0); a forced stop exits 1", async () => {
    const { env, socket } = home();
    expect(await havm(["stop"], env).exited).toBe(0);
    const server = await serve(socket, {
      stop: async () => {
        setTimeout(() => void server.close(), 100);
        return { clean: false, stoppedBy: "force" };
      },
    });
    expect(await havm(["stop"], env).exited).toBe(1);
  });
});
