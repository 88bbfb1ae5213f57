// The menu bar item's logic: a pure model builder (supervisor status + USB list -> menu JSON for the shim),
// the click-id codec, and the loop that pumps AppKit from a JS timer and talks to the supervisor. The loop
// takes its dependencies (native status item, control requests, clock) so it runs without AppKit in tests.
import type { StatusReply } from "../supervise/control.ts";
import type { UsbListResult, UsbListRow } from "../usb/service.ts";
import { errorMessage, isHavmError } from "../util/errors.ts";
import type { MenubarNative } from "../ffi/menubar.ts";

export interface MenuItemModel {
  /** Clickable when set (and enabled is not false); comes back from the shim as the click id. */
  id?: string;
  title: string;
  checked?: boolean;
  enabled?: boolean;
  indent?: number;
  tooltip?: string;
}
export type MenuEntry = MenuItemModel | { separator: true };
/** The JSON shape havm_menubar_set_menu takes (shim/havm_menubar.h). */
export interface MenuModel {
  /** The status item's text in the menu bar. */
  title: string;
  tooltip?: string;
  items: MenuEntry[];
}

/** What the menu shows; built from the supervisor's answers. */
export interface MenubarSnapshot {
  /** False when nothing answers on the control socket. */
  running: boolean;
  status?: StatusReply;
  usb?: UsbListResult;
  /** Why usb.list failed (the supervisor answered status but not the list). */
  usbError?: string;
  /** An attach/detach in flight: "Attaching 10c4:ea60…". */
  busy?: string;
  /** The last action's refusal, shown until the next action. */
  lastError?: { message: string; hint?: string };
}

export type MenuAction = { kind: "attach" | "detach"; selector: string } | { kind: "open-ha" } | { kind: "quit" };

const MAX_TITLE = 80;
export const QUIT_ID = "quit";
export const OPEN_HA_ID = "open-ha";

/** Click id for an action (item ids are at most 255 bytes in the shim). */
export function clickId(action: MenuAction): string {
  if (action.kind === "attach" || action.kind === "detach") return `usb.${action.kind}:${action.selector}`.slice(0, 255);
  return action.kind === "quit" ? QUIT_ID : OPEN_HA_ID;
}

/** The action a click id names; undefined for ids this version does not know. */
export function parseClickId(id: string): MenuAction | undefined {
  if (id === QUIT_ID) return { kind: "quit" };
  if (id === OPEN_HA_ID) return { kind: "open-ha" };
  const m = /^usb\.(attach|detach):(.+)$/.exec(id);
  if (m) return { kind: m[1] as "attach" | "detach", selector: m[2]! };
  return undefined;
}

function clip(s: string, max = MAX_TITLE): string {
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

/** "3 d 4 h", "2 h 5 min", "42 s". */
export function formatUptime(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min`;
  return `${s} s`;
}

/** Text in the menu bar itself: short, and says when something needs a look. */
function barTitle(s: MenubarSnapshot): string {
  if (!s.running) return "HA ○";
  const state = s.status?.state ?? "unknown";
  if (state === "running") return s.status?.haUp === false ? "HA …" : "HA";
  if (state === "error" || state === "failed") return "HA !";
  return "HA …";
}

function stateLine(s: MenubarSnapshot): string {
  if (!s.running) return "havm is not running";
  const st = s.status ?? {};
  const parts = [`Home Assistant VM: ${st.state ?? "unknown"}`];
  if (st.activity) parts.push(st.activity);
  else if (st.state === "running" && st.uptimeSeconds !== undefined) parts.push(`up ${formatUptime(st.uptimeSeconds)}`);
  if (st.state === "running" && st.haUp === false) parts.push("Home Assistant is starting");
  return parts.join(" · ");
}

/** The selector a row is acted on by: the port tells identical sticks apart; unplugged ones go by ids. */
function rowSelector(r: UsbListRow): string {
  return r.port || r.selector;
}

function usbItem(r: UsbListRow, s: MenubarSnapshot): MenuItemModel {
  const usable = s.running && Boolean(s.usb?.enabled) && s.busy === undefined;
  let note = "";
  if (!r.present) note = r.remembered ? " — not plugged in (click to forget)" : " — not plugged in";
  else if (!r.accessible && !r.attached) note = " — no access";
  else if (r.remembered && !r.attached) note = " — remembered";
  const name = r.name && r.name !== r.selector ? `${r.name} (${r.selector})` : r.selector;
  const item: MenuItemModel = { title: clip(name + note), checked: r.attached, indent: 1 };
  // Attached or remembered-but-absent: a click detaches/forgets. Present and accessible: a click attaches.
  const action: MenuAction | undefined =
    r.attached || (!r.present && r.remembered) ? { kind: "detach", selector: rowSelector(r) } : r.present && r.accessible ? { kind: "attach", selector: rowSelector(r) } : undefined;
  if (action) item.id = clickId(action);
  item.enabled = usable && action !== undefined;
  const tip = r.accessProblem ?? (r.serial ? `serial ${r.serial}` : undefined);
  if (tip) item.tooltip = clip(tip, 400);
  return item;
}

/** Where the user opens Home Assistant: ha.url when configured, else the forwarded guest port 8123. */
export function haUrlOf(status: StatusReply | undefined): string | undefined {
  if (status?.haUrl) return status.haUrl;
  const ep = status?.endpoints?.["8123"];
  return ep ? `http://${ep}` : undefined;
}

/** The whole menu for a snapshot. Pure. */
export function buildMenu(s: MenubarSnapshot): MenuModel {
  const items: MenuEntry[] = [{ title: clip(stateLine(s)), enabled: false }];
  const url = haUrlOf(s.status);
  if (s.running && url && s.status?.haUp) items.push({ id: OPEN_HA_ID, title: "Open Home Assistant", tooltip: url });
  items.push({ separator: true }, { title: "USB accessories", enabled: false });
  if (!s.running) {
    items.push({ title: "Start the VM with `havm run` to attach devices", enabled: false, indent: 1 });
  } else if (s.usbError !== undefined) {
    items.push({ title: clip(`USB list unavailable: ${s.usbError}`), enabled: false, indent: 1 });
  } else if (s.usb) {
    if (s.usb.unavailable) items.push({ title: clip(s.usb.unavailable), enabled: false, indent: 1, tooltip: clip(s.usb.unavailable, 400) });
    if (!s.usb.enabled) items.push({ title: "USB passthrough is off (usb.enabled: false)", enabled: false, indent: 1 });
    for (const r of s.usb.devices) items.push(usbItem(r, s));
    if (s.usb.devices.length === 0 && !s.usb.unavailable) items.push({ title: "No USB devices found", enabled: false, indent: 1 });
  }
  if (s.busy) items.push({ title: clip(s.busy), enabled: false, indent: 1 });
  if (s.lastError) {
    const e: MenuItemModel = { title: clip(`⚠ ${s.lastError.message}`), enabled: false, indent: 1 };
    if (s.lastError.hint) e.tooltip = clip(s.lastError.hint, 400);
    items.push(e);
  }
  items.push({ separator: true }, { id: QUIT_ID, title: "Quit havm menu bar" });
  return { title: barTitle(s), tooltip: clip(stateLine(s), 200), items };
}

// ---------------------------------------------------------------------------------------------
// The loop

export interface MenubarLoopDeps {
  native: MenubarNative;
  /** controlRequest bound to the socket. Throws HavmError code "control.not-running" when nobody answers. */
  request(req: { cmd: string; selector?: string }, timeoutMs: number): Promise<Record<string, unknown>>;
  openUrl(url: string): void;
  log: { info(msg: string, f?: Record<string, unknown>): void; warn(msg: string, f?: Record<string, unknown>): void };
  now(): number;
  sleep(ms: number): Promise<void>;
  /** Set by a signal handler: the loop ends at its next turn. */
  stopRequested?: () => boolean;
  /** AppKit events are dispatched for this long per turn (JS and socket I/O run in between). */
  pumpMs?: number;
  /** Pause between turns so Bun's event loop serves sockets and timers. */
  gapMs?: number;
  /** How often the status and the USB list are fetched again. */
  refreshMs?: number;
  /** Exit once no supervisor has answered for this long (`havm run` starts the menu bar with it). */
  exitWhenStoppedMs?: number;
  /** Ends the loop after this many turns (tests). */
  maxTurns?: number;
}

export const ATTACH_TIMEOUT_MS = 30_000;

/** Fetch what the menu shows; never throws (a dead supervisor is a state, not an error). */
export async function fetchSnapshot(request: MenubarLoopDeps["request"]): Promise<MenubarSnapshot> {
  let status: StatusReply;
  try {
    status = (await request({ cmd: "status" }, 5_000)) as StatusReply;
  } catch (e) {
    if (isHavmError(e) && e.code === "control.not-running") return { running: false };
    return { running: true, status: { state: "unknown", activity: `no answer: ${errorMessage(e)}` }, usbError: "no answer" };
  }
  try {
    const usb = await request({ cmd: "usb.list" }, 15_000);
    if (!Array.isArray(usb.devices)) return { running: true, status, usbError: typeof usb.error === "string" ? usb.error : "no USB list yet" };
    return { running: true, status, usb: usb as unknown as UsbListResult };
  } catch (e) {
    return { running: true, status, usbError: errorMessage(e) };
  }
}

/** Pump AppKit, apply clicks, refresh from the supervisor; returns the exit code. */
export async function runMenubarLoop(deps: MenubarLoopDeps): Promise<number> {
  const pumpMs = deps.pumpMs ?? 100;
  const gapMs = deps.gapMs ?? 10;
  const refreshMs = deps.refreshMs ?? 5_000;
  let snapshot = await fetchSnapshot(deps.request);
  // Counts from the start: a menu bar started for a supervisor that never answers leaves too.
  let lastSeen = deps.now();
  let nextRefresh = deps.now() + refreshMs;
  let shown = "";
  let pending: Promise<void> | undefined;
  let refreshing: Promise<void> | undefined;
  let quit = false;

  const render = () => {
    const json = JSON.stringify(buildMenu(snapshot));
    if (json === shown) return;
    deps.native.setMenu(json);
    shown = json;
  };
  const refresh = () => {
    refreshing ??= fetchSnapshot(deps.request).then((next) => {
      snapshot = { ...next, busy: snapshot.busy, lastError: snapshot.lastError };
      if (next.running) lastSeen = deps.now();
      nextRefresh = deps.now() + refreshMs;
      refreshing = undefined;
      render();
    });
  };
  const act = (action: { kind: "attach" | "detach"; selector: string }) => {
    if (pending) return; // one change at a time; the item is disabled while busy anyway
    snapshot = { ...snapshot, busy: `${action.kind === "attach" ? "Attaching" : "Detaching"} ${action.selector}…`, lastError: undefined };
    render();
    pending = deps
      .request({ cmd: `usb.${action.kind}`, selector: action.selector }, ATTACH_TIMEOUT_MS)
      .then(
        () => {
          deps.log.info(`menu bar: usb ${action.kind} ${action.selector}`);
          snapshot = { ...snapshot, busy: undefined };
        },
        (e: unknown) => {
          deps.log.warn(`menu bar: usb ${action.kind} ${action.selector} failed: ${errorMessage(e)}`);
          snapshot = { ...snapshot, busy: undefined, lastError: { message: errorMessage(e), hint: isHavmError(e) ? e.hint : undefined } };
        },
      )
      .then(() => {
        pending = undefined;
        render();
        refresh();
      });
  };

  deps.native.create();
  try {
    render();
    for (let turn = 0; !quit; turn++) {
      if (deps.maxTurns !== undefined && turn >= deps.maxTurns) break;
      if (deps.stopRequested?.()) break;
      deps.native.pump(pumpMs);
      for (const id of deps.native.drainClicks()) {
        const action = parseClickId(id);
        if (!action) continue;
        if (action.kind === "quit") quit = true;
        else if (action.kind === "open-ha") {
          const url = haUrlOf(snapshot.status);
          if (url) deps.openUrl(url);
        } else act(action);
      }
      if (quit) break;
      if (deps.now() >= nextRefresh) refresh();
      if (deps.exitWhenStoppedMs !== undefined && !snapshot.running && deps.now() - lastSeen >= deps.exitWhenStoppedMs) {
        deps.log.info("menu bar: the havm supervisor is gone; exiting");
        break;
      }
      await deps.sleep(gapMs);
    }
    // An attach in flight is finished by the supervisor on its own; nothing to wait for here.
  } finally {
    deps.native.destroy();
  }
  return 0;
}
