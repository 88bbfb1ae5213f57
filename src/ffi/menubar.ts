// bun:ffi over libhavm's menu bar part (shim/vz/havm_menubar.m, prototypes in shim/havm_menubar.h). Only the
// `havm menubar` process opens it. MENUBAR_SYMBOLS must match the header exactly: test/menubar/abi.test.ts
// compares them. Nothing here is called back from native code: clicks are drained by polling.
import { dlopen, type FFIFunction } from "bun:ffi";
import { HavmError, ExitCode } from "../util/errors.ts";
import { nativeLibraryPath } from "./native.ts";
import { VzNativeError } from "./vz.ts";
import { callChecked } from "./status.ts";

export const MENUBAR_SYMBOLS = {
  havm_menubar_abi_version: { args: ["ptr", "u32"], returns: "i32" },
  havm_menubar_create: { args: ["ptr", "u32"], returns: "i32" },
  havm_menubar_set_menu: { args: ["ptr", "ptr", "u32"], returns: "i32" },
  havm_menubar_pump: { args: ["u32", "ptr", "u32"], returns: "i32" },
  havm_menubar_next_click: { args: ["ptr", "u32"], returns: "i32" },
  havm_menubar_destroy: { args: ["ptr", "u32"], returns: "i32" },
} as const satisfies Record<string, FFIFunction>;

/** HAVM_MENUBAR_ABI_VERSION of shim/havm_menubar.h this file was written against. */
export const MENUBAR_ABI_VERSION = 1;
/** HAVM_MENUBAR_ID_MAX: longest item id + NUL. */
export const MENUBAR_ID_MAX = 256;
/** HAVM_MENUBAR_CLICK_QUEUE_CAP */
export const MENUBAR_CLICK_QUEUE_CAP = 64;
const ERR_LEN = 2048;

/** The status item, typed. The menubar loop takes this as a dependency (tests inject a fake). */
export interface MenubarNative {
  create(): void;
  /** JSON of a MenuModel (src/menubar/menubar.ts). */
  setMenu(menuJson: string): void;
  /** Dispatch AppKit events for up to ms; returns how many were dispatched. */
  pump(ms: number): number;
  /** Queued click ids, oldest first (empty when none). */
  drainClicks(): string[];
  destroy(): void;
}

type MenubarSymbols = ReturnType<typeof dlopen<typeof MENUBAR_SYMBOLS>>["symbols"];


class MenubarLibrary implements MenubarNative {
  private readonly clickBuf = Buffer.alloc(MENUBAR_ID_MAX);
  constructor(private readonly lib: MenubarSymbols) {}

  private call(fn: string, f: (err: Buffer, len: number) => number): number {
    return callChecked(f, (status, message) => new VzNativeError(fn, status, message), ERR_LEN);
  }

  abiVersion(): number {
    return this.call("havm_menubar_abi_version", (e, l) => this.lib.havm_menubar_abi_version(e, l));
  }
  create(): void {
    this.call("havm_menubar_create", (e, l) => this.lib.havm_menubar_create(e, l));
  }
  setMenu(menuJson: string): void {
    const json = Buffer.from(menuJson + "\0", "utf8");
    this.call("havm_menubar_set_menu", (e, l) => this.lib.havm_menubar_set_menu(json, e, l));
  }
  pump(ms: number): number {
    return this.call("havm_menubar_pump", (e, l) => this.lib.havm_menubar_pump(Math.max(0, Math.floor(ms)), e, l));
  }
  drainClicks(): string[] {
    const out: string[] = [];
    for (let i = 0; i < MENUBAR_CLICK_QUEUE_CAP; i++) {
      const n = this.lib.havm_menubar_next_click(this.clickBuf, this.clickBuf.length);
      if (n < 0) throw new VzNativeError("havm_menubar_next_click", n, "");
      if (n === 0) break;
      out.push(this.clickBuf.toString("utf8", 0, n));
    }
    return out;
  }
  destroy(): void {
    this.call("havm_menubar_destroy", (e, l) => this.lib.havm_menubar_destroy(e, l));
  }
}

/** Open libhavm's menu bar part. macOS only; refuses a library of another menu bar ABI version. */
export function openMenubar(libraryPath?: string, platform: string = process.platform): MenubarNative {
  if (platform !== "darwin") {
    throw new HavmError("the menu bar is macOS only", { hint: "On Linux use `havm usb list|attach|detach` and `havm status`.", exitCode: ExitCode.unsupported, code: "menubar.platform" });
  }
  const lib = new MenubarLibrary(dlopen(libraryPath ?? nativeLibraryPath(), MENUBAR_SYMBOLS).symbols);
  const version = lib.abiVersion();
  if (version !== MENUBAR_ABI_VERSION) {
    throw new HavmError(`libhavm speaks menu bar ABI ${version}, this havm expects ${MENUBAR_ABI_VERSION}`, {
      hint: "Rebuild the shim (scripts/build-shim-macos.sh) together with havm.",
      exitCode: ExitCode.unsupported,
      code: "menubar.abi",
    });
  }
  return lib;
}
