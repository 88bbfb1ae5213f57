// sshExec's failure stages against ssh2's in-process Server (no root needed; the real sshd cases are in
// shutdown.test.ts): exit codes, a command that never ends, a session cut mid-command, a refused key.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Server, utils, type Connection } from "ssh2";
import { SshError, sshExec } from "../../src/guest/ssh.ts";
import { closedPort } from "./fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "havm-ssh2-"));
const keygen = (name: string) => {
  const p = join(dir, name);
  const r = Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", p]);
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
  return p;
};
const canKeygen = Bun.which("ssh-keygen") !== null;

let server: Server;
let port = 0;
let clientKey = "";
let otherKey = "";
const commands: string[] = [];
const connections = new Set<Connection>();

beforeAll(async () => {
  if (!canKeygen) return;
  const hostKey = keygen("host");
  clientKey = keygen("client");
  otherKey = keygen("other");
  const allowed = utils.parseKey(readFileSync(`${clientKey}.pub`));
  if (allowed instanceof Error) throw allowed;
  server = new Server({ hostKeys: [readFileSync(hostKey)] }, (client) => {
    connections.add(client);
    client.on("error", () => {});
    client.on("authentication", (ctx) => {
      if (ctx.method === "publickey" && ctx.username === "root" && ctx.key.algo === allowed.type && ctx.key.data.equals(allowed.getPublicSSH())) {
        if (!ctx.signature) return ctx.accept();
        return allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true ? ctx.accept() : ctx.reject();
      }
      ctx.reject(["publickey"]);
    });
    client.on("ready", () => {
      client.on("session", (accept) => {
        const session = accept();
        session.on("exec", (acceptExec, _reject, info) => {
          const stream = acceptExec();
          commands.push(info.command);
          if (info.command === "ha host shutdown") {
            stream.write("Command completed successfully.\n");
            stream.exit(0);
            stream.end();
          } else if (info.command === "false") {
            stream.stderr.write("no such thing\n");
            stream.exit(1);
            stream.end();
          } else if (info.command === "hang") {
            // never answers
          } else if (info.command === "cut") {
            setTimeout(() => client.end(), 50);
          }
        });
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  for (const c of connections) c.end();
  if (server) await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!canKeygen)("sshExec against ssh2's Server (needs ssh-keygen: Debian openssh-client)", () => {
  const exec = (command: string, extra: Partial<Parameters<typeof sshExec>[0]> = {}) =>
    sshExec({ host: "127.0.0.1", port, privateKeyPath: clientKey, command, timeoutMs: 3000, ...extra });

  test("exit 0 with stdout", async () => {
    expect(await exec("ha host shutdown")).toEqual({ exitCode: 0, stdout: "Command completed successfully.\n", stderr: "" });
    expect(commands).toContain("ha host shutdown");
  });

  test("non-zero exit with stderr", async () => {
    expect(await exec("false")).toMatchObject({ exitCode: 1, stderr: "no such thing\n" });
  });

  test("a command that never ends: stage timeout, command sent", async () => {
    const e = await exec("hang", { timeoutMs: 400 }).catch((x) => x);
    expect(e).toBeInstanceOf(SshError);
    expect(e).toMatchObject({ stage: "timeout", commandSent: true });
  });

  test("the connection dies mid-command: stage cut, command sent", async () => {
    const e = await exec("cut").catch((x) => x);
    expect(e).toMatchObject({ stage: "cut", commandSent: true });
  });

  test("a key the server does not know: stage auth, nothing sent", async () => {
    const before = commands.length;
    const e = await exec("ha host shutdown", { privateKeyPath: otherKey }).catch((x) => x);
    expect(e).toMatchObject({ stage: "auth", commandSent: false });
    expect(commands.length).toBe(before);
  });

  test("nothing listening: stage connect; a missing key file: stage key", async () => {
    expect(await exec("x", { port: await closedPort() }).catch((x) => x)).toMatchObject({ stage: "connect", commandSent: false });
    expect(await exec("x", { privateKeyPath: join(dir, "missing") }).catch((x) => x)).toMatchObject({ stage: "key" });
  });
});
