// QEMU guest agent client (HAOS runs qemu-ga under QEMU). Optional by design: a guest without an agent
// simply never answers, so every call has a timeout and callers treat "no answer" as "unknown".
// One connection per call: QEMU's chardev server takes one client at a time, and a fresh connection plus
// guest-sync-delimited discards any half-read answer left from an earlier, timed-out call.
import { createConnection, type Socket } from "node:net";

export interface GuestIpAddress {
  "ip-address-type": "ipv4" | "ipv6";
  "ip-address": string;
  prefix: number;
}

export interface GuestNetworkInterface {
  name: string;
  "hardware-address"?: string;
  "ip-addresses"?: GuestIpAddress[];
}

export class GuestAgentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GuestAgentError";
  }
}

export class GuestAgentClient {
  constructor(
    private readonly socketPath: string,
    private readonly defaultTimeoutMs = 3000,
  ) {}

  /** True when an agent answered within the timeout. */
  async ping(timeoutMs = this.defaultTimeoutMs): Promise<boolean> {
    try {
      await this.call("guest-ping", undefined, { timeoutMs });
      return true;
    } catch {
      return false;
    }
  }

  networkInterfaces(timeoutMs = this.defaultTimeoutMs): Promise<GuestNetworkInterface[]> {
    return this.call<GuestNetworkInterface[]>("guest-network-get-interfaces", undefined, { timeoutMs });
  }

  /** The guest's first IPv4 address on the interface with `mac` (or any non-loopback one). */
  async ipv4For(mac: string | undefined, timeoutMs = this.defaultTimeoutMs): Promise<string | null> {
    return pickIpv4(await this.networkInterfaces(timeoutMs), mac);
  }

  /** Ask the guest to power off. qemu-ga sends no answer on success; a sync answer proves it heard us. */
  async shutdown(mode: "powerdown" | "reboot" | "halt" = "powerdown", timeoutMs = this.defaultTimeoutMs): Promise<void> {
    await this.call("guest-shutdown", { mode }, { timeoutMs, expectAnswer: false });
  }

  /** One command on a fresh connection. */
  async call<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: { timeoutMs?: number; expectAnswer?: boolean } = {},
  ): Promise<T> {
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const expectAnswer = opts.expectAnswer ?? true;
    const syncId = Math.floor(Math.random() * 2 ** 31);
    let socket: Socket | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      return await new Promise<T>((resolve, reject) => {
        timer = setTimeout(() => reject(new GuestAgentError(`guest agent: no answer to ${command} within ${timeoutMs} ms`)), timeoutMs);
        const s = createConnection({ path: this.socketPath });
        socket = s;
        let buf = Buffer.alloc(0);
        let synced = false;
        s.once("error", (e) => reject(new GuestAgentError(`guest agent: ${e.message}`)));
        s.once("close", () => reject(new GuestAgentError("guest agent: connection closed")));
        s.once("connect", () => {
          s.write(JSON.stringify({ execute: "guest-sync-delimited", arguments: { id: syncId } }) + "\n");
        });
        s.on("data", (chunk: Buffer) => {
          // guest-sync-delimited's answer is preceded by a 0xFF byte so stale bytes before it can be dropped.
          buf = Buffer.concat([buf, chunk]);
          if (!synced) {
            const ff = buf.lastIndexOf(0xff);
            if (ff >= 0) buf = buf.subarray(ff + 1);
          }
          let nl: number;
          while ((nl = buf.indexOf(0x0a)) >= 0) {
            const line = buf.subarray(0, nl).toString("utf8").trim();
            buf = buf.subarray(nl + 1);
            if (!line) continue;
            let msg: { return?: unknown; error?: { desc?: string } };
            try {
              msg = JSON.parse(line);
            } catch {
              continue;
            }
            if (!synced) {
              if (msg.return === syncId) {
                synced = true;
                const request = JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + "\n";
                // Without an answer to wait for (guest-shutdown sends none on success), resolve after a short
                // grace period, unless an error answer comes first. Closing at once could drop our bytes.
                s.write(request, () => {
                  if (!expectAnswer) setTimeout(() => resolve(undefined as T), Math.min(500, timeoutMs / 2));
                });
              }
              continue;
            }
            if (msg.error) reject(new GuestAgentError(`guest agent: ${command} failed: ${msg.error.desc ?? "unknown error"}`));
            else resolve(msg.return as T);
          }
        });
      });
    } finally {
      if (timer) clearTimeout(timer);
      socket?.destroy();
    }
  }
}

/** Pure: pick the IPv4 address of the interface whose MAC matches (case-insensitive), else the first
 *  non-loopback IPv4. */
export function pickIpv4(interfaces: GuestNetworkInterface[], mac?: string): string | null {
  const v4 = (i: GuestNetworkInterface) =>
    (i["ip-addresses"] ?? []).find((a) => a["ip-address-type"] === "ipv4" && !a["ip-address"].startsWith("127."))?.["ip-address"];
  if (mac) {
    const want = mac.toLowerCase();
    const byMac = interfaces.find((i) => i["hardware-address"]?.toLowerCase() === want);
    const ip = byMac && v4(byMac);
    if (ip) return ip;
  }
  for (const i of interfaces) {
    if (i.name === "lo") continue;
    const ip = v4(i);
    if (ip) return ip;
  }
  return null;
}
