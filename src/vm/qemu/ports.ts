// Host ports for QEMU's user-mode NAT forwards. The OS picks free ports on 127.0.0.1 (bind to port 0);
// QEMU binds them a moment later, so a rare race is possible: qemu.ts retries once with fresh ports.
import { createServer } from "node:net";
import type { PortForward } from "../spec.ts";
import { GUEST_PORTS } from "../build-spec.ts";

/** The guest ports havm forwards (all of GUEST_PORTS): HA (8123 and 80), SSH to the host OS (22222),
 *  the SSH add-on (22), the observer (4357). */
export const FORWARDED_PORTS: readonly number[] = Object.values(GUEST_PORTS);

/**
 * Pick distinct free host ports for `guestPorts`. All listeners are held open together so the kernel
 * cannot hand out the same port twice, then closed.
 */
export async function pickForwards(guestPorts: readonly number[] = FORWARDED_PORTS, host = "127.0.0.1"): Promise<PortForward[]> {
  const servers = await Promise.all(
    guestPorts.map(
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.unref();
          s.once("error", reject);
          s.listen({ host, port: 0, exclusive: true }, () => resolve(s));
        }),
    ),
  );
  const forwards = guestPorts.map((guestPort, i) => {
    const addr = servers[i]!.address();
    return { guestPort, hostPort: typeof addr === "object" && addr ? addr.port : 0 };
  });
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return forwards;
}

/** Fill in forwards whose hostPort is 0 (not chosen yet); keeps the ones already chosen. */
export async function completeForwards(forwards: PortForward[], host = "127.0.0.1"): Promise<PortForward[]> {
  const missing = forwards.filter((f) => !f.hostPort).map((f) => f.guestPort);
  if (missing.length === 0) return forwards.map((f) => ({ ...f }));
  const picked = await pickForwards(missing, host);
  const byGuest = new Map(picked.map((f) => [f.guestPort, f.hostPort]));
  return forwards.map((f) => ({ guestPort: f.guestPort, hostPort: f.hostPort || byGuest.get(f.guestPort)! }));
}
