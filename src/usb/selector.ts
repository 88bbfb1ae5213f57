// USB device selectors as typed by people: `1-1.2` (the host port shown by `havm usb list`),
// `10c4:ea60` (vendor:product, hex) or `10c4:ea60:ABC123` (plus serial). Pure: parsing and matching only.
import { HavmError, ExitCode, inputError } from "../util/errors.ts";

export type UsbSelector =
  /** A host port path as in /sys/bus/usb/devices ("1-1.2"): stable while the stick stays in that socket. */
  | { kind: "port"; port: string }
  | { kind: "ids"; vendorId: number; productId: number; serial?: string };

/** What a selector can be matched against: host devices, remembered accessories, attached devices. */
export interface UsbMatchable {
  vendorId: number;
  productId: number;
  serial?: string;
  port?: string;
}

const PORT_RE = /^\d{1,3}-\d{1,3}(\.\d{1,3})*$/;
const HEX_ID_RE = /^(?:0x)?([0-9a-f]{1,4})$/i;

export const SELECTOR_HINT = "Use the ID or VENDOR:PRODUCT[:SERIAL] column of `havm usb list`, e.g. 10c4:ea60 or 1-1.2.";

function parseHexId(text: string, what: string, input: string): number {
  const m = HEX_ID_RE.exec(text);
  if (!m) throw inputError(`"${input}" is not a USB device selector: the ${what} id "${text}" is not 1-4 hex digits`, SELECTOR_HINT, "usb.selector");
  return parseInt(m[1]!, 16);
}

/** Parse `<id|vendor:product[:serial]>`. Serials may contain colons: everything after the second colon is the serial. */
export function parseUsbSelector(input: string): UsbSelector {
  const text = input.trim();
  if (text === "") throw inputError("an empty USB device selector matches nothing", SELECTOR_HINT, "usb.selector");
  if (PORT_RE.test(text)) return { kind: "port", port: text };
  const first = text.indexOf(":");
  if (first < 0) throw inputError(`"${input}" is not a USB device selector`, SELECTOR_HINT, "usb.selector");
  const second = text.indexOf(":", first + 1);
  const vendorId = parseHexId(text.slice(0, first), "vendor", input);
  const productId = parseHexId(second < 0 ? text.slice(first + 1) : text.slice(first + 1, second), "product", input);
  if (second < 0) return { kind: "ids", vendorId, productId };
  const serial = text.slice(second + 1);
  if (serial === "") throw inputError(`"${input}" ends with ":" but gives no serial`, SELECTOR_HINT, "usb.selector");
  return { kind: "ids", vendorId, productId, serial };
}

/** "10c4:ea60", lowercase, 4 digits each: how lsusb prints ids. */
export function formatUsbId(vendorId: number, productId: number): string {
  return `${hex4(vendorId)}:${hex4(productId)}`;
}

export function hex4(n: number): string {
  return n.toString(16).padStart(4, "0");
}

export function formatUsbSelector(sel: UsbSelector): string {
  if (sel.kind === "port") return sel.port;
  return formatUsbId(sel.vendorId, sel.productId) + (sel.serial !== undefined ? `:${sel.serial}` : "");
}

/** The selector that names exactly this device as long as its serial is unique: vendor:product[:serial]. */
export function selectorFor(dev: UsbMatchable): string {
  return formatUsbId(dev.vendorId, dev.productId) + (dev.serial ? `:${dev.serial}` : "");
}

export function matchesUsbSelector(sel: UsbSelector, dev: UsbMatchable): boolean {
  if (sel.kind === "port") return dev.port === sel.port;
  if (dev.vendorId !== sel.vendorId || dev.productId !== sel.productId) return false;
  return sel.serial === undefined || dev.serial === sel.serial;
}

export function filterUsbSelector<T extends UsbMatchable>(sel: UsbSelector, devices: readonly T[]): T[] {
  return devices.filter((d) => matchesUsbSelector(sel, d));
}

/** One line naming a device for error messages and logs. */
export function describeUsbDevice(dev: UsbMatchable & { name?: string }): string {
  const parts = [selectorFor(dev)];
  if (dev.port) parts.push(`port ${dev.port}`);
  if (dev.name) parts.push(`"${dev.name}"`);
  return parts.join(" ");
}

/**
 * The one device a selector names. No match and several matches are both refused; the ambiguous case lists
 * the candidates with the longer selectors that tell them apart.
 */
export function selectOneUsbDevice<T extends UsbMatchable & { name?: string }>(
  sel: UsbSelector,
  devices: readonly T[],
  where = "on this host",
): T {
  const found = filterUsbSelector(sel, devices);
  const shown = formatUsbSelector(sel);
  if (found.length === 1) return found[0]!;
  if (found.length === 0) {
    throw new HavmError(`no USB device matches ${shown} ${where}`, {
      hint: "Run `havm usb list` to see the devices and their ids; check the stick is plugged in.",
      exitCode: ExitCode.badInput,
      code: "usb.unknown",
    });
  }
  const lines = found.map((d) => `  ${describeUsbDevice(d)}`).join("\n");
  const serialsDiffer = new Set(found.map((d) => d.serial ?? "")).size === found.length && found.every((d) => d.serial);
  throw new HavmError(`${shown} matches ${found.length} USB devices ${where}:\n${lines}`, {
    hint: serialsDiffer
      ? "Add the serial to pick one, e.g. " + selectorFor(found[0]!) + "."
      : "These devices have no distinguishing serial: pick one by its port ID (" + (found[0]!.port ?? "see `havm usb list`") + ").",
    exitCode: ExitCode.badInput,
    code: "usb.ambiguous",
  });
}
