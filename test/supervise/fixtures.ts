// Test fixtures for the shutdown chain: a fake VmHandle (the real VM is e2e-tested elsewhere), a server that
// answers like HA, and a real OpenSSH sshd whose only "commands" are fake `ha` and `shutdown` scripts.
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BackendEvent, Endpoint, MemoryStats, VmHandle, VmState } from "../../src/vm/backend.ts";

/** A VM that runs until told otherwise; by default it ignores the ACPI power button like generic HAOS. */
export class FakeVm implements VmHandle {
  readonly backend = "qemu" as const;
  readonly calls: string[] = [];
  private current: VmState = "running";
  private resolveStopped!: () => void;
  private readonly stoppedPromise = new Promise<void>((r) => (this.resolveStopped = r));
  constructor(
    readonly endpoints: Record<number, Endpoint | null | Error> = {},
    readonly opts: { honourAcpiAfterMs?: number; forceStopHangs?: boolean; initiallyStopped?: boolean } = {},
  ) {
    if (opts.initiallyStopped) this.powerOff();
  }
  /** The guest finished powering off. */
  powerOff(): void {
    this.current = "stopped";
    this.resolveStopped();
  }
  async start(): Promise<void> {}
  async requestStop(): Promise<boolean> {
    this.calls.push("requestStop");
    if (this.opts.honourAcpiAfterMs !== undefined) setTimeout(() => this.powerOff(), this.opts.honourAcpiAfterMs);
    return this.current === "running";
  }
  async forceStop(): Promise<void> {
    this.calls.push("forceStop");
    if (this.opts.forceStopHangs) return new Promise(() => {});
    this.powerOff();
  }
  state(): VmState {
    return this.current;
  }
  onEvent(_listener: (event: BackendEvent) => void): () => void {
    return () => {};
  }
  stopped(): Promise<void> {
    return this.stoppedPromise;
  }
  async endpoint(guestPort: number): Promise<Endpoint | null> {
    this.calls.push(`endpoint:${guestPort}`);
    const e = this.endpoints[guestPort];
    if (e instanceof Error) throw e;
    return e ?? null;
  }
  async attachUsb(): Promise<void> {}
  async detachUsb(): Promise<void> {}
  async setBalloonTarget(): Promise<void> {}
  async memoryStats(): Promise<MemoryStats> {
    return {};
  }
  async close(): Promise<void> {}
}

/** hang: no answer to host_shutdown; silent: no answer to anything (a frozen HA). */
export type HaBehaviour = "ok" | "unauthorized" | "error500" | "cut" | "hang" | "silent";

/** An HTTP server on 127.0.0.1 that answers POST host_shutdown like HA would in each situation. */
export class FakeHa {
  readonly requests: Array<{ method: string; path: string; authorization?: string }> = [];
  private server!: Server;
  private sockets = new Set<Socket>();
  port = 0;
  constructor(
    public behaviour: HaBehaviour,
    /** Called when HA "starts" a shutdown (200, 500 and cut all mean it may have). */
    private readonly onShutdown: () => void = () => {},
  ) {}

  async start(): Promise<this> {
    // node:net rather than Bun.serve: a cut connection and a hang need the raw socket.
    this.server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
      socket.on("error", () => {});
      let buf = "";
      socket.on("data", (d) => {
        buf += d.toString("latin1");
        const end = buf.indexOf("\r\n\r\n");
        if (end < 0) return;
        const [requestLine = "", ...headerLines] = buf.slice(0, end).split("\r\n");
        const [method = "", path = ""] = requestLine.split(" ");
        const auth = headerLines.find((h) => h.toLowerCase().startsWith("authorization:"))?.slice(14).trim();
        this.requests.push({ method, path, authorization: auth });
        buf = "";
        const isShutdown = method === "POST" && path === "/api/services/hassio/host_shutdown";
        const reply = (status: string, body: string) =>
          socket.end(`HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
        if (this.behaviour === "silent") return;
        if (!isShutdown) return reply("200 OK", "<html>Home Assistant</html>");
        switch (this.behaviour) {
          case "ok":
            this.onShutdown();
            return reply("200 OK", "[]");
          case "unauthorized":
            return reply("401 Unauthorized", "401: Unauthorized");
          case "error500":
            this.onShutdown();
            return reply("500 Internal Server Error", "500 Internal Server Error");
          case "cut":
            this.onShutdown();
            return socket.destroy();
          default:
            return;
        }
      });
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  get endpoint(): Endpoint {
    return { host: "127.0.0.1", port: this.port };
  }

  shutdownRequests(): number {
    return this.requests.filter((r) => r.path === "/api/services/hassio/host_shutdown").length;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** A port nothing listens on (bound then released). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export const canRunSshd = Bun.which("sshd") !== null && Bun.which("ssh-keygen") !== null && process.getuid?.() === 0;

/**
 * A real OpenSSH sshd on 127.0.0.1:<port> accepting root with a test key. ForceCommand runs a guest shell
 * that knows only `ha ...` and `shutdown -h now` (fake scripts that record their call), so nothing on this
 * machine is ever shut down.
 */
export class TestSshd {
  readonly dir = mkdtempSync(join(tmpdir(), "havm-sshd-"));
  readonly clientKey = join(this.dir, "id_ed25519");
  readonly callsFile = join(this.dir, "calls.log");
  port = 0;
  private proc: ReturnType<typeof Bun.spawn> | undefined;

  /**
   * haExit: exit code of the fake `ha` (non-zero makes the chain try `shutdown -h now`); "cut" kills the
   * session mid-command, as a guest powering off does.
   */
  async start(opts: { haExit: number | "cut"; shutdownExit?: number }): Promise<this> {
    const d = this.dir;
    // sshd refuses to start without its privilege separation directory (normally made by the service unit).
    if (!existsSync("/run/sshd")) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
    keygen(join(d, "host_ed25519"));
    keygen(this.clientKey);
    writeFileSync(join(d, "authorized_keys"), readFileSync(`${this.clientKey}.pub`));
    const script = (name: string, exit: number | "cut") => {
      const p = join(d, name);
      const end = exit === "cut" ? "kill -9 $PPID; sleep 5" : `exit ${exit}`;
      writeFileSync(p, `#!/bin/sh\necho "${name} $*" >> '${this.callsFile}'\necho "${name}: ${exit}" >&2\n${end}\n`);
      chmodSync(p, 0o755);
    };
    script("ha", opts.haExit);
    script("shutdown", opts.shutdownExit ?? 0);
    const guestShell = join(d, "guest-shell");
    writeFileSync(
      guestShell,
      `#!/bin/sh\ncase "$SSH_ORIGINAL_COMMAND" in\n  "ha "*) exec '${d}/ha' \${SSH_ORIGINAL_COMMAND#ha } ;;\n  "shutdown -h now") exec '${d}/shutdown' -h now ;;\n  *) echo "unknown command: $SSH_ORIGINAL_COMMAND" >&2; exit 127 ;;\nesac\n`,
    );
    chmodSync(guestShell, 0o755);
    for (let attempt = 0; attempt < 5; attempt++) {
      this.port = await closedPort();
      writeFileSync(
        join(d, "sshd_config"),
        [
          `ListenAddress 127.0.0.1:${this.port}`,
          `HostKey ${d}/host_ed25519`,
          `AuthorizedKeysFile ${d}/authorized_keys`,
          "PermitRootLogin prohibit-password",
          "PasswordAuthentication no",
          "KbdInteractiveAuthentication no",
          "UsePAM no",
          "StrictModes no",
          "PidFile none",
          `ForceCommand ${guestShell}`,
          "LogLevel ERROR",
          "",
        ].join("\n"),
      );
      this.proc = Bun.spawn(["/usr/sbin/sshd", "-D", "-e", "-f", join(d, "sshd_config")], { stdout: "ignore", stderr: "pipe" });
      if (await this.waitListening()) return this;
      this.proc.kill();
      await this.proc.exited;
    }
    throw new Error("sshd did not start");
  }

  private async waitListening(): Promise<boolean> {
    for (let i = 0; i < 50; i++) {
      if (this.proc?.exitCode !== null) return false;
      const ok = await new Promise<boolean>((resolve) => {
        Bun.connect({
          hostname: "127.0.0.1",
          port: this.port,
          socket: { open: (s) => (s.end(), resolve(true)), error: () => resolve(false), data: () => {} },
        }).catch(() => resolve(false));
      });
      if (ok) return true;
      await Bun.sleep(50);
    }
    return false;
  }

  calls(): string[] {
    return existsSync(this.callsFile) ? readFileSync(this.callsFile, "utf8").trim().split("\n").filter(Boolean) : [];
  }

  get endpoint(): Endpoint {
    return { host: "127.0.0.1", port: this.port };
  }

  async stop(): Promise<void> {
    this.proc?.kill();
    await this.proc?.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function keygen(path: string): void {
  const r = Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "havm-test", "-f", path]);
  if (r.exitCode !== 0) throw new Error(`ssh-keygen failed: ${r.stderr.toString()}`);
}

/** Poll `calls` until `pred` holds, then run `then` (how the fake guest "powers off" after a command). */
export function whenCalled(sshd: TestSshd, pred: (calls: string[]) => boolean, then: () => void): () => void {
  const t = setInterval(() => {
    if (pred(sshd.calls())) {
      clearInterval(t);
      then();
    }
  }, 25);
  return () => clearInterval(t);
}
