// The whole run path, top-down: config -> image -> disks -> VM spec -> backend -> supervision.
// `havm prepare` runs the same path and stops before booting.
import type { Context } from "./cli/context.ts";
import { acquireImage } from "./image/acquire.ts";
import { preparePersistentDisk } from "./disk/persistent.ts";
import { ensureConfigDisk } from "./disk/config-disk.ts";
import { ensureIdentity } from "./vm/identity.ts";
import { acquireVmLock, type VmLock } from "./supervise/lock.ts";
import { reapOrphanedVm } from "./supervise/orphan.ts";
import { resolveResources } from "./vm/resources.ts";
import { buildVmSpec, hostGuestArch } from "./vm/build-spec.ts";
import { selectBackend } from "./vm/select.ts";
import type { Backend } from "./vm/backend.ts";
import type { VmSpec } from "./vm/spec.ts";
import { supervise, type SupervisorHooks } from "./supervise/supervisor.ts";
import { HavmMetrics } from "./metrics/havm-metrics.ts";
import { startMetricsServer, type MetricsServer } from "./metrics/server.ts";
import { HAVM_VERSION } from "./version.ts";
import { HavmError, ExitCode } from "./util/errors.ts";
import { log } from "./util/log.ts";
import { formatSize } from "./config/units.ts";

export interface RunDeps {
  fetch?: typeof fetch;
  backend?: Backend;
  hooks?: SupervisorHooks;
}

export interface PreparedVm {
  backend: Backend;
  spec: VmSpec;
  lock: VmLock;
  image: { version: string; downloadedBytes: number; seconds: number; source: string };
}

/** Everything before boot. Holds the VM lock from the first write on; the caller releases it. */
export async function prepareVm(ctx: Context, deps: RunDeps = {}): Promise<PreparedVm> {
  const { config, paths, loaded } = ctx;
  const backend = deps.backend ?? (await selectBackend(config, paths));
  // Refuse values that cannot fit before anything is written (a bad value is exit 2 even where the backend is unusable).
  const resources = resolveResources(config, loaded.userSet, backend.limits(), loaded.file);
  const probe = await backend.probe();
  if (!probe.usable) {
    throw new HavmError(`the ${backend.name} backend cannot run here: ${probe.details.join("; ")}`, {
      hint: probe.hint ?? "Run `havm version` for details.",
      exitCode: ExitCode.unsupported,
      code: "backend.unusable",
    });
  }
  for (const note of resources.notes) log.info(note);

  reapOrphanedVm(paths.vm.lock);
  const lock = acquireVmLock(paths.vm.lock);
  try {
    const imageStarted = performance.now();
    const image = await acquireImage({ config, paths, ...(deps.fetch ? { fetch: deps.fetch } : {}) });
    log.info("image ready", { version: image.version, board: image.board, verified: image.verified, source: image.source });

    const disk = await preparePersistentDisk({ imagePath: image.imagePath, diskPath: paths.vm.disk, diskSizeBytes: config.vm.disk_size });
    log.info(disk.created ? "persistent disk created" : "persistent disk kept", {
      path: paths.vm.disk,
      size: formatSize(disk.sizeBytes),
      ...(disk.grownFrom !== undefined ? { grownFrom: formatSize(disk.grownFrom) } : {}),
    });

    const vzIds = backend.name === "vz" ? await import("./vm/vz/vz.ts") : undefined;
    const identity = await ensureIdentity({
      vm: paths.vm,
      backend: backend.name,
      ...(config.network.mac ? { configMac: config.network.mac } : {}),
      ...(vzIds ? { createVzIdentifier: vzIds.createVzMachineIdentifier, validateVzIdentifier: vzIds.validateVzMachineIdentifier } : {}),
    });
    const configDisk = await ensureConfigDisk({
      ...(config.ssh.authorized_keys ? { authorizedKeysPath: config.ssh.authorized_keys } : {}),
      home: paths.home,
      configDiskPath: paths.vm.configDisk,
    });

    const forwards = backend.name === "qemu" ? await (await import("./vm/qemu/ports.ts")).pickForwards() : [];
    const spec = buildVmSpec({
      config,
      vm: paths.vm,
      arch: hostGuestArch(),
      resources,
      identity: {
        uuid: identity.uuid,
        mac: identity.mac,
        nvramCreate: identity.nvram.create,
        ...(backend.name === "vz" ? { vzDataBase64: Buffer.from(identity.machineIdentifierBytes).toString("base64") } : {}),
      },
      ...(configDisk.path ? { configDiskPath: configDisk.path } : {}),
      forwards,
    });
    const seconds = (performance.now() - imageStarted) / 1000;
    return { backend, spec, lock, image: { version: image.version, downloadedBytes: image.downloadedBytes, seconds, source: image.source } };
  } catch (e) {
    lock.release();
    throw e;
  }
}

/** `havm prepare`: everything `run` does before booting, then exit. */
export async function prepare(ctx: Context, deps: RunDeps = {}): Promise<number> {
  const prepared = await prepareVm(ctx, deps);
  prepared.lock.release();
  log.info("prepared: `havm run` will boot without downloading", { disk: ctx.paths.vm.disk });
  return ExitCode.ok;
}

/** `havm run`: prepare, boot, supervise until the VM stops for good. Returns the exit code. */
export async function run(ctx: Context, deps: RunDeps = {}): Promise<number> {
  const { config } = ctx;
  const backend = deps.backend ?? (await selectBackend(config, ctx.paths));
  const metrics = new HavmMetrics({ version: HAVM_VERSION, backend: backend.name, ...(deps.hooks?.now ? { now: deps.hooks.now } : {}) });
  // Started before preparation: a port in use is refused at once, and download figures are visible.
  let server: MetricsServer | undefined;
  if (config.metrics.enabled) {
    server = startMetricsServer({ host: config.metrics.prometheus.host, port: config.metrics.prometheus.port, render: () => metrics.render() });
    log.info("metrics at " + server.url + "/metrics");
  }
  try {
    const prepared = await prepareVm(ctx, { ...deps, backend });
    metrics.downloaded(prepared.image.downloadedBytes);
    metrics.imagePrepared(prepared.image.source === "cache" ? "cached" : "ok", prepared.image.seconds);
    try {
      return await supervise({
        ctx,
        ...prepared,
        metrics,
        ...(server ? { metricsUrl: server.url } : {}),
        ...(deps.hooks ? { hooks: deps.hooks } : {}),
      });
    } finally {
      prepared.lock.release();
    }
  } finally {
    await server?.stop();
  }
}
