// The guest agent client against the real qemu-ga (listening on a unix socket on this host, with every
// command that could touch the host blocked), and against a socket where nobody answers.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GuestAgentClient, pickIpv4, type GuestNetworkInterface } from "../../../src/vm/qemu/qga.ts";

const QGA = Bun.which("qemu-ga") ?? (existsSync("/usr/sbin/qemu-ga") ? "/usr/sbin/qemu-ga" : null);

// Everything that changes the host; the agent only keeps ping, sync, info and read-only queries.
const BLOCKED = [
  "guest-shutdown", "guest-suspend-disk", "guest-suspend-ram", "guest-suspend-hybrid", "guest-exec", "guest-exec-status",
  "guest-file-open", "guest-file-close", "guest-file-read", "guest-file-write", "guest-file-seek", "guest-file-flush",
  "guest-fsfreeze-freeze", "guest-fsfreeze-freeze-list", "guest-fsfreeze-thaw", "guest-fstrim", "guest-set-time",
  "guest-set-vcpus", "guest-set-memory-blocks", "guest-set-user-password", "guest-ssh-add-authorized-keys",
  "guest-ssh-remove-authorized-keys",
].join(",");

describe("pickIpv4", () => {
  const ifs: GuestNetworkInterface[] = [
    { name: "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [{ "ip-address-type": "ipv4", "ip-address": "127.0.0.1", prefix: 8 }] },
    { name: "docker0", "hardware-address": "02:42:aa:bb:cc:dd", "ip-addresses": [{ "ip-address-type": "ipv4", "ip-address": "172.17.0.1", prefix: 16 }] },
    {
      name: "enp0s2",
      "hardware-address": "02:5A:01:23:45:67",
      "ip-addresses": [
        { "ip-address-type": "ipv6", "ip-address": "fe80::1", prefix: 64 },
        { "ip-address-type": "ipv4", "ip-address": "192.168.1.50", prefix: 24 },
      ],
    },
  ];
  test("matches the MAC case-insensitively", () => expect(pickIpv4(ifs, "02:5a:01:23:45:67")).toBe("192.168.1.50"));
  test("falls back to the first non-loopback IPv4", () => expect(pickIpv4(ifs, "02:00:00:00:00:99")).toBe("172.17.0.1"));
  test("null when there is none", () => expect(pickIpv4([ifs[0]!])).toBeNull());
});

describe("guest agent without an agent (the test guest has none)", () => {
  let dir: string;
  let server: Server;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "havm-qga-silent-"));
    // Like QEMU's chardev with no agent in the guest: the socket accepts, nobody ever answers.
    server = createServer(() => undefined);
    await new Promise<void>((r) => server.listen(join(dir, "qga.sock"), r));
  });
  afterAll(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("ping is false after its timeout; calls reject", async () => {
    const c = new GuestAgentClient(join(dir, "qga.sock"));
    const t0 = Date.now();
    expect(await c.ping(300)).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    await expect(c.networkInterfaces(200)).rejects.toThrow(/no answer/);
  });

  test("a missing socket fails fast", async () => {
    const c = new GuestAgentClient(join(dir, "none.sock"));
    expect(await c.ping(2000)).toBe(false);
    await expect(c.networkInterfaces(2000)).rejects.toThrow(/guest agent/);
  });
});

describe.skipIf(!QGA)("guest agent against real qemu-ga (unix-listen, host-changing commands blocked)", () => {
  let dir: string;
  let proc: ReturnType<typeof Bun.spawn>;
  let sock: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "havm-qga-"));
    sock = join(dir, "qga.sock");
    proc = Bun.spawn([QGA!, "-m", "unix-listen", "-p", sock, "-t", dir, "-b", BLOCKED], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
    for (let i = 0; i < 100 && !existsSync(sock); i++) await Bun.sleep(50);
  });
  afterAll(async () => {
    proc?.kill("SIGKILL");
    await proc?.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  test("ping answers", async () => {
    expect(await new GuestAgentClient(sock).ping(3000)).toBe(true);
  });

  test("network interfaces include lo with 127.0.0.1", async () => {
    const ifs = await new GuestAgentClient(sock).networkInterfaces(3000);
    const lo = ifs.find((i) => i.name === "lo");
    expect(lo?.["ip-addresses"]?.some((a) => a["ip-address"] === "127.0.0.1")).toBe(true);
  });

  test("guest-shutdown reaches the agent (blocked here, so it answers with an error)", async () => {
    const c = new GuestAgentClient(sock);
    await expect(c.call("guest-shutdown", { mode: "powerdown" }, { timeoutMs: 3000 })).rejects.toThrow(/disabled|not found|guest-shutdown/i);
    // The fire-and-forget form still reports an error answer when one comes.
    await expect(c.shutdown("powerdown", 3000)).rejects.toThrow(/disabled|guest-shutdown/i);
    expect(await c.ping(3000)).toBe(true);
  });

  test("sequential calls each resync on a fresh connection", async () => {
    const c = new GuestAgentClient(sock);
    for (let i = 0; i < 3; i++) expect(await c.ping(3000)).toBe(true);
  });
});
