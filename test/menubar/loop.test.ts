// The menu bar loop against a real control server on a unix socket (the supervisor's protocol), with the
// AppKit status item replaced by a recording fake (AppKit cannot run here).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { controlRequest, startControlServer, type ControlServer } from "../../src/supervise/control.ts";
import { HavmError, ExitCode } from "../../src/util/errors.ts";
import { runMenubarLoop, type MenuModel, type MenuItemModel } from "../../src/menubar/menubar.ts";
import type { MenubarNative } from "../../src/ffi/menubar.ts";

const dir = mkdtempSync(join(tmpdir(), "havm-menubar-loop-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Step {
  when: (menu: MenuModel) => boolean;
  click: string;
}

class FakeStatusItem implements MenubarNative {
  menus: MenuModel[] = [];
  created = 0;
  destroyed = 0;
  pumps = 0;
  constructor(private readonly steps: Step[]) {}
  create() {
    this.created++;
  }
  setMenu(json: string) {
    this.menus.push(JSON.parse(json) as MenuModel);
  }
  pump() {
    this.pumps++;
    return 0;
  }
  drainClicks(): string[] {
    const next = this.steps[0];
    const menu = this.menus.at(-1);
    if (next && menu && next.when(menu)) {
      this.steps.shift();
      return [next.click];
    }
    return [];
  }
  destroy() {
    this.destroyed++;
  }
}

const item = (m: MenuModel, id: string) => m.items.find((i): i is MenuItemModel => "id" in i && i.id === id);

function fakeClock() {
  let t = 0;
  return { now: () => t, sleep: async (ms: number) => { t += ms; await Bun.sleep(1); } };
}

const log = { info: () => {}, warn: () => {} };

describe("runMenubarLoop", () => {
  let server: ControlServer | undefined;
  afterAll(() => server?.close());

  test("attach by click, a refused detach shows its hint, open HA, quit", async () => {
    const socket = join(dir, "havm.sock");
    const attached = new Set<string>();
    const requests: string[] = [];
    server = await startControlServer(socket, {
      status: async () => ({ state: "running", uptimeSeconds: 5, haUp: true, haUrl: "http://127.0.0.1:8123" }),
      "usb.list": async () => ({
        enabled: true,
        running: true,
        devices: [{ port: "1-2", selector: "0658:0200", vendorId: "0658", productId: "0200", name: "Z-Stick", present: true, attached: attached.has("1-2"), remembered: attached.has("1-2"), accessible: true }],
      }),
      "usb.attach": async (req) => {
        requests.push(`attach ${String(req.selector)}`);
        attached.add(String(req.selector));
        return { device: { selector: "0658:0200", port: "1-2" } };
      },
      "usb.detach": async (req) => {
        requests.push(`detach ${String(req.selector)}`);
        throw new HavmError("the guest still uses it", { hint: "stop the Z-Wave add-on first", exitCode: ExitCode.failure });
      },
    });
    const opened: string[] = [];
    const native = new FakeStatusItem([
      { when: (m) => item(m, "usb.attach:1-2")?.enabled === true, click: "usb.attach:1-2" },
      { when: (m) => item(m, "usb.detach:1-2")?.checked === true, click: "usb.detach:1-2" },
      { when: (m) => m.items.some((i) => "title" in i && i.title.startsWith("⚠")), click: "open-ha" },
      { when: () => true, click: "quit" },
    ]);
    const clock = fakeClock();
    const code = await runMenubarLoop({
      native,
      request: (req, timeoutMs) => controlRequest(socket, req, { timeoutMs }),
      openUrl: (u) => opened.push(u),
      log,
      ...clock,
      refreshMs: 1_000_000,
      maxTurns: 2000,
    });
    expect(code).toBe(0);
    expect(requests).toEqual(["attach 1-2", "detach 1-2"]);
    expect(opened).toEqual(["http://127.0.0.1:8123"]);
    expect([native.created, native.destroyed]).toEqual([1, 1]);
    // The busy line appeared while attaching, then the device came back checked.
    expect(native.menus.some((m) => m.items.some((i) => "title" in i && i.title === "Attaching 1-2…"))).toBe(true);
    const last = native.menus.at(-1)!;
    const err = last.items.find((i): i is MenuItemModel => "title" in i && i.title.startsWith("⚠"))!;
    expect(err.title).toBe("⚠ the guest still uses it");
    expect(err.tooltip).toBe("stop the Z-Wave add-on first");
    expect(item(last, "usb.detach:1-2")?.checked).toBe(true);
  }, 20_000);

  test("with --exit-when-stopped it leaves once no supervisor has answered for that long", async () => {
    const native = new FakeStatusItem([]);
    const clock = fakeClock();
    const code = await runMenubarLoop({
      native,
      request: (req, timeoutMs) => controlRequest(join(dir, "nobody.sock"), req, { timeoutMs }),
      openUrl: () => {},
      log,
      ...clock,
      gapMs: 100,
      exitWhenStoppedMs: 1_000,
      maxTurns: 1000,
    });
    expect(code).toBe(0);
    expect(native.pumps).toBeGreaterThanOrEqual(10);
    expect(native.pumps).toBeLessThan(20);
    expect(native.menus[0]!.title).toBe("HA ○");
    expect(native.destroyed).toBe(1);
  });

  test("without it the menu bar stays (it shows 'not running') until asked to stop", async () => {
    const native = new FakeStatusItem([]);
    let turns = 0;
    const clock = fakeClock();
    await runMenubarLoop({
      native,
      request: (req, timeoutMs) => controlRequest(join(dir, "nobody.sock"), req, { timeoutMs }),
      openUrl: () => {},
      log,
      ...clock,
      gapMs: 1_000,
      stopRequested: () => ++turns > 50,
    });
    expect(native.pumps).toBe(50);
    expect(native.menus).toHaveLength(1);
  });
});
