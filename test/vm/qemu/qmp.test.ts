// The QMP client against a real QEMU (no firmware needed: the machine stays stopped with -S).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { QmpClient, QmpError, type BalloonGuestStats, type BalloonInfo, type QmpEvent, type QueryStatus } from "../../../src/vm/qemu/qmp.ts";
import { guestMemoryFigures, usbHostDeviceArgs } from "../../../src/vm/qemu/qemu.ts";

const QEMU = Bun.which("qemu-system-x86_64");

describe.skipIf(!QEMU)("QMP client (real qemu-system-x86_64 -S)", () => {
  let dir: string;
  let proc: ReturnType<typeof Bun.spawn>;
  let qmp: QmpClient;
  const events: QmpEvent[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "havm-qmp-"));
    const sock = join(dir, "qmp.sock");
    proc = Bun.spawn(
      [QEMU!, "-machine", "q35", "-accel", "tcg", "-nodefaults", "-no-user-config", "-display", "none", "-S",
        "-device", "qemu-xhci,id=xhci", "-device", "virtio-balloon-pci,id=balloon0", "-chardev", `socket,id=qmp0,path=${sock},server=on,wait=off`, "-mon", "chardev=qmp0,mode=control"],
      { stdin: "ignore", stdout: "ignore", stderr: "inherit" },
    );
    for (let i = 0; ; i++) {
      try {
        qmp = await QmpClient.connect(sock, { timeoutMs: 2000 });
        break;
      } catch (e) {
        if (i > 100) throw e;
        await Bun.sleep(50);
      }
    }
    qmp.onEvent((e) => events.push(e));
  });

  afterAll(async () => {
    qmp?.close();
    if (proc && proc.exitCode === null) proc.kill("SIGKILL");
    await proc?.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  test("greeting and negotiation done; query-status says prelaunch", async () => {
    expect(qmp.greeting?.version.qemu.major).toBeGreaterThanOrEqual(7);
    const st = await qmp.execute<QueryStatus>("query-status");
    expect(st.status).toBe("prelaunch");
    expect(st.running).toBe(false);
  });

  test("concurrent commands are matched to their answers by id", async () => {
    const [a, b, c] = await Promise.all([
      qmp.execute<{ qemu: { major: number } }>("query-version"),
      qmp.execute<QueryStatus>("query-status"),
      qmp.execute<{ name?: string }>("query-name"),
    ]);
    expect(a.qemu.major).toBeGreaterThanOrEqual(7);
    expect(b.status).toBe("prelaunch");
    expect(c).toEqual({});
  });

  test("an error answer becomes a QmpError with the class", async () => {
    const e = await qmp.execute("no-such-command").catch((x) => x);
    expect(e).toBeInstanceOf(QmpError);
    expect((e as QmpError).errorClass).toBe("CommandNotFound");
    const bad = await qmp.execute("device_add", { driver: "no-such-device", id: "x" }).catch((x) => x);
    expect(bad).toBeInstanceOf(QmpError);
  });

  test("events: cont -> RESUME, stop -> STOP", async () => {
    const resumed = qmp.waitEvent("RESUME");
    await qmp.execute("cont");
    await resumed;
    expect((await qmp.execute<QueryStatus>("query-status")).running).toBe(true);
    const stopped = qmp.waitEvent("STOP");
    await qmp.execute("stop");
    await stopped;
    expect((await qmp.execute<QueryStatus>("query-status")).status).toBe("paused");
  });

  test("USB hot-plug on the xhci bus: device_add usb-kbd / usb-tablet, device_del -> DEVICE_DELETED", async () => {
    await qmp.execute("device_add", { driver: "usb-kbd", bus: "xhci.0", id: "kbd1" });
    await qmp.execute("device_add", { driver: "usb-tablet", bus: "xhci.0", id: "tab1" });
    const list = await qmp.execute<{ name: string }[]>("qom-list", { path: "/machine/peripheral" });
    const names = list.map((p) => p.name);
    expect(names).toContain("kbd1");
    expect(names).toContain("tab1");
    const dup = await qmp.execute("device_add", { driver: "usb-kbd", bus: "xhci.0", id: "kbd1" }).catch((x) => x);
    expect(dup).toBeInstanceOf(QmpError);
    const gone = qmp.waitEvent("DEVICE_DELETED", (e) => e.data?.device === "kbd1");
    await qmp.execute("device_del", { id: "kbd1" });
    await gone;
    const after = (await qmp.execute<{ name: string }[]>("qom-list", { path: "/machine/peripheral" })).map((p) => p.name);
    expect(after).not.toContain("kbd1");
    expect(after).toContain("tab1");
  });

  test("usb-host passthrough arguments are accepted by QEMU (the device waits until it is plugged)", async () => {
    const dev = { vendorId: 0x10c4, productId: 0xea60, serial: "0001" };
    const args = usbHostDeviceArgs(dev, { bus: 1, addr: 7 }, 2);
    expect(args).toEqual({ driver: "usb-host", bus: "xhci.0", id: "usb-10c4-ea60-0001", vendorid: 0x10c4, productid: 0xea60, hostbus: 1, hostaddr: 7 });
    await qmp.execute("device_add", args);
    const names = (await qmp.execute<{ name: string }[]>("qom-list", { path: "/machine/peripheral" })).map((p) => p.name);
    expect(names).toContain("usb-10c4-ea60-0001");
    await qmp.execute("device_del", { id: "usb-10c4-ea60-0001" });
    expect(usbHostDeviceArgs(dev, { bus: 1, addr: 7 }, 1)).not.toHaveProperty("hostbus");
  });

  test("balloon: target via `balloon`, stats polling via qom-set, guest-stats via qom-get", async () => {
    const info = await qmp.execute<BalloonInfo>("query-balloon");
    expect(info.actual).toBe(128 * 1024 * 1024); // QEMU's default -m
    await qmp.execute("balloon", { value: 64 * 1024 * 1024 });
    await qmp.execute("qom-set", { path: "/machine/peripheral/balloon0", property: "guest-stats-polling-interval", value: 5 });
    const gs = await qmp.execute<BalloonGuestStats>("qom-get", { path: "/machine/peripheral/balloon0", property: "guest-stats" });
    expect(gs["last-update"]).toBe(0); // no guest driver: never updated
    // A figure the guest never sent is u64 -1: never a real size.
    expect(gs.stats["stat-free-memory"]).toBeGreaterThan(Number.MAX_SAFE_INTEGER);
    expect(guestMemoryFigures(gs)).toEqual({});
    const later = { "last-update": 1700000000, stats: { ...gs.stats, "stat-free-memory": 1000, "stat-total-memory": 4000 } };
    expect(guestMemoryFigures(later)).toEqual({ guestFreeBytes: 1000, guestTotalBytes: 4000 });
  });

  test("waitEvent rejects after its timeout; the client keeps working", async () => {
    await expect(qmp.waitEvent("WATCHDOG", () => true, 100)).rejects.toThrow(/no QMP WATCHDOG event/);
    expect((await qmp.execute<QueryStatus>("query-status")).status).toBe("paused");
  });

  test("quit: SHUTDOWN event, QEMU exits, the client reports closed and rejects new commands", async () => {
    const shutdown = qmp.waitEvent("SHUTDOWN");
    await qmp.execute("quit").catch(() => undefined);
    const ev = await shutdown;
    expect(ev.data?.guest).toBe(false);
    expect(ev.data?.reason).toBe("host-qmp-quit");
    expect(await proc.exited).toBe(0);
    await qmp.closed();
    expect(qmp.isClosed).toBe(true);
    await expect(qmp.execute("query-status")).rejects.toThrow();
    expect(events.some((e) => e.event === "SHUTDOWN")).toBe(true);
  });
});
