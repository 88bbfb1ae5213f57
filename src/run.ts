// The whole run path, top-down: config -> image -> disks -> VM spec -> backend -> supervision.
// `havm prepare` runs the same path and stops before booting.
import type { Context } from "./cli/context.ts";
import { acquireImage } from "./image/acquire.ts";
import { preparePersistentDisk } from "./disk/persistent.ts";
import { ensureConfigDisk } from "./disk/config-disk.ts";
import { ensureIdentity } from "./vm/identity.ts";
import { acquireVmLock, type VmLock } from "./supervise/lock.ts";
import { reapOrphanedVm } from "./supervise/orphan.ts";
import { resolveResources, type Resources } from "./vm/resources.ts";
import { buildVmSpec, hostGuestArch } from "./vm/build-spec.ts";
import { selectBackend } from "./vm/select.ts";
import type { Backend } from "./vm/backend.ts";
import type { VmSpec } from "./vm/spec.ts";
import { supervise, type SupervisorHooks } from "./supervise/supervisor.ts";
import { HavmMetrics } from "./metrics/havm-metrics.ts";
import { startMetricsServer, type MetricsServer } from "./metrics/server.ts";
import { HAVM_VERSION } from "./version.ts";
import { HavmError, ExitCode } from "./util/errors.ts";
import { exists } from "./util/fs.ts";
import { log } from "./util/log.ts";
import { formatSize } from "./config/units.ts";

export interface RunDeps {
  fetch?: typeof fetch;
  backend?: Backend;
  hooks?: SupervisorHooks;
}

interface CheckedHost {
  backend: Backend;
  resources: Resources;
}

export interface PreparedVm {
  spec: VmSpec;
  image: { version: string; downloadedBytes: number; seconds: number; source: string };
}

/** Everything that can be refused without writing a byte: backend, its usability, CPU and memory. */
async function checkHost(ctx: Context, deps: RunDeps): Promise<CheckedHost> {
  const { config, paths, loaded } = ctx;
  const backend = deps.backend ?? (await selectBackend(config, paths));
  // A bad value is exit 2 even where the backend is unusable.
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
  return { backend, resources };
}

/** The VM lock, after stopping a VM an earlier (killed) havm left running. Refuses while havm runs (exit 3). */
function lockVm(ctx: Context): VmLock {
  reapOrphanedVm(ctx.paths.vm.lock);
  return acquireVmLock(ctx.paths.vm.lock);
}

/** Image, persistent disk, identity, CONFIG stick, spec. Called with the VM lock held. */
async function prepareDisks(ctx: Context, host: CheckedHost, deps: RunDeps): Promise<PreparedVm> {
  const { config, paths } = ctx;
  const { backend, resources } = host;
  const started = performance.now();
  // A VM that has its disk needs no image: it boots even with the cache cleaned and no network.
  const image = exists(paths.vm.disk)
    ? undefined
    : await acquireImage({ config, paths, ...(deps.fetch ? { fetch: deps.fetch } : {}) });
  if (image) log.info("image ready", { version: image.version, board: image.board, verified: image.verified, source: image.source });

  const disk = await preparePersistentDisk({ imagePath: image?.imagePath, diskPath: paths.vm.disk, diskSizeBytes: config.vm.disk_size });
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
  const seconds = (performance.now() - started) / 1000;
  return {
    spec,
    image: image
      ? { version: image.version, downloadedBytes: image.downloadedBytes, seconds, source: image.source }
      : { version: "installed", downloadedBytes: 0, seconds, source: "disk" },
  };
}

/** `havm prepare`: everything `run` does before booting, then exit. */
export async function prepare(ctx: Context, deps: RunDeps = {}): Promise<number> {
  const host = await checkHost(ctx, deps);
  const lock = lockVm(ctx);
  try {
    await prepareDisks(ctx, host, deps);
  } finally {
    lock.release();
  }
  log.info("prepared: `havm run` will boot without downloading", { disk: ctx.paths.vm.disk });
  return ExitCode.ok;
}

/** `havm run`: prepare, boot, supervise until the VM stops for good. Returns the exit code. */
export async function run(ctx: Context, deps: RunDeps = {}): Promise<number> {
  const { config } = ctx;
  const host = await checkHost(ctx, deps);
  const lock = lockVm(ctx);
  let server: MetricsServer | undefined;
  try {
    const metrics = new HavmMetrics({ version: HAVM_VERSION, backend: host.backend.name, ...(deps.hooks?.now ? { now: deps.hooks.now } : {}) });
    // Before preparation: a port in use is refused at once, and download figures are visible.
    if (config.metrics.enabled) {
      server = startMetricsServer({ host: config.metrics.prometheus.host, port: config.metrics.prometheus.port, render: () => metrics.render() });
      log.info("metrics at " + server.url + "/metrics");
    }
    const prepared = await prepareDisks(ctx, host, deps);
    metrics.downloaded(prepared.image.downloadedBytes);
    metrics.imagePrepared(prepared.image.source === "download" ? "ok" : "cached", prepared.image.seconds);
    return await supervise({
      ctx,
      backend: host.backend,
      spec: prepared.spec,
      lock,
      metrics,
      ...(server ? { metricsUrl: server.url } : {}),
      ...(deps.hooks ? { hooks: deps.hooks } : {}),
    });
  } finally {
    await server?.stop();
    lock.release();
  }
}
