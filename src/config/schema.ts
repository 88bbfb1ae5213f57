// The config file's schema: every field optional, defaults as the original tool's. Pure (no I/O).
// Sizes and durations are parsed here, so the rest of havm only sees bytes and milliseconds.
import * as v from "valibot";
import { parseDuration, parseSize, parseTimeOfDay } from "./units.ts";

export const DEFAULTS = {
  cpuCount: 4,
  memorySize: "4 GiB",
  diskSize: "32 GiB",
  versionUrl: "https://version.home-assistant.io",
  releasesApi: "https://api.github.com/repos/home-assistant/operating-system/releases",
  downloadUrl: "https://github.com/home-assistant/operating-system/releases/download",
  metricsPort: 9210,
  metricsHost: "127.0.0.1",
  shutdownTimeoutSeconds: 30,
} as const;

const MIB = 1024 * 1024;

const size = (what: string) =>
  v.pipe(
    v.union([v.string(), v.number()], `expected ${what}: a size such as "4 GiB", "4096 MiB", "4G" or a number of bytes`),
    v.check((x) => parseSize(x) !== undefined, `expected ${what}: a size such as "4 GiB", "4096 MiB", "4G" or a number of bytes`),
    v.transform((x) => parseSize(x)!),
  );

const duration = (what: string) =>
  v.pipe(
    v.union([v.string(), v.number()], `expected ${what}: a duration such as "5m", "30s" or "1h"`),
    v.check((x) => parseDuration(x) !== undefined, `expected ${what}: a duration such as "5m", "30s" or "1h"`),
    v.transform((x) => parseDuration(x)!),
  );

const int = (min: number, max: number, what: string) =>
  v.pipe(
    v.number(`expected ${what}: a whole number from ${min} to ${max}`),
    v.integer(`expected ${what}: a whole number from ${min} to ${max}`),
    v.minValue(min, `expected ${what}: a whole number from ${min} to ${max}`),
    v.maxValue(max, `expected ${what}: a whole number from ${min} to ${max}`),
  );

const str = (what: string) => v.pipe(v.string(`expected ${what} (a string)`), v.nonEmpty(`expected ${what}, not an empty string`));

const httpUrl = (what: string) =>
  v.pipe(
    v.string(`expected ${what}: an http(s) URL`),
    v.check((s) => /^https?:\/\/[^\s/]+/.test(s), `expected ${what}: an http(s) URL`),
    v.transform((s) => s.replace(/\/+$/, "")),
  );

const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  v.picklist(values, `expected one of: ${values.join(", ")}`);

const bool = (what: string) => v.boolean(`expected ${what}: true or false`);

/** A unicast MAC address, colon-separated hex, normalised to lowercase. */
export const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const mac = v.pipe(
  v.string("expected a MAC address such as 02:ab:cd:ef:01:23"),
  v.transform((s) => s.trim().toLowerCase().replaceAll("-", ":")),
  v.check((s) => MAC_RE.test(s), "expected a MAC address such as 02:ab:cd:ef:01:23"),
  v.check((s) => (parseInt(s.slice(0, 2), 16) & 1) === 0, "expected a unicast MAC address (the first octet must be even)"),
);

const hostname = v.pipe(
  v.string("expected a hostname"),
  v.check((s) => /^(?!-)[a-zA-Z0-9-]{1,63}(?<!-)$/.test(s), "expected a hostname: letters, digits and '-', at most 63 characters"),
);

const section = <T extends v.ObjectEntries>(entries: T) => {
  const schema = v.strictObject(entries, "expected a mapping (key: value lines)");
  // An absent section is an empty one: its fields take their defaults.
  return v.optional(schema, {} as v.InferInput<typeof schema>);
};

export const ConfigSchema = v.strictObject(
  {
    vm: section({
      cpu_count: v.optional(int(1, 256, "a CPU count"), DEFAULTS.cpuCount),
      memory_size: v.optional(
        v.pipe(
          size("a memory size"),
          v.check((b) => b % MIB === 0, "expected a memory size that is a whole number of MiB"),
          v.check((b) => b >= 512 * MIB, "expected a memory size of at least 512 MiB"),
        ),
        DEFAULTS.memorySize,
      ),
      disk_size: v.optional(
        v.pipe(
          size("a disk size"),
          v.check((b) => b % MIB === 0, "expected a disk size that is a whole number of MiB"),
          v.check((b) => b >= 64 * MIB, "expected a disk size of at least 64 MiB"),
        ),
        DEFAULTS.diskSize,
      ),
    }),
    network: section({
      type: v.optional(oneOf(["nat", "bridge"] as const), "nat"),
      interface: v.optional(str("a host network interface name such as en0")),
      mac: v.optional(mac),
      hostname: v.optional(hostname),
    }),
    haos: section({
      release_channel: v.optional(oneOf(["stable", "pre-release"] as const), "stable"),
      version: v.optional(
        v.pipe(v.string("expected a HAOS version such as 17.1"), v.regex(/^[0-9][0-9A-Za-z.+-]*$/, "expected a HAOS version such as 17.1 or 17.1.rc1")),
      ),
      image: v.optional(str("a path or URL of an .img or .img.xz file")),
      verify: v.optional(oneOf(["best-effort", "strict"] as const), "best-effort"),
      version_url: v.optional(httpUrl("the version service URL"), DEFAULTS.versionUrl),
      releases_api: v.optional(httpUrl("the GitHub releases API URL"), DEFAULTS.releasesApi),
      download_url: v.optional(httpUrl("the release download base URL"), DEFAULTS.downloadUrl),
    }),
    ssh: section({
      authorized_keys: v.optional(str("a path to a public key file")),
    }),
    usb: section({
      enabled: v.optional(bool("usb.enabled"), true),
    }),
    ha: section({
      url: v.optional(httpUrl("Home Assistant's URL")),
      api_token: v.optional(str("a long-lived access token")),
    }),
    logging: section({
      format: v.optional(oneOf(["text", "json"] as const), "text"),
      level: v.optional(oneOf(["debug", "info", "warning", "error"] as const), "info"),
    }),
    metrics: section({
      enabled: v.optional(bool("metrics.enabled"), false),
      type: v.optional(oneOf(["prometheus"] as const), "prometheus"),
      prometheus: section({
        port: v.optional(int(1, 65535, "a TCP port"), DEFAULTS.metricsPort),
        host: v.optional(str("an address to listen on such as 127.0.0.1"), DEFAULTS.metricsHost),
      }),
    }),
    shutdown: section({
      timeout_seconds: v.optional(int(1, 3600, "a number of seconds"), DEFAULTS.shutdownTimeoutSeconds),
    }),
    watchdog: section({
      enabled: v.optional(bool("watchdog.enabled"), false),
      unhealthy_after: v.optional(duration("how long HA may fail probes"), "5m"),
      action: v.optional(oneOf(["restart", "none"] as const), "restart"),
      max_restarts_per_hour: v.optional(int(1, 60, "a number of restarts"), 3),
      probe_interval: v.optional(duration("the probe interval"), "15s"),
    }),
    schedule: section({
      reboot: v.optional(
        v.pipe(v.string('expected a time of day such as "04:10"'), v.check((s) => parseTimeOfDay(s) !== undefined, 'expected a time of day such as "04:10" (24-hour HH:MM)')),
      ),
    }),
    qemu: section({
      accel: v.optional(oneOf(["auto", "kvm", "tcg"] as const), "auto"),
      binary: v.optional(str("a path to qemu-system-*")),
      firmware_code: v.optional(str("a path to the UEFI firmware code image")),
      firmware_vars: v.optional(str("a path to the UEFI variable store template")),
    }),
  },
  "expected a mapping of sections (vm, network, haos, ...)",
);

export type Config = v.InferOutput<typeof ConfigSchema>;
export type ConfigInput = v.InferInput<typeof ConfigSchema>;

/** The config havm uses when there is no file: every default. */
export function defaultConfig(): Config {
  return v.parse(ConfigSchema, {});
}
