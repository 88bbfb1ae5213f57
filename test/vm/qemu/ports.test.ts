import { describe, expect, test } from "bun:test";
import { createServer } from "node:net";
import { completeForwards, FORWARDED_PORTS, pickForwards } from "../../../src/vm/qemu/ports.ts";

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen({ host: "127.0.0.1", port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

describe("port forwards", () => {
  test("one distinct, bindable 127.0.0.1 port per guest port", async () => {
    const f = await pickForwards();
    expect(f.map((x) => x.guestPort)).toEqual([...FORWARDED_PORTS]);
    const hosts = f.map((x) => x.hostPort);
    expect(new Set(hosts).size).toBe(hosts.length);
    for (const p of hosts) {
      expect(p).toBeGreaterThan(1023);
      expect(await canBind(p)).toBe(true);
    }
  });

  test("completeForwards keeps chosen ports and fills zeros", async () => {
    const f = await completeForwards([
      { guestPort: 8123, hostPort: 18123 },
      { guestPort: 22222, hostPort: 0 },
    ]);
    expect(f[0]).toEqual({ guestPort: 8123, hostPort: 18123 });
    expect(f[1]!.guestPort).toBe(22222);
    expect(f[1]!.hostPort).toBeGreaterThan(0);
  });
});
