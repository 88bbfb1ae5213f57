// A QMP (QEMU Machine Protocol) client over a unix socket: greeting + qmp_capabilities, commands matched
// to answers by id, and asynchronous events delivered to listeners. Line-delimited JSON both ways.
import { createConnection, type Socket } from "node:net";
import { HavmError } from "../../util/errors.ts";

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** An error answer from QEMU ({"error": {"class", "desc"}}). */
export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command} failed: ${desc}`);
    this.name = "QmpError";
  }
}

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (e: Error) => void;
  timer?: ReturnType<typeof setTimeout>;
}

export class QmpClient {
  private buffer = "";
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private closedError: Error | undefined;
  private readonly closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  greeting: QmpGreeting | undefined;

  private constructor(private readonly socket: Socket) {
    this.closedPromise = new Promise((r) => (this.resolveClosed = r));
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => this.onData(chunk));
    socket.on("error", (e) => this.shutdown(e));
    socket.on("close", () => this.shutdown(new Error("QMP connection closed")));
  }

  /** Connect, read the greeting and leave negotiation mode. */
  static async connect(path: string, opts: { timeoutMs?: number } = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection({ path });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new HavmError(`timed out connecting to QMP socket ${path}`, { code: "qmp.connect" }));
      }, timeoutMs);
      s.once("connect", () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const client = new QmpClient(socket);
    try {
      client.greeting = await client.waitGreeting(timeoutMs);
      await client.execute("qmp_capabilities", undefined, { timeoutMs });
    } catch (e) {
      client.close();
      throw e;
    }
    return client;
  }

  private greetingWaiter: ((g: QmpGreeting) => void) | undefined;

  private waitGreeting(timeoutMs: number): Promise<QmpGreeting> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new HavmError("no QMP greeting from QEMU", { code: "qmp.greeting" })), timeoutMs);
      this.greetingWaiter = (g) => {
        clearTimeout(timer);
        resolve(g);
      };
      this.closedPromise.then(() => {
        clearTimeout(timer);
        reject(this.closedError ?? new Error("QMP connection closed"));
      });
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // QEMU only sends JSON; ignore anything else rather than crash the VM's supervisor.
    }
    if ("QMP" in msg) {
      this.greetingWaiter?.(msg.QMP as QmpGreeting);
      this.greetingWaiter = undefined;
      return;
    }
    if (typeof msg.event === "string") {
      const ev = msg as unknown as QmpEvent;
      for (const l of [...this.listeners]) l(ev);
      return;
    }
    const id = typeof msg.id === "string" ? msg.id : undefined;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p || id === undefined) return;
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    if ("error" in msg) {
      const err = msg.error as { class?: string; desc?: string };
      p.reject(new QmpError(p.command, err.class ?? "GenericError", err.desc ?? "unknown error"));
    } else {
      p.resolve(msg.return);
    }
  }

  /** Run a command; resolves with its `return` value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = `havm-${this.nextId++}`;
    const msg: Record<string, unknown> = { execute: command, id };
    if (args !== undefined) msg.arguments = args;
    return new Promise<T>((resolve, reject) => {
      const p: Pending = { command, resolve: resolve as (v: unknown) => void, reject };
      if (opts.timeoutMs) {
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new HavmError(`QMP ${command} got no answer within ${opts.timeoutMs} ms`, { code: "qmp.timeout" }));
        }, opts.timeoutMs);
      }
      this.pending.set(id, p);
      this.socket.write(JSON.stringify(msg) + "\n");
    });
  }

  /** Subscribe to events; returns an unsubscribe function. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolve with the first event named `name` (matching `filter`), or reject after `timeoutMs`. */
  waitEvent(name: string, filter: (e: QmpEvent) => boolean = () => true, timeoutMs = 10_000): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new HavmError(`no QMP ${name} event within ${timeoutMs} ms`, { code: "qmp.timeout" }));
      }, timeoutMs);
      const off = this.onEvent((e) => {
        if (e.event === name && filter(e)) {
          clearTimeout(timer);
          off();
          resolve(e);
        }
      });
    });
  }

  /** Resolves when the connection is gone (QEMU exited or close() was called). */
  closed(): Promise<void> {
    return this.closedPromise;
  }

  get isClosed(): boolean {
    return this.closedError !== undefined;
  }

  close(): void {
    this.socket.destroy();
    this.shutdown(new Error("QMP connection closed"));
  }

  private shutdown(e: Error): void {
    if (this.closedError) return;
    this.closedError = e;
    for (const [id, p] of this.pending) {
      if (p.timer) clearTimeout(p.timer);
      // A `quit` answer may be lost when QEMU exits first; the caller waits for the process anyway.
      p.reject(e);
      this.pending.delete(id);
    }
    this.resolveClosed();
  }
}

export interface QueryStatus {
  status: string;
  running: boolean;
}

export interface BalloonInfo {
  actual: number;
}

export interface BalloonGuestStats {
  stats: Record<string, number>;
  "last-update": number;
}
