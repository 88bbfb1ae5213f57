import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DailyReboot, nextDailyOccurrence } from "../../src/supervise/schedule.ts";
import type { RestartReason } from "../../src/supervise/watchdog.ts";
import { FakeClock } from "./fake-clock.ts";

const savedTz = process.env.TZ;
beforeAll(() => {
  process.env.TZ = "Europe/Berlin";
});
afterAll(() => {
  if (savedTz === undefined) delete process.env.TZ;
  else process.env.TZ = savedTz;
});

const local = (y: number, mo: number, d: number, h: number, mi: number, s = 0) => new Date(y, mo - 1, d, h, mi, s).getTime();
const iso = (t: number) => new Date(t).toISOString();

describe("nextDailyOccurrence (Europe/Berlin)", () => {
  const at0410 = 4 * 60 + 10;
  const rows: [string, number, number, string][] = [
    ["later today", at0410, local(2026, 11, 25, 3, 0), "2026-11-25T03:10:00.000Z"],
    ["already past today -> tomorrow", at0410, local(2026, 11, 25, 5, 0), "2026-11-26T03:10:00.000Z"],
    ["exactly now -> tomorrow", at0410, local(2026, 11, 25, 4, 10), "2026-11-26T03:10:00.000Z"],
    ["month and year roll over", at0410, local(2026, 12, 31, 23, 0), "2027-01-01T03:10:00.000Z"],
    ["summer time (UTC+2)", at0410, local(2026, 7, 1, 0, 0), "2026-07-01T02:10:00.000Z"],
    // DST starts 2026-03-29 02:00 -> 03:00: 04:10 is 02:10Z that day, 03:10Z the day before.
    ["the night DST starts", at0410, local(2026, 3, 28, 12, 0), "2026-03-29T02:10:00.000Z"],
    ["a time in the spring-forward gap happens at the shifted instant", 2 * 60 + 30, local(2026, 3, 28, 12, 0), "2026-03-29T01:30:00.000Z"],
    // DST ends 2026-10-25 03:00 -> 02:00: 02:30 happens twice; we take the first (00:30Z), once.
    ["a repeated time happens at its first occurrence", 2 * 60 + 30, local(2026, 10, 24, 12, 0), "2026-10-25T00:30:00.000Z"],
    ["... and not again the same night", 2 * 60 + 30, Date.parse("2026-10-25T00:30:00.000Z"), "2026-10-26T01:30:00.000Z"],
    ["midnight", 0, local(2026, 11, 25, 0, 0, 1), "2026-11-25T23:00:00.000Z"],
  ];
  for (const [name, minutes, after, want] of rows) test(name, () => expect(iso(nextDailyOccurrence(minutes, after))).toBe(want));
});

function harness(startMs: number, at = "04:10", restartMs = 120_000, fail = false) {
  const clock = new FakeClock(startMs);
  const restarts: { at: number; reason: RestartReason }[] = [];
  const logs: string[] = [];
  const log = { info: (m: string) => logs.push(`info ${m}`), warn: (m: string) => logs.push(`warn ${m}`), error: (m: string, f?: object) => logs.push(`error ${m} ${JSON.stringify(f)}`) };
  const sched = new DailyReboot({
    at,
    clock,
    log,
    onReboot: async (reason) => {
      restarts.push({ at: clock.now(), reason });
      await new Promise<void>((r) => clock.setTimeout(r, restartMs));
      if (fail) throw new Error("guest did not stop");
    },
  });
  return { clock, restarts, logs, sched };
}

describe("DailyReboot driver (injected clock)", () => {
  test("fires at the configured local time, once a day, as reason schedule", async () => {
    const h = harness(local(2026, 11, 25, 3, 0));
    h.sched.start();
    expect(iso(h.sched.next()!)).toBe("2026-11-25T03:10:00.000Z");
    await h.clock.advance(70 * 60_000 - 1);
    expect(h.restarts).toEqual([]);
    await h.clock.advance(1);
    expect(h.restarts.map((r) => [iso(r.at), r.reason])).toEqual([["2026-11-25T03:10:00.000Z", "schedule"]]);
    await h.clock.advance(3 * 24 * 3_600_000 + 3_600_000);
    expect(h.restarts.map((r) => iso(r.at))).toEqual([
      "2026-11-25T03:10:00.000Z",
      "2026-11-26T03:10:00.000Z",
      "2026-11-27T03:10:00.000Z",
      "2026-11-28T03:10:00.000Z",
    ]);
    h.sched.stop();
    expect(h.sched.next()).toBeUndefined();
    expect(h.clock.pending()).toBe(0);
  });

  test("keeps local wall-clock time across the DST change", async () => {
    const h = harness(local(2026, 10, 23, 12, 0));
    h.sched.start();
    await h.clock.advance(4 * 24 * 3_600_000);
    expect(h.restarts.map((r) => new Date(r.at).toTimeString().slice(0, 5))).toEqual(["04:10", "04:10", "04:10", "04:10"]);
    expect(h.restarts.map((r) => iso(r.at)).slice(0, 2)).toEqual(["2026-10-24T02:10:00.000Z", "2026-10-25T03:10:00.000Z"]); // UTC+2, then UTC+1
  });

  test("a reboot the host slept through is skipped, not done hours late", async () => {
    const h = harness(local(2026, 11, 25, 3, 0));
    h.sched.start();
    await h.clock.advance(30 * 60_000);
    h.clock.jump(5 * 3_600_000); // asleep until 08:30
    await h.clock.advance(60_000);
    expect(h.restarts).toEqual([]);
    expect(h.logs.some((l) => l.startsWith("warn scheduled reboot skipped"))).toBe(true);
    expect(iso(h.sched.next()!)).toBe("2026-11-26T03:10:00.000Z");
    await h.clock.advance(24 * 3_600_000);
    expect(h.restarts.length).toBe(1);
  });

  test("a short oversleep still reboots", async () => {
    const h = harness(local(2026, 11, 25, 4, 9));
    h.sched.start();
    h.clock.jump(5 * 60_000);
    await h.clock.advance(60_000);
    expect(h.restarts.length).toBe(1);
  });

  test("a failed restart is logged and the next day is still planned", async () => {
    const h = harness(local(2026, 11, 25, 4, 0), "04:10", 60_000, true);
    h.sched.start();
    await h.clock.advance(24 * 3_600_000);
    expect(h.restarts.length).toBe(1);
    expect(h.logs.some((l) => l.startsWith("error scheduled reboot failed") && l.includes("guest did not stop"))).toBe(true);
    expect(iso(h.sched.next()!)).toBe("2026-11-26T03:10:00.000Z");
  });

  test("a bad time is refused", () => {
    expect(() => harness(0, "25:00").sched).toThrow(/not a time of day/);
  });
});
