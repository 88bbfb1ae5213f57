// bun:ffi over libhavm's Virtualization.framework part (shim/vz/havm_vz.m, prototypes in shim/havm.h).
// VZ_SYMBOLS must match havm.h exactly: test/vz/abi.test.ts compares them. macOS only: dlopen is
// refused elsewhere. Nothing here is called back from native code: events are drained by polling.
import { dlopen, type FFIFunction, type Pointer } from "bun:ffi";
import { HavmError, ExitCode } from "../util/errors.ts";
import { nativeLibraryPath } from "./native.ts";
import { callChecked, cstr } from "./status.ts";

export const VZ_SYMBOLS = {
  havm_abi_version: { args: ["ptr", "u32"], returns: "i32" },
  havm_is_supported: { args: ["ptr", "u32"], returns: "i32" },
  havm_limits: { args: ["ptr", "ptr", "u32"], returns: "i32" },
  havm_entitlements: { args: ["ptr", "ptr", "u32"], returns: "i32" },
  havm_machine_identifier_create: { args: ["ptr", "u32", "ptr", "ptr", "u32"], returns: "i32" },
  havm_machine_identifier_validate: { args: ["ptr", "u32", "ptr", "u32"], returns: "i32" },
  havm_vm_validate: { args: ["ptr", "ptr", "u32"], returns: "i32" },
  havm_vm_create: { args: ["ptr", "ptr", "ptr", "u32"], returns: "i32" },
  havm_vm_start: { args: ["ptr", "ptr", "u32"], returns: "i32" },
  havm_vm_request_stop: { args: ["ptr", "ptr", "u32"], returns: "i32" },
  havm_vm_stop: { args: ["ptr", "ptr", "u32"], returns: "i32" },
  havm_vm_state: { args: ["ptr", "ptr", "ptr", "u32"], returns: "i32" },
  havm_vm_next_event: { args: ["ptr", "ptr", "u32"], returns: "i32" },
  havm_vm_set_balloon_target: { args: ["ptr", "u64", "ptr", "u32"], returns: "i32" },
  havm_vm_balloon_target: { args: ["ptr", "ptr", "ptr", "u32"], returns: "i32" },
  havm_vm_usb_attach: { args: ["ptr", "ptr", "ptr", "u32"], returns: "i32" },
  havm_vm_usb_detach: { args: ["ptr", "ptr", "ptr", "u32"], returns: "i32" },
  havm_vm_destroy: { args: ["ptr", "ptr", "u32"], returns: "i32" },
  havm_usb_list: { args: ["ptr", "u32", "ptr", "u32"], returns: "i32" },
} as const satisfies Record<string, FFIFunction>;

/** HAVM_VZ_ABI_VERSION of shim/havm.h this file was written against. */
export const VZ_ABI_VERSION = 1;

/** Status codes (HAVM_E_* in shim/havm.h). */
export const VzStatus = {
  ok: 0,
  invalidArgument: -1,
  unsupported: -2,
  validation: -3,
  entitlement: -4,
  state: -5,
  framework: -6,
  notFound: -7,
  buffer: -8,
  io: -9,
  exception: -99,
} as const;

/** Raw VZVirtualMachineState values (HAVM_STATE_*). */
export const VzRawState = {
  stopped: 0,
  running: 1,
  paused: 2,
  error: 3,
  starting: 4,
  pausing: 5,
  resuming: 6,
  stopping: 7,
  saving: 8,
  restoring: 9,
} as const;

/** HAVM_ENT_* bits. */
export const VzEntitlement = { virtualization: 1, usb: 2, networking: 4 } as const;

export const HAVM_EVENT_MAX = 4096;
const ERR_LEN = 2048;
const EVENT_BUF_LEN = 64 * 1024;

export interface VzLimits {
  minCpus: number;
  maxCpus: number;
  minMemoryBytes: number;
  maxMemoryBytes: number;
}

export interface VzAccessory {
  registryId: string;
  vendorId: number;
  productId: number;
}

/** Hints for the statuses a user can act on. */
function hintFor(status: number): string | undefined {
  switch (status) {
    case VzStatus.entitlement:
      return "Builds: tier 1 (free, ad hoc) = virtualization only; tier 2 = + USB accessories; tier 3 = + bridged networking (both need a provisioning profile). See scripts/sign.sh.";
    case VzStatus.unsupported:
      return "Virtualization.framework needs macOS 13 or newer on Apple silicon or a Mac with VT-x.";
    case VzStatus.validation:
      return "The message above is Virtualization.framework's own; check vm.cpus, vm.memory and the disk paths.";
    case VzStatus.state:
      return "Check `havm status`: the VM may not be running.";
    case VzStatus.exception:
      return "This is a bug in havm's native shim; please report it with the log.";
    default:
      return undefined;
  }
}

function exitCodeFor(status: number) {
  switch (status) {
    case VzStatus.invalidArgument:
      return ExitCode.badInput;
    case VzStatus.unsupported:
    case VzStatus.entitlement:
      return ExitCode.unsupported;
    default:
      return ExitCode.failure;
  }
}

/** A failed shim call: the shim's message (framework text verbatim) plus its status. */
export class VzNativeError extends HavmError {
  readonly status: number;
  constructor(fn: string, status: number, message: string) {
    super(message || `${fn} failed (status ${status})`, {
      hint: hintFor(status),
      exitCode: exitCodeFor(status),
      code: `vz.${Object.entries(VzStatus).find(([, v]) => v === status)?.[0] ?? "status"}`,
    });
    this.name = "VzNativeError";
    this.status = status;
  }
}

/** One VM inside the shim. */
export interface VzVmNative {
  start(): void;
  requestStop(): void;
  stop(): void;
  rawState(): number;
  /** Queued events as parsed NDJSON objects, oldest first (empty when none). */
  drainEvents(): Record<string, unknown>[];
  setBalloonTarget(bytes: number): void;
  balloonTarget(): number;
  usbAttach(device: { vendorId: number; productId: number; registryId?: string }): void;
  usbDetach(device: { vendorId: number; productId: number; registryId?: string }): void;
  destroy(): void;
}

/** The whole library, typed. The vz backend takes this as a dependency (tests inject a fake). */
export interface VzNative {
  abiVersion(): number;
  isSupported(): boolean;
  limits(): VzLimits;
  entitlements(): number;
  createMachineIdentifier(): Uint8Array;
  validateMachineIdentifier(bytes: Uint8Array): boolean;
  validate(specJson: string): void;
  create(specJson: string): VzVmNative;
  usbList(): VzAccessory[];
}

type VzSymbols = ReturnType<typeof dlopen<typeof VZ_SYMBOLS>>["symbols"];



/** Split drained NDJSON into objects; a malformed line becomes a warning log event, never a throw. */
export function parseEventLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    try {
      const v: unknown = JSON.parse(line);
      if (v !== null && typeof v === "object" && !Array.isArray(v)) out.push(v as Record<string, unknown>);
      else out.push({ type: "log", level: "warning", message: `unexpected shim event: ${line}` });
    } catch {
      out.push({ type: "log", level: "warning", message: `unparsable shim event: ${line}` });
    }
  }
  return out;
}

class VzVm implements VzVmNative {
  private handle: Pointer | null;
  private readonly events = Buffer.alloc(EVENT_BUF_LEN);
  constructor(
    private readonly lib: VzSymbols,
    handle: Pointer,
  ) {
    this.handle = handle;
  }

  private h(): Pointer {
    if (this.handle === null) throw new VzNativeError("vm", VzStatus.invalidArgument, "the VM handle was already destroyed");
    return this.handle;
  }

  private call(fn: string, f: (err: Buffer, len: number) => number): number {
    return callChecked(f, (status, message) => new VzNativeError(fn, status, message), ERR_LEN);
  }

  start(): void {
    this.call("havm_vm_start", (e, l) => this.lib.havm_vm_start(this.h(), e, l));
  }
  requestStop(): void {
    this.call("havm_vm_request_stop", (e, l) => this.lib.havm_vm_request_stop(this.h(), e, l));
  }
  stop(): void {
    this.call("havm_vm_stop", (e, l) => this.lib.havm_vm_stop(this.h(), e, l));
  }
  rawState(): number {
    const out = new Int32Array(1);
    this.call("havm_vm_state", (e, l) => this.lib.havm_vm_state(this.h(), out, e, l));
    return out[0]!;
  }
  drainEvents(): Record<string, unknown>[] {
    if (this.handle === null) return [];
    const out: Record<string, unknown>[] = [];
    for (;;) {
      const n = this.lib.havm_vm_next_event(this.handle, this.events, EVENT_BUF_LEN);
      if (n < 0) throw new VzNativeError("havm_vm_next_event", n, "");
      if (n === 0) return out;
      out.push(...parseEventLines(this.events.toString("utf8", 0, n)));
      if (n < EVENT_BUF_LEN - HAVM_EVENT_MAX) return out;
    }
  }
  setBalloonTarget(bytes: number): void {
    this.call("havm_vm_set_balloon_target", (e, l) => this.lib.havm_vm_set_balloon_target(this.h(), BigInt(Math.floor(bytes)), e, l));
  }
  balloonTarget(): number {
    const out = new BigUint64Array(1);
    this.call("havm_vm_balloon_target", (e, l) => this.lib.havm_vm_balloon_target(this.h(), out, e, l));
    return Number(out[0]);
  }
  usbAttach(device: { vendorId: number; productId: number; registryId?: string }): void {
    const json = cstr(JSON.stringify(device));
    this.call("havm_vm_usb_attach", (e, l) => this.lib.havm_vm_usb_attach(this.h(), json, e, l));
  }
  usbDetach(device: { vendorId: number; productId: number; registryId?: string }): void {
    const json = cstr(JSON.stringify(device));
    this.call("havm_vm_usb_detach", (e, l) => this.lib.havm_vm_usb_detach(this.h(), json, e, l));
  }
  destroy(): void {
    if (this.handle === null) return;
    const handle = this.handle;
    this.handle = null;
    this.call("havm_vm_destroy", (e, l) => this.lib.havm_vm_destroy(handle, e, l));
  }
}

class VzLibrary implements VzNative {
  constructor(private readonly lib: VzSymbols) {}

  private call(fn: string, f: (err: Buffer, len: number) => number): number {
    return callChecked(f, (status, message) => new VzNativeError(fn, status, message), ERR_LEN);
  }

  abiVersion(): number {
    return this.call("havm_abi_version", (e, l) => this.lib.havm_abi_version(e, l));
  }
  isSupported(): boolean {
    return this.call("havm_is_supported", (e, l) => this.lib.havm_is_supported(e, l)) === 1;
  }
  limits(): VzLimits {
    const out = new BigUint64Array(4);
    this.call("havm_limits", (e, l) => this.lib.havm_limits(out, e, l));
    return { minCpus: Number(out[0]), maxCpus: Number(out[1]), minMemoryBytes: Number(out[2]), maxMemoryBytes: Number(out[3]) };
  }
  entitlements(): number {
    const out = new Uint32Array(1);
    this.call("havm_entitlements", (e, l) => this.lib.havm_entitlements(out, e, l));
    return out[0]!;
  }
  createMachineIdentifier(): Uint8Array {
    const buf = new Uint8Array(4096);
    const len = new Uint32Array(1);
    this.call("havm_machine_identifier_create", (e, l) => this.lib.havm_machine_identifier_create(buf, buf.length, len, e, l));
    return buf.slice(0, len[0]!);
  }
  validateMachineIdentifier(bytes: Uint8Array): boolean {
    if (bytes.length === 0) return false;
    return this.call("havm_machine_identifier_validate", (e, l) => this.lib.havm_machine_identifier_validate(bytes, bytes.length, e, l)) === 1;
  }
  validate(specJson: string): void {
    const json = cstr(specJson);
    this.call("havm_vm_validate", (e, l) => this.lib.havm_vm_validate(json, e, l));
  }
  create(specJson: string): VzVmNative {
    const json = cstr(specJson);
    const out = new BigUint64Array(1);
    this.call("havm_vm_create", (e, l) => this.lib.havm_vm_create(json, out, e, l));
    const handle = Number(out[0]) as Pointer;
    if (!handle) throw new VzNativeError("havm_vm_create", VzStatus.framework, "havm_vm_create returned no handle");
    return new VzVm(this.lib, handle);
  }
  usbList(): VzAccessory[] {
    const buf = Buffer.alloc(256 * 1024);
    const n = this.call("havm_usb_list", (e, l) => this.lib.havm_usb_list(buf, buf.length, e, l));
    const parsed: unknown = JSON.parse(buf.toString("utf8", 0, n));
    return Array.isArray(parsed) ? (parsed as VzAccessory[]) : [];
  }
}

let opened: VzNative | undefined;

/**
 * Open libhavm's VZ part. macOS only. The path defaults to nativeLibraryPath() (the content-addressed
 * copy of the embedded library, or .build/shim/ in a checkout). Refuses a library of another ABI version.
 */
export function openVz(libraryPath?: string, platform: string = process.platform): VzNative {
  if (platform !== "darwin") {
    throw new HavmError("the Virtualization.framework backend exists only on macOS", {
      hint: "On Linux havm uses QEMU.",
      exitCode: ExitCode.unsupported,
      code: "vz.platform",
    });
  }
  if (opened && libraryPath === undefined) return opened;
  const lib = new VzLibrary(dlopen(libraryPath ?? nativeLibraryPath(), VZ_SYMBOLS).symbols);
  const version = lib.abiVersion();
  if (version !== VZ_ABI_VERSION) {
    throw new HavmError(`libhavm speaks VZ ABI ${version}, this havm expects ${VZ_ABI_VERSION}`, {
      hint: "Rebuild the shim (scripts/build-shim-macos.sh) together with havm.",
      exitCode: ExitCode.unsupported,
      code: "vz.abi",
    });
  }
  if (libraryPath === undefined) opened = lib;
  return lib;
}
