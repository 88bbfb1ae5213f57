// Run one command over SSH (ssh2, pure JS; imported lazily because it costs ~80 ms at startup).
// Used by the shutdown chain: root on HAOS's debug SSH (port 22222) or the SSH add-on (port 22).
//
// Which key: ssh.authorized_keys names the PUBLIC key that the CONFIG disk installs in the guest; havm signs
// with the matching private key, the same path without ".pub" (~/.ssh/id_ed25519.pub -> ~/.ssh/id_ed25519).
// A passphrase-protected key cannot be used unattended: that is reported, and the chain moves on.
//
// Host keys are not verified: the peer is our own VM (a forwarded 127.0.0.1 port or the NAT guest IP), we
// send no password, and the worst an impostor can do is receive a shutdown command.
import { readFile } from "node:fs/promises";
import { errnoCode, errorMessage } from "../util/errors.ts";

export interface SshExecOptions {
  host: string;
  port: number;
  username?: string;
  /** Path of the private key file. */
  privateKeyPath: string;
  command: string;
  /** Bound for connect + auth + command. */
  timeoutMs: number;
  /** Bound for reaching the login prompt (default: min(5000, timeoutMs)). */
  connectTimeoutMs?: number;
}

export interface SshExecResult {
  /** The command's exit status; null when the connection ended without one (e.g. the guest powered off). */
  exitCode: number | null;
  signal?: string;
  stdout: string;
  stderr: string;
}

/** Where it went wrong: before a session ("connect", "auth", "key") or during the command ("cut", "timeout"). */
export type SshFailureStage = "key" | "connect" | "auth" | "timeout" | "cut";

export class SshError extends Error {
  constructor(
    readonly stage: SshFailureStage,
    message: string,
    /** True once the command was sent: the guest may have acted on it. */
    readonly commandSent: boolean,
  ) {
    super(message);
    this.name = "SshError";
  }
}

/** The private key matching an authorized_keys entry: the same path without ".pub"; undefined if not a .pub. */
export function privateKeyPathFor(authorizedKeysPath: string | undefined): string | undefined {
  if (!authorizedKeysPath || !authorizedKeysPath.endsWith(".pub")) return undefined;
  const p = authorizedKeysPath.slice(0, -".pub".length);
  return p.length > 0 && !p.endsWith("/") ? p : undefined;
}

const MAX_OUTPUT = 64 * 1024;

export async function sshExec(opts: SshExecOptions): Promise<SshExecResult> {
  let privateKey: Buffer;
  try {
    privateKey = await readFile(opts.privateKeyPath);
  } catch (e) {
    throw new SshError("key", `cannot read the SSH private key ${opts.privateKeyPath}: ${errnoCode(e) ?? errorMessage(e)}`, false);
  }
  const { Client } = await import("ssh2");
  const client = new Client();
  const connectTimeoutMs = Math.max(1, Math.min(opts.connectTimeoutMs ?? 5000, opts.timeoutMs));

  return new Promise<SshExecResult>((resolve, reject) => {
    let settled = false;
    let commandSent = false;
    let stdout = "";
    let stderr = "";
    const finish = (r: SshExecResult | SshError) => {
      if (settled) return;
      settled = true;
      clearTimeout(overall);
      client.removeAllListeners();
      client.on("error", () => {});
      client.end();
      // end() waits politely; a dead peer must not keep a socket alive.
      setTimeout(() => client.destroy(), 200).unref?.();
      if (r instanceof SshError) reject(r);
      else resolve(r);
    };
    const overall = setTimeout(
      () =>
        finish(
          new SshError(
            commandSent ? "timeout" : "connect",
            commandSent ? `"${opts.command}" did not finish within ${opts.timeoutMs} ms` : `no SSH session within ${opts.timeoutMs} ms`,
            commandSent,
          ),
        ),
      opts.timeoutMs,
    );

    client.on("error", (e: Error & { level?: string }) => {
      const msg = `${opts.host}:${opts.port}: ${errnoCode(e) ? `${errnoCode(e)} ` : ""}${e.message}`;
      if (commandSent) finish(new SshError("cut", `connection lost while "${opts.command}" ran: ${msg}`, true));
      else if (e.level === "client-authentication") finish(new SshError("auth", `root login refused with key ${opts.privateKeyPath}: ${msg}`, false));
      else finish(new SshError("connect", `cannot connect: ${msg}`, false));
    });
    client.on("close", () => {
      if (commandSent) finish(new SshError("cut", `connection closed while "${opts.command}" ran (the guest may be powering off)`, true));
      else finish(new SshError("connect", `${opts.host}:${opts.port}: connection closed before login`, false));
    });
    client.on("ready", () => {
      client.exec(opts.command, (err, stream) => {
        if (err) return finish(new SshError("connect", `cannot start "${opts.command}": ${err.message}`, false));
        commandSent = true;
        stream.on("data", (d: Buffer) => {
          if (stdout.length < MAX_OUTPUT) stdout += d.toString("utf8");
        });
        stream.stderr.on("data", (d: Buffer) => {
          if (stderr.length < MAX_OUTPUT) stderr += d.toString("utf8");
        });
        stream.on("close", (code: number | null | undefined, signal?: string) => {
          finish({ exitCode: typeof code === "number" ? code : null, ...(signal ? { signal } : {}), stdout, stderr });
        });
      });
    });

    try {
      client.connect({
        host: opts.host,
        port: opts.port,
        username: opts.username ?? "root",
        privateKey,
        readyTimeout: connectTimeoutMs,
        hostVerifier: () => true,
        // Never fall back to interactive methods: this runs unattended.
        tryKeyboard: false,
      });
    } catch (e) {
      // ssh2 throws synchronously on an unusable key (e.g. encrypted without a passphrase).
      finish(new SshError("key", `cannot use the SSH private key ${opts.privateKeyPath}: ${errorMessage(e)}`, false));
    }
  });
}
