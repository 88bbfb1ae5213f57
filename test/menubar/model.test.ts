// The pure parts of the menu bar: the menu model (table + golden), the click-id codec, and the decision
// whether `havm run` starts the menu bar.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildMenu, clickId, formatUptime, parseClickId, type MenuItemModel, type MenubarSnapshot } from "../../src/menubar/menubar.ts";
import { maybeStartMenubar, menubarAlive, menubarDecision, selfCommand } from "../../src/menubar/launch.ts";
import type { UsbListRow } from "../../src/usb/service.ts";
import { vmPaths } from "../../src/config/paths.ts";
import type { HavmPaths } from "../../src/config/paths.ts";

const GOLDEN = join(import.meta.dir, "golden");

function row(over: Partial<UsbListRow>): UsbListRow {
  return { port: "1-1", selector: "10c4:ea60", vendorId: "10c4", productId: "ea60", name: "Sonoff Zigbee 3.0", present: true, attached: false, remembered: false, accessible: true, ...over };
}

const running: MenubarSnapshot = {
  running: true,
  status: { state: "running", uptimeSeconds: 7500, haUp: true, haUrl: "http://127.0.0.1:8123" },
  usb: {
    enabled: true,
    running: true,
    devices: [
      row({ port: "1-1", attached: true, remembered: true, serial: "abc" , selector: "10c4:ea60:abc" }),
      row({ port: "1-2", selector: "0658:0200", vendorId: "0658", productId: "0200", name: "Aeotec Z-Stick 7" }),
      row({ port: "1-3", selector: "1a86:55d4", name: "1a86:55d4", accessible: false, accessProblem: "/dev/bus/usb/001/004 is root-only: add a udev rule" }),
      row({ port: "", selector: "1cf1:0030", name: "ConBee II", present: false, remembered: true, accessible: false }),
    ],
  },
};

function items(s: MenubarSnapshot): MenuItemModel[] {
  return buildMenu(s).items.filter((i): i is MenuItemModel => !("separator" in i));
}

function golden(name: string, value: unknown) {
  const file = join(GOLDEN, name);
  const text = JSON.stringify(value, null, 2) + "\n";
  if (process.env.UPDATE_GOLDEN === "1") writeFileSync(file, text);
  expect(existsSync(file)).toBe(true);
  expect(text).toBe(readFileSync(file, "utf8"));
}

describe("buildMenu", () => {
  test("golden: a running VM with attached, free, inaccessible and unplugged devices", () => {
    golden("menu-running.json", buildMenu(running));
  });
  test("golden: no supervisor", () => {
    golden("menu-not-running.json", buildMenu({ running: false }));
  });

  test("attached devices are checked and detach on click; free ones attach; inaccessible ones are disabled", () => {
    const usb = items(running).filter((i) => i.indent === 1);
    expect(usb.map((i) => [i.checked, i.enabled, i.id])).toEqual([
      [true, true, "usb.detach:1-1"],
      [false, true, "usb.attach:1-2"],
      [false, false, undefined],
      [false, true, "usb.detach:1cf1:0030"],
    ]);
    expect(usb[2]!.tooltip).toContain("udev rule");
    expect(usb[3]!.title).toContain("not plugged in");
  });

  test.each([
    ["not running", { running: false } as MenubarSnapshot, "HA ○", "havm is not running"],
    ["running, HA up", running, "HA", "Home Assistant VM: running · up 2 h 5 min"],
    ["running, HA starting", { ...running, status: { state: "running", uptimeSeconds: 30, haUp: false } }, "HA …", "Home Assistant VM: running · up 30 s · Home Assistant is starting"],
    ["stopping", { ...running, status: { state: "stopping", activity: "shutting down (guest agent)" } }, "HA …", "Home Assistant VM: stopping · shutting down (guest agent)"],
    ["error", { ...running, status: { state: "error" } }, "HA !", "Home Assistant VM: error"],
  ])("state %s: bar title and first line", (_name, snap, title, line) => {
    const m = buildMenu(snap);
    expect(m.title).toBe(title);
    expect(items(snap)[0]).toEqual({ title: line, enabled: false });
  });

  test("Open Home Assistant only when HA answers; Quit is always last", () => {
    expect(items(running).some((i) => i.id === "open-ha")).toBe(true);
    expect(items({ ...running, status: { ...running.status, haUp: false } }).some((i) => i.id === "open-ha")).toBe(false);
    // Without ha.url the forwarded port is used.
    const viaPort = items({ ...running, status: { state: "running", haUp: true, endpoints: { "8123": "127.0.0.1:18123" } } }).find((i) => i.id === "open-ha");
    expect(viaPort?.tooltip).toBe("http://127.0.0.1:18123");
    expect(items({ ...running, status: { state: "running", haUp: true } }).some((i) => i.id === "open-ha")).toBe(false);
    for (const s of [running, { running: false }]) expect(buildMenu(s).items.at(-1)).toEqual({ id: "quit", title: "Quit havm menu bar" });
  });

  test("while an attach is in flight every device is disabled and the busy line shows", () => {
    const s = { ...running, busy: "Attaching 1-2…" };
    expect(items(s).filter((i) => i.indent === 1 && i.id).every((i) => i.enabled === false)).toBe(true);
    expect(items(s).some((i) => i.title === "Attaching 1-2…")).toBe(true);
  });

  test("usb disabled, unavailable, empty and failing lists each say so", () => {
    const off = items({ ...running, usb: { ...running.usb!, enabled: false } });
    expect(off.some((i) => i.title.includes("usb.enabled: false"))).toBe(true);
    expect(off.filter((i) => i.id?.startsWith("usb.")).every((i) => i.enabled === false)).toBe(true);
    expect(items({ ...running, usb: { enabled: true, running: true, devices: [], unavailable: "USB passthrough needs macOS 27" } }).map((i) => i.title)).toContain("USB passthrough needs macOS 27");
    expect(items({ ...running, usb: { enabled: true, running: true, devices: [] } }).map((i) => i.title)).toContain("No USB devices found");
    expect(items({ ...running, usb: undefined, usbError: "timeout" }).map((i) => i.title)).toContain("USB list unavailable: timeout");
  });

  test("a refusal is shown with its hint as tooltip; long titles are clipped", () => {
    const s = { ...running, lastError: { message: "x".repeat(200), hint: "do this" } };
    const e = items(s).find((i) => i.title.startsWith("⚠"))!;
    expect(e.title.length).toBe(80);
    expect(e.tooltip).toBe("do this");
  });
});

describe("click ids", () => {
  test.each([
    [{ kind: "attach", selector: "1-1.2" }, "usb.attach:1-1.2"],
    [{ kind: "detach", selector: "10c4:ea60:ab:c" }, "usb.detach:10c4:ea60:ab:c"],
    [{ kind: "quit" }, "quit"],
    [{ kind: "open-ha" }, "open-ha"],
  ] as const)("%o <-> %s", (action, id) => {
    expect(clickId(action)).toBe(id);
    expect(parseClickId(id)).toEqual(action);
  });
  test("unknown ids are ignored", () => {
    expect(parseClickId("usb.eject:1-1")).toBeUndefined();
    expect(parseClickId("usb.attach:")).toBeUndefined();
    expect(parseClickId("")).toBeUndefined();
  });
});

test.each([
  [0, "0 s"],
  [59, "59 s"],
  [60, "1 min"],
  [3599, "59 min"],
  [3600, "1 h 0 min"],
  [90061, "1 d 1 h"],
])("formatUptime(%d) = %s", (s, text) => expect(formatUptime(s)).toBe(text));

describe("menubarDecision", () => {
  const base = { platform: "darwin", env: {}, managerName: "Aqua", alreadyRunning: false };
  test.each([
    ["GUI session on macOS", base, true, "GUI session"],
    ["Linux", { ...base, platform: "linux" }, false, "macOS only"],
    ["HAVM_NO_MENUBAR=1", { ...base, env: { HAVM_NO_MENUBAR: "1" } }, false, "HAVM_NO_MENUBAR"],
    ["HAVM_NO_MENUBAR=0 means not set", { ...base, env: { HAVM_NO_MENUBAR: "0" } }, true, "GUI session"],
    ["ssh / LaunchAgent background", { ...base, managerName: "Background" }, false, "no GUI session"],
    ["launchctl unavailable", { ...base, managerName: undefined }, false, "unknown"],
    ["already running", { ...base, alreadyRunning: true }, false, "already running"],
  ])("%s", (_n, input, start, reason) => {
    const d = menubarDecision(input);
    expect(d.start).toBe(start);
    expect(d.reason).toContain(reason);
  });
});

describe("maybeStartMenubar", () => {
  const dir = mkdtempSync(join(tmpdir(), "havm-menubar-"));
  const paths = { vm: vmPaths(dir) } as HavmPaths;
  const lines: string[] = [];
  const log = { info: (m: string) => lines.push(`info ${m}`), debug: (m: string) => lines.push(`debug ${m}`), warn: (m: string) => lines.push(`warn ${m}`) };

  test("spawns `<self> menubar --socket <vm socket> --exit-when-stopped` in a GUI session", () => {
    const spawned: { argv: string[]; logFile: string }[] = [];
    const r = maybeStartMenubar(paths, log, { platform: "darwin", env: {}, managerName: () => "Aqua", alive: () => false, spawnDetached: (argv, logFile) => (spawned.push({ argv, logFile }), 4242) });
    expect(r).toEqual({ start: true, reason: "GUI session", pid: 4242 });
    expect(spawned).toHaveLength(1);
    expect(spawned[0]!.argv.slice(-4)).toEqual(["menubar", "--socket", join(dir, "havm.sock"), "--exit-when-stopped"]);
    expect(spawned[0]!.argv[0]).toBe(process.execPath);
    expect(spawned[0]!.logFile).toBe(join(dir, "menubar.log"));
  });

  test("on this Linux host it never spawns, and a failing spawn never throws", () => {
    const r = maybeStartMenubar(paths, log, { spawnDetached: () => { throw new Error("must not spawn"); } });
    expect(r.start).toBe(false);
    const bad = maybeStartMenubar(paths, log, { platform: "darwin", env: {}, managerName: () => "Aqua", alive: () => false, spawnDetached: () => { throw new Error("EACCES"); } });
    expect(bad.start).toBe(false);
    expect(lines.some((l) => l.startsWith("warn cannot start the menu bar"))).toBe(true);
  });

  test("menubarAlive: a live menubar pid, a recycled pid, a dead pid, garbage", () => {
    const f = join(dir, "menubar.pid");
    writeFileSync(f, `${process.pid}\n`);
    expect(menubarAlive(f, () => "/usr/local/bin/havm menubar --socket x")).toBe(true);
    expect(menubarAlive(f, () => "/usr/bin/vim")).toBe(false);
    // A process that surely exited: a child we waited for.
    const gone = Bun.spawnSync(["true"]).pid;
    writeFileSync(f, `${gone}\n`);
    expect(menubarAlive(f, () => "havm menubar")).toBe(false);
    writeFileSync(f, "nope");
    expect(menubarAlive(f)).toBe(false);
    expect(menubarAlive(join(dir, "missing.pid"))).toBe(false);
  });

  test("selfCommand: bun + script in a checkout, the binary alone when compiled", () => {
    expect(selfCommand("/usr/local/bin/bun", import.meta.path)).toEqual(["/usr/local/bin/bun", import.meta.path]);
    expect(selfCommand("/opt/homebrew/bin/havm", "/$bunfs/root/havm")).toEqual(["/opt/homebrew/bin/havm"]);
  });
});
