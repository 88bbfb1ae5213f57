// The control channel between `havm status/stop/usb` and the running supervisor.
//
// Protocol (chosen over signalling the lock holder because it carries answers, e.g. status and USB lists):
// - a unix socket at paths.vm.controlSocket (<vm dir>/havm.sock), mode 0600: only the user who runs the VM;
// - newline-delimited JSON, one request per line, one response line per request, in order;
// - request  {"cmd": "<name>", ...arguments}
// - response {"ok": true, ...result} or {"ok": false, "error": "<message>", "hint"?: "...", "exitCode"?: n}.
// Commands (handlers are registered by their owners):
//   status                                  -> {"ok": true, state, backend, uptimeSeconds, endpoints, haUp, usb, ...}
//   stop {"force": bool, "timeoutSeconds"?: n} -> answered when the shutdown chain has finished:
//                                              {"ok": true, "clean": bool, "stoppedBy": step}; the supervisor then
//                                              exits and the socket disappears (clients wait for that).
//   usb.* (see src/usb)
// A request line is at most 64 KiB. Unknown commands answer ok:false with the list of known ones.
import { chmodSync, lstatSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { HavmError, ExitCode, errnoCode, errorMessage, isHavmError } from "../util/errors.ts";
import { log } from "../util/log.ts";

export interface ControlRequest {
  cmd: string;
  [arg: string]: unknown;
}
export type ControlResponse = { ok: true; [k: string]: unknown } | { ok: false; error: string; hint?: string; exitCode?: number };
export type ControlHandler = (req: ControlRequest) => Promise<Record<string, unknown>>;

const MAX_LINE = 64 * 1024;

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/**
 * Listen on `path`. A socket file left by a crashed supervisor is removed first, but only when nobody
 * answers on it; a live one means another supervisor runs this VM (HavmError, exit code busy).
 */
export async function startControlServer(path: string, handlers: Record<string, ControlHandler>): Promise<ControlServer> {
  await removeStaleSocket(path);
  // Each connection's queue of replies still to write, so close() can let them out first.
  const sockets = new Map<Socket, () => Promise<void>>();
  const server: Server = createServer((socket) => {
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buf = "";
    // Responses go out in request order even when handlers finish out of order.
    let chain = Promise.resolve();
    sockets.set(socket, () => chain);
    socket.on("data", (d) => {
      buf += d.toString("utf8");
      if (buf.length > MAX_LINE && !buf.includes("\n")) {
        socket.end(JSON.stringify({ ok: false, error: "request too long" }) + "\n");
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const answer = dispatch(line, handlers);
        chain = chain.then(async () => {
          const res = await answer;
          if (!socket.destroyed) await new Promise<void>((done) => socket.write(JSON.stringify(res) + "\n", () => done()));
        });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => {
      server.off("error", reject);
      resolve();
    });
  }).catch((e) => {
    throw new HavmError(`cannot create the control socket ${path}: ${errnoCode(e) ?? errorMessage(e)}`, {
      hint: "Check that the VM directory exists and is writable by this user.",
      code: "control.listen",
      cause: e,
    });
  });
  // The VM dir is the user's; 0600 keeps other local users from stopping the VM.
  chmodSync(path, 0o600);
  server.on("error", (e) => log.warn(`control socket error: ${errorMessage(e)}`));
  return {
    path,
    close: async () => {
      // Replies already decided (e.g. `stop` answering how the shutdown went) go out before the sockets do;
      // a handler that never finishes cannot hold the exit up for more than a second.
      const pending = Promise.all([...sockets.values()].map((c) => c().catch(() => {})));
      await Promise.race([pending, new Promise((r) => setTimeout(r, 1000))]);
      await new Promise<void>((resolve) => {
        for (const s of sockets.keys()) s.destroy();
        server.close(() => {
          try {
            unlinkSync(path);
          } catch {
            // Already gone.
          }
          resolve();
        });
      });
    },
  };
}

async function dispatch(line: string, handlers: Record<string, ControlHandler>): Promise<ControlResponse> {
  let req: ControlRequest;
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed !== "object" || parsed === null || typeof (parsed as { cmd?: unknown }).cmd !== "string") {
      return { ok: false, error: 'a request is a JSON object with a string "cmd"' };
    }
    req = parsed as ControlRequest;
  } catch {
    return { ok: false, error: "a request is one line of JSON" };
  }
  const handler = Object.hasOwn(handlers, req.cmd) ? handlers[req.cmd] : undefined;
  if (!handler) {
    return { ok: false, error: `unknown command "${req.cmd}"`, hint: `Known commands: ${Object.keys(handlers).sort().join(", ")}. Is havm the same version as the running supervisor?` };
  }
  try {
    const result = await handler(req);
    return { ...result, ok: true };
  } catch (e) {
    if (isHavmError(e)) return { ok: false, error: e.message, ...(e.hint ? { hint: e.hint } : {}), exitCode: e.exitCode };
    log.warn(`control: "${req.cmd}" failed: ${errorMessage(e)}`);
    return { ok: false, error: errorMessage(e) };
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return;
    throw e;
  }
  if (!isSocket) {
    throw new HavmError(`${path} exists and is not a socket`, { hint: "Move that file away; havm uses this path for its control socket.", code: "control.path" });
  }
  if (await answers(path)) {
    throw new HavmError(`another havm supervisor already answers on ${path}`, {
      hint: "Use `havm status` or `havm stop`; only one `havm run` can run a VM.",
      exitCode: ExitCode.busy,
      code: "control.busy",
    });
  }
  unlinkSync(path);
}

/** True when something accepts connections on the socket. */
export function answers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    const done = (v: boolean) => {
      clearTimeout(t);
      s.removeAllListeners();
      s.on("error", () => {});
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

/** The error every client shows when no supervisor runs. */
export function notRunningError(path: string, cause?: unknown): HavmError {
  return new HavmError(`havm is not running (nothing answers on ${path})`, {
    hint: "Start it with `havm run` (or `brew services start havm`).",
    code: "control.not-running",
    cause,
  });
}

/**
 * Send one request and wait for its response line. Throws HavmError "not running" when no supervisor
 * listens, and a HavmError carrying the supervisor's error, hint and exit code when it answers ok:false.
 */
export function controlRequest(path: string, req: ControlRequest, opts: { timeoutMs: number }): Promise<Record<string, unknown> & { ok: true }> {
  return new Promise((resolve, reject) => {
    let buf = "";
    let settled = false;
    let connected = false;
    const socket = createConnection(path);
    const finish = (r: (Record<string, unknown> & { ok: true }) | Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on("error", () => {});
      socket.destroy();
      if (r instanceof Error) reject(r);
      else resolve(r);
    };
    const timer = setTimeout(
      () =>
        finish(
          new HavmError(`the havm supervisor did not answer "${req.cmd}" within ${Math.round(opts.timeoutMs / 1000)} s`, {
            hint: "It may be busy stopping or starting the VM; try again, or look at its log.",
            code: "control.timeout",
          }),
        ),
      opts.timeoutMs,
    );
    socket.once("connect", () => {
      connected = true;
      socket.write(JSON.stringify(req) + "\n");
    });
    socket.on("data", (d) => {
      buf += d.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      let res: ControlResponse;
      try {
        res = JSON.parse(buf.slice(0, nl)) as ControlResponse;
      } catch {
        return finish(new HavmError("the havm supervisor sent an unreadable answer", { hint: "Are `havm` and the running supervisor the same version?", code: "control.protocol" }));
      }
      if (res.ok) return finish(res);
      finish(
        new HavmError(res.error, {
          hint: res.hint,
          exitCode: (res.exitCode as ExitCode | undefined) ?? ExitCode.failure,
          code: "control.refused",
        }),
      );
    });
    socket.once("error", (e) => {
      const code = errnoCode(e);
      if (!connected && (code === "ENOENT" || code === "ECONNREFUSED")) return finish(notRunningError(path, e));
      finish(new HavmError(`cannot talk to the havm supervisor on ${path}: ${code ?? errorMessage(e)}`, { hint: "Check that you run havm as the same user as `havm run`.", code: "control.io", cause: e }));
    });
    socket.once("close", () => {
      if (!settled) finish(new HavmError(`the havm supervisor closed the connection before answering "${req.cmd}"`, { hint: "It may have just exited; run `havm status`.", code: "control.closed" }));
    });
  });
}

/** Wait until nothing answers on the socket any more (the supervisor exited). False on timeout. */
export async function waitUntilGone(path: string, timeoutMs: number, pollMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await answers(path, Math.min(1000, Math.max(1, deadline - Date.now()))))) return true;
    await Bun.sleep(pollMs);
  }
  return !(await answers(path, 500));
}

/** What the supervisor's `status` handler answers (every field optional so versions can differ). */
export interface StatusReply {
  pid?: number;
  state?: string;
  backend?: string;
  /** Seconds since the VM started (absent while it is not running). */
  uptimeSeconds?: number;
  /** Guest address under NAT (vz) when known. */
  guestIp?: string;
  /** Guest port -> where the host reaches it, e.g. {"8123": "127.0.0.1:8123"}. */
  endpoints?: Record<string, string>;
  haUp?: boolean;
  haUrl?: string;
  usb?: Array<{ name: string; attached?: boolean }>;
  /** Shutdown in progress, restarting, ... */
  activity?: string;
}

/** What the supervisor's `stop` handler answers once the chain has finished. */
export interface StopReply {
  clean?: boolean;
  stoppedBy?: string | null;
}
