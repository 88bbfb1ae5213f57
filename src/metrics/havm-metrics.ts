// The havm metric families, in one object the supervisor (and the image/USB code) updates.
// Values that depend on time (uptime, unhealthy seconds) are computed at scrape time from an injected clock.
import { VM_STATES, type BackendName, type MemoryStats, type VmState } from "../vm/backend.ts";
import { Registry } from "./registry.ts";
import { renderText } from "./render.ts";

export interface HavmMetricsOptions {
  version: string;
  backend: BackendName;
  /** Milliseconds since the epoch; injected so tests control time. */
  now?: () => number;
}

/** Probe latency buckets, seconds: from a fast LAN answer to HA's slow GC pauses. */
const PROBE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

export class HavmMetrics {
  readonly registry = new Registry();
  private readonly now: () => number;
  private vmStartedAt: number | undefined;
  private haUnhealthySince: number | undefined;
  private unhealthySeconds: (() => number) | undefined;

  readonly buildInfo = this.registry.gauge("havm_build_info", "havm build: version and VM backend (always 1).", ["version", "backend"]);
  readonly vmState = this.registry.gauge("havm_vm_state", "VM state: 1 for the current state, 0 for the others.", ["state"]);
  readonly vmUptime = this.registry.gauge("havm_vm_uptime_seconds", "Seconds since the VM was last started (0 while it is not running).");
  readonly vmStarts = this.registry.counter("havm_vm_starts_total", "VM starts by this supervisor.");
  readonly vmRestarts = this.registry.counter("havm_vm_restarts_total", "VM restarts by this supervisor, by reason.", ["reason"]);
  readonly haUp = this.registry.gauge("havm_ha_up", "1 when Home Assistant's HTTP port answered the last probe (no credentials used).");
  readonly haProbeDuration = this.registry.histogram(
    "havm_ha_probe_duration_seconds",
    "Duration of Home Assistant liveness probes.",
    PROBE_BUCKETS,
  );
  readonly haUnhealthy = this.registry.gauge(
    "havm_ha_unhealthy_seconds",
    "Seconds Home Assistant has failed its liveness probes in a row (0 when healthy).",
  );
  readonly shutdownSteps = this.registry.counter(
    "havm_shutdown_step_total",
    "Graceful shutdown chain steps attempted, by step and result.",
    ["step", "result"],
  );
  readonly usbAccessories = this.registry.gauge("havm_usb_accessories", "USB accessories attached to the VM.");
  readonly downloadBytes = this.registry.counter("havm_download_bytes_total", "Bytes downloaded for HAOS images.");
  readonly imagePrepareSeconds = this.registry.gauge(
    "havm_image_prepare_seconds",
    "Duration of the last image preparation (download, verify, decompress, clone).",
  );
  readonly imagePrepares = this.registry.counter("havm_image_prepares_total", "Image preparations, by result.", ["result"]);
  readonly memoryLimit = this.registry.gauge("havm_vm_memory_limit_bytes", "Configured VM memory (vm.memory_size): the ceiling.");
  readonly memoryTarget = this.registry.gauge("havm_vm_memory_target_bytes", "Memory the VM may use now (balloon target).");
  readonly guestMemoryTotal = this.registry.gauge("havm_guest_memory_total_bytes", "Guest-reported total memory.");
  readonly guestMemoryFree = this.registry.gauge("havm_guest_memory_free_bytes", "Guest-reported free memory.");
  readonly guestMemoryAvailable = this.registry.gauge("havm_guest_memory_available_bytes", "Guest-reported available memory.");

  constructor(opts: HavmMetricsOptions) {
    this.now = opts.now ?? Date.now;
    this.buildInfo.set(1, { version: opts.version, backend: opts.backend });
    this.setVmState("stopped");
    this.vmUptime.set(0);
    this.haUp.set(0);
    this.haUnhealthy.set(0);
    this.usbAccessories.set(0);
    // Counters start at 0 so rate() works from the first scrape.
    this.vmStarts.inc(0);
    this.downloadBytes.inc(0);
    this.registry.onCollect(() => {
      const t = this.now();
      this.vmUptime.set(this.vmStartedAt === undefined ? 0 : Math.max(0, (t - this.vmStartedAt) / 1000));
      this.haUnhealthy.set(
        this.unhealthySeconds ? this.unhealthySeconds() : this.haUnhealthySince === undefined ? 0 : Math.max(0, (t - this.haUnhealthySince) / 1000),
      );
    });
  }

  /** One series per known state, 1 for the current: `havm_vm_state{state="running"} 1`. */
  setVmState(state: VmState): void {
    for (const s of VM_STATES) this.vmState.set(s === state ? 1 : 0, { state: s });
    if (state === "running" && this.vmStartedAt === undefined) this.vmStartedAt = this.now();
    if (state === "stopped" || state === "error") this.vmStartedAt = undefined;
  }

  vmStarted(): void {
    this.vmStarts.inc();
  }

  vmRestarted(reason: string): void {
    this.vmRestarts.inc(1, { reason });
  }

  /** Record a liveness probe: up or not, and how long it took. */
  haProbed(up: boolean, durationSeconds: number): void {
    this.haUp.set(up ? 1 : 0);
    this.haProbeDuration.observe(durationSeconds);
    if (up) this.haUnhealthySince = undefined;
    else this.haUnhealthySince ??= this.now();
  }

  /** Take havm_ha_unhealthy_seconds from the health monitor, which counts only after HA was up once. */
  unhealthySecondsFrom(source: () => number): void {
    this.unhealthySeconds = source;
  }

  shutdownStep(step: string, result: string): void {
    this.shutdownSteps.inc(1, { step, result });
  }

  setUsbAccessories(count: number): void {
    this.usbAccessories.set(count);
  }

  downloaded(bytes: number): void {
    this.downloadBytes.inc(bytes);
  }

  imagePrepared(result: "ok" | "failed" | "cached", seconds: number): void {
    this.imagePrepares.inc(1, { result });
    if (result !== "failed") this.imagePrepareSeconds.set(seconds);
  }

  /** Unknown figures are absent from the scrape, not 0. */
  setMemory(limitBytes: number | undefined, stats: MemoryStats): void {
    const put = (g: typeof this.memoryLimit, v: number | undefined) => (v === undefined ? g.clear() : g.set(v));
    put(this.memoryLimit, limitBytes);
    put(this.memoryTarget, stats.targetBytes);
    put(this.guestMemoryTotal, stats.guestTotalBytes);
    put(this.guestMemoryFree, stats.guestFreeBytes);
    put(this.guestMemoryAvailable, stats.guestAvailableBytes);
  }

  /** The scrape body. */
  render(): string {
    return renderText(this.registry.collect());
  }
}
