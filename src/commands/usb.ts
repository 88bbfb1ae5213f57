// `havm usb list | attach <selector> | detach <selector>`: USB accessories (Zigbee/Z-Wave sticks) for the
// running VM, through the supervisor's control socket (hot-plug, no restart). Without a running supervisor,
// `list` still shows the host's devices and the remembered ones; attach/detach say the VM is not running.
// --json (the global flag) prints one JSON object on stdout.
import { defineCommand } from "citty";
import { globalArgs, loadContext, type Context } from "../cli/context.ts";
import { controlRequest } from "../supervise/control.ts";
import { HavmError, ExitCode, isHavmError } from "../util/errors.ts";
import { log } from "../util/log.ts";
import { listHostUsbDevices } from "../usb/host.ts";
import { UsbRegistry } from "../usb/registry.ts";
import { parseUsbSelector, SELECTOR_HINT } from "../usb/selector.ts";
import { UsbService, USB_DISABLED_HINT, type UsbListResult, type UsbListRow } from "../usb/service.ts";

const ATTACH_TIMEOUT_MS = 30_000;

/** Rows as a table; the ID column is what `attach`/`detach` accept. Pure. */
export function formatUsbList(result: UsbListResult): string {
  const sections: string[] = [];
  if (result.unavailable) sections.push(result.unavailable);
  if (result.devices.length === 0) {
    if (!result.unavailable) sections.push("no USB devices found (hubs are not listed)");
  } else {
    const table = [["ID", "VENDOR:PRODUCT[:SERIAL]", "NAME", "STATE"], ...result.devices.map((d) => [d.port || "-", d.selector, d.name, rowState(d, result.running)])];
    const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
    sections.push(table.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n"));
    for (const d of result.devices) {
      if (d.present && !d.accessible && d.accessProblem) sections.push(`${d.port} (${d.selector}): ${d.accessProblem}`);
    }
  }
  if (!result.enabled) sections.push("USB passthrough is turned off (usb.enabled: false).");
  if (!result.running) sections.push("The VM is not running: remembered devices are attached when `havm run` starts it.");
  return sections.join("\n\n") + "\n";
}

function rowState(d: UsbListRow, running: boolean): string {
  const parts: string[] = [];
  if (d.attached) parts.push("attached");
  else if (d.remembered) parts.push(running ? "remembered (not attached)" : "remembered");
  if (!d.present) parts.push("not plugged in");
  else if (!d.accessible) parts.push("no access (see below)");
  return parts.join(", ") || "available";
}

/** What `list` shows when no supervisor answers: the host's devices and the registry. */
async function listOffline(ctx: Context): Promise<UsbListResult> {
  const offline = new UsbService({
    vm: { attachUsb: notRunning, detachUsb: notRunning },
    registry: new UsbRegistry(ctx.paths.vm.usbRegistry),
    listHost: () => listHostUsbDevices(),
    enabled: ctx.config.usb.enabled,
    log,
  });
  return { ...(await offline.list()), running: false };
}

async function notRunning(): Promise<void> {
  throw new HavmError("the VM is not running", { code: "control.not-running" });
}

function isNotRunning(e: unknown): boolean {
  return isHavmError(e) && e.code === "control.not-running";
}

function print(json: boolean | undefined, value: unknown, text: string): void {
  process.stdout.write(json ? JSON.stringify(value) + "\n" : text);
}

const list = defineCommand({
  meta: { name: "list", description: "List host USB devices that can be attached, and which are attached or remembered" },
  args: { ...globalArgs },
  async run({ args }) {
    const ctx = loadContext(args);
    let result: UsbListResult;
    try {
      const { ok: _ok, ...reply } = await controlRequest(ctx.paths.vm.controlSocket, { cmd: "usb.list" }, { timeoutMs: 10_000 });
      if (!Array.isArray(reply.devices)) {
        // E.g. the supervisor is between two boots of the VM.
        throw new HavmError(`the havm supervisor gave no USB list${typeof reply.error === "string" ? `: ${reply.error}` : ""}`, {
          hint: "Try again in a moment; `havm status` shows what the VM is doing.",
          code: "usb.list",
        });
      }
      result = reply as unknown as UsbListResult;
    } catch (e) {
      if (!isNotRunning(e)) throw e;
      result = await listOffline(ctx);
    }
    print(Boolean(args.json), result, formatUsbList(result));
    return ExitCode.ok;
  },
});

function changeCommand(action: "attach" | "detach") {
  return defineCommand({
    meta: {
      name: action,
      description:
        action === "attach"
          ? "Attach a host USB device to the running VM (hot-plug) and remember it for the next runs"
          : "Detach a USB device from the running VM and forget it",
    },
    args: {
      ...globalArgs,
      device: { type: "positional", required: true, description: "ID (1-1.2) or VENDOR:PRODUCT[:SERIAL] (10c4:ea60) from `havm usb list`", valueHint: "SELECTOR" },
    },
    async run({ args }) {
      const ctx = loadContext(args);
      const selector = String(args.device ?? "");
      parseUsbSelector(selector); // bad input is refused before anything else (exit 2)
      let reply: Record<string, unknown>;
      try {
        reply = await controlRequest(ctx.paths.vm.controlSocket, { cmd: `usb.${action}`, selector }, { timeoutMs: ATTACH_TIMEOUT_MS });
      } catch (e) {
        if (!isNotRunning(e)) throw e;
        if (!ctx.config.usb.enabled) {
          throw new HavmError("USB passthrough is turned off (usb.enabled: false)", { hint: USB_DISABLED_HINT, exitCode: ExitCode.badInput, code: "usb.disabled" });
        }
        throw new HavmError(`cannot ${action} ${selector}: the VM is not running`, {
          hint:
            action === "attach"
              ? "Start it with `havm run`, then attach. Devices attached once are attached again at every start."
              : "Start it with `havm run` to detach; remembered devices are attached again at every start.",
          exitCode: ExitCode.failure,
          code: "usb.not-running",
        });
      }
      const device = (reply.device ?? {}) as { selector?: string; port?: string; name?: string };
      const what = `${device.selector ?? selector}${device.port ? ` (port ${device.port})` : ""}${device.name ? ` ${device.name}` : ""}`;
      print(Boolean(args.json), { action, device }, action === "attach" ? `attached ${what}\n` : `detached ${what}\n`);
      return ExitCode.ok;
    },
  });
}

export default defineCommand({
  meta: { name: "usb", description: `USB accessories for the VM (Zigbee/Z-Wave sticks). ${SELECTOR_HINT}` },
  subCommands: {
    list,
    attach: changeCommand("attach"),
    detach: changeCommand("detach"),
  },
});
