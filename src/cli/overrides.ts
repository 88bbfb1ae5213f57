// Flags of `havm run` / `havm prepare` that override the config file (validated like the file).
import type { ArgsDef } from "citty";
import { applyConfigOverrides } from "../config/load.ts";
import type { Context } from "./context.ts";

export const overrideArgs = {
  cpus: { type: "string", description: "CPU count (overrides vm.cpu_count)", valueHint: "N" },
  memory: { type: "string", description: 'Memory, e.g. "4 GiB" (overrides vm.memory_size)', valueHint: "SIZE" },
  "disk-size": { type: "string", description: 'Disk size, grow only, e.g. "64 GiB" (overrides vm.disk_size)', valueHint: "SIZE" },
  "haos-version": { type: "string", description: "Use this HAOS release, e.g. 17.1 (overrides haos.version)", valueHint: "VERSION" },
  image: { type: "string", description: "Use a local or remote .img/.img.xz instead of a release (overrides haos.image)", valueHint: "PATH|URL" },
  "metrics-port": { type: "string", description: "Serve Prometheus metrics on this port (enables metrics)", valueHint: "PORT" },
} as const satisfies ArgsDef;

type OverrideFlags = { [K in keyof typeof overrideArgs]?: string };

const asNumber = (s: string) => (/^\d+$/.test(s) ? Number(s) : s);

export function applyOverrides(ctx: Context, flags: OverrideFlags): Context {
  const o: Record<string, unknown> = {};
  if (flags.cpus !== undefined) o["vm.cpu_count"] = asNumber(flags.cpus);
  if (flags.memory !== undefined) o["vm.memory_size"] = asNumber(flags.memory);
  if (flags["disk-size"] !== undefined) o["vm.disk_size"] = asNumber(flags["disk-size"]);
  if (flags["haos-version"] !== undefined) o["haos.version"] = flags["haos-version"];
  if (flags.image !== undefined) o["haos.image"] = flags.image;
  if (flags["metrics-port"] !== undefined) {
    o["metrics.enabled"] = true;
    o["metrics.prometheus.port"] = asNumber(flags["metrics-port"]);
  }
  if (Object.keys(o).length === 0) return ctx;
  const loaded = applyConfigOverrides(ctx.loaded, o);
  return { ...ctx, loaded, config: loaded.config };
}
