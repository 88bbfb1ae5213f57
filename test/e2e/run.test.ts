// End to end: the real havm CLI, from nothing to shutdown, against the local release server and the mini-HAOS
// guest under QEMU TCG. Scenarios run one after another (two VMs at once on 2 cores are slow) and assert on the
// guest's own record (boot count, how it was shut down), not only on havm's logs.
// Opt-in: HAVM_E2E=1. HAVM_BIN=.build/release/havm runs the compiled binary; HAVM_E2E_KEEP=1 keeps the temp HOMEs.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { readGuestRecord, setGuestKnobs } from "../guest/guest.ts";
import {
  alive,
  e2eUnavailableReason,
  guestState,
  havm,
  havmDone,
  killLeftovers,
  makeHome,
  qemuPid,
  startWorld,
  until,
  waitHaUp,
  within,
  type E2eHome,
  type E2eWorld,
  type HavmProcess,
} from "./harness.ts";

const MiB = 1024 * 1024;
const skip = e2eUnavailableReason();
let world: E2eWorld;

describe.skipIf(!!skip)(`havm run end to end${skip ? ` (skipped: ${skip})` : ""}`, () => {
  beforeAll(async () => {
    world = await startWorld();
  }, 600_000);
  afterAll(async () => {
    await world?.stop();
  });
  // A failed scenario must not leave its VM running into the next one (6a hands its run to 6b on purpose).
  afterEach(() => killLeftovers(first ? [first] : []));

  // Scenarios 1-3, 6 and 8 share one HOME: first run, second run, no token, ...
  let home: E2eHome;
  let first: HavmProcess | undefined; // 6a's run, killed with -9 by 6b
  let firstMac = "";

  test("1. first run from nothing: download, verify, disks, boot, metrics running, HA answers; SIGTERM shuts down through the API; exit 0", async () => {
    home = await makeHome(world, "main", { diskSize: "256 MiB" });
    const p = havm(home, ["run"]);
    const { haPort } = await waitHaUp(home, p);
    const token = world.guest.token;
    const api = await fetch(`http://127.0.0.1:${haPort}/api/`, { headers: { Authorization: `Bearer ${token}` } });
    expect(api.status).toBe(200);
    const s = await guestState(haPort, token);
    expect(s.boot_count).toBe(1);
    expect(s.hostname).toBe("homeassistant");
    expect(s.config_imported).toBe("imported"); // the CONFIG disk havm made carried ssh.authorized_keys
    expect(s.disk_size).toBe(256 * MiB); // vm.disk_size took effect: the guest grew into it
    expect(s.expanded).toBe("yes");
    firstMac = String(s.mac);
    expect(firstMac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    // downloaded exactly once, through the redirect, and verified against the API's digest
    expect(world.server.imageRequests()).toHaveLength(1);
    expect(world.server.requests.some((r) => r.kind === "api" && r.path.endsWith(`/tags/17.1`))).toBe(true);

    p.signal("SIGTERM");
    expect(await within(p.exited, 90_000, "havm exit after SIGTERM")).toBe(0);
    const rec = await readGuestRecord(home.paths.vm.disk);
    expect(rec.bootCount).toBe(1);
    expect(rec.runState).toBe("clean:api");
    expect(rec.diskSize).toBe(256 * MiB);
    expect(qemuPid(home) === undefined || !alive(qemuPid(home)!)).toBe(true);
  }, 300_000);

  test("2. second run: no download, same MAC and NVRAM, boot count 2, previous shutdown clean; Ctrl+C in a terminal is graceful", async () => {
    const before = world.server.imageRequests().length;
    const p = havm(home, ["run"]);
    const { haPort } = await waitHaUp(home, p);
    const s = await guestState(haPort, world.guest.token);
    expect(s.boot_count).toBe(2);
    expect(s.previous_shutdown).toBe("clean:api");
    expect(s.mac).toBe(firstMac);
    expect(s.nvram_previous_boots).toBe(1); // the EFI variable from boot 1 survived in havm's NVRAM file
    expect(world.server.imageRequests()).toHaveLength(before);

    // Ctrl+C reaches the whole foreground process group: QEMU must not die from it before HA shut down.
    p.signalGroup("SIGINT");
    expect(await within(p.exited, 90_000, "havm exit after Ctrl+C")).toBe(0);
    const rec = await readGuestRecord(home.paths.vm.disk);
    expect(rec.bootCount).toBe(2);
    expect(rec.runState).toBe("clean:api");
  }, 300_000);

  test("3. no token configured: the shutdown goes through SSH on 22222 with the configured key", async () => {
    home.writeConfig({ token: null, diskSize: "256 MiB" });
    const bootsBefore = (await readGuestRecord(home.paths.vm.disk)).bootCount;
    const p = havm(home, ["run"]);
    await waitHaUp(home, p);
    p.signal("SIGTERM");
    expect(await within(p.exited, 90_000, "havm exit after SIGTERM")).toBe(0);
    const rec = await readGuestRecord(home.paths.vm.disk);
    expect(rec.bootCount).toBe(bootsBefore + 1);
    expect(rec.runState).toBe("clean:ssh");
    expect(rec.history.at(-1)).toMatch(/^shutdown ssh command=(ha host shutdown|shutdown -h now)$/);
  }, 300_000);

  // Scenarios 4-5: a guest that ignores everything (power button ignored, no HTTP, no SSH keys).
  let deaf: E2eHome;

  test("4. a guest that ignores everything is forced off within shutdown.timeout_seconds plus a margin", async () => {
    deaf = await makeHome(world, "deaf", { sshKeys: false, shutdownTimeoutSeconds: 8 });
    const prep = await havmDone(deaf, ["prepare"]);
    expect(prep.code).toBe(0);
    await setGuestKnobs(deaf.paths.vm.disk, { noHttp: true });
    const p = havm(deaf, ["run"]);
    await until("VM running and booted", async () => {
      const rec = await readGuestRecord(deaf.paths.vm.disk).catch(() => undefined);
      return rec && rec.bootCount === 1 ? true : undefined;
    }, 180_000, p);
    await Bun.sleep(2000); // the guest is past its boot-time writes
    const qemu = qemuPid(deaf);
    const t0 = Date.now();
    p.signal("SIGTERM");
    const code = await within(p.exited, 40_000, "havm exit after SIGTERM");
    const seconds = (Date.now() - t0) / 1000;
    expect(seconds).toBeLessThan(8 + 10);
    expect(code).not.toBe(0); // the guest did not shut down cleanly: havm says so
    if (qemu) expect(alive(qemu)).toBe(false);
    const rec = await readGuestRecord(deaf.paths.vm.disk);
    expect(rec.bootCount).toBe(1);
    expect(rec.runState).toBe("running"); // forced off: no clean record
  }, 300_000);

  test("5. double Ctrl+C stops the VM at once", async () => {
    const p = havm(deaf, ["run"]);
    await until("VM booted", async () => {
      const rec = await readGuestRecord(deaf.paths.vm.disk).catch(() => undefined);
      return rec && rec.bootCount === 2 ? true : undefined;
    }, 180_000, p);
    await Bun.sleep(2000);
    const qemu = qemuPid(deaf);
    const t0 = Date.now();
    p.signalGroup("SIGINT");
    await Bun.sleep(300);
    p.signalGroup("SIGINT");
    await within(p.exited, 15_000, "havm exit after double Ctrl+C");
    expect(Date.now() - t0).toBeLessThan(8_000); // well under shutdown.timeout_seconds (8 s) + grace
    if (qemu) expect(alive(qemu)).toBe(false);
    const rec = await readGuestRecord(deaf.paths.vm.disk);
    expect(rec.bootCount).toBe(2);
    expect(rec.runState).toBe("running");
  }, 300_000);


  test("6a. a second `havm run` is refused while one runs (busy, exit 3)", async () => {
    home.writeConfig({ diskSize: "256 MiB" }); // the token again (3 removed it)
    first = havm(home, ["run"]);
    await waitHaUp(home, first);
    // same config, same metrics port: the answer must be "already running" (busy), not a port conflict
    const b = await havmDone(home, ["run"], 60_000);
    expect(b.output).toContain("already running");
    expect(b.code).toBe(3); // ExitCode.busy
  }, 300_000);

  test("6b. after kill -9 of havm, the next run stops the orphaned QEMU and boots", async () => {
    home.writeConfig({ diskSize: "256 MiB" });
    if (!first || first.exitCode() !== undefined) {
      first = havm(home, ["run"]);
      await waitHaUp(home, first);
    }
    const bootsBefore = (await readGuestRecord(home.paths.vm.disk)).bootCount;
    const orphan = qemuPid(home);
    expect(orphan).toBeDefined();
    first.signal("SIGKILL");
    await first.exited;
    first = undefined;
    // QEMU dies with havm (parent-death signal) or is stopped by the next run (orphan reaping): either way
    // it must not keep running against the disk once the next run boots.
    const c = havm(home, ["run"]);
    const { haPort } = await waitHaUp(home, c);
    expect(alive(orphan!)).toBe(false);
    const s = await guestState(haPort, world.guest.token);
    expect(s.boot_count).toBe(bootsBefore + 1);
    expect(s.previous_shutdown).toBe("running"); // the guest saw the hard stop of the killed run
    c.signal("SIGTERM");
    expect(await within(c.exited, 90_000, "havm exit after SIGTERM")).toBe(0);
    const rec = await readGuestRecord(home.paths.vm.disk);
    expect(rec.bootCount).toBe(bootsBefore + 1);
    expect(rec.runState).toBe("clean:api");
  }, 300_000);

  test("7. `havm prepare` then `havm run` boots without downloading; `havm cleanup` frees the cache and the next run boots from the persistent disk", async () => {
    const h = await makeHome(world, "prepared");
    const before = world.server.imageRequests().length;
    expect((await havmDone(h, ["prepare"])).code).toBe(0);
    expect(world.server.imageRequests()).toHaveLength(before + 1);
    expect(existsSync(h.paths.vm.disk)).toBe(true);

    const r1 = havm(h, ["run"]);
    await waitHaUp(h, r1);
    expect(world.server.imageRequests()).toHaveLength(before + 1);
    r1.signal("SIGTERM");
    expect(await within(r1.exited, 90_000, "havm exit")).toBe(0);

    const clean = await havmDone(h, ["cleanup"]);
    expect(clean.code).toBe(0);
    const left = existsSync(h.paths.cacheDir) ? readdirSync(h.paths.cacheDir).filter((f) => /\.img(\.xz)?$/.test(f)) : [];
    expect(left).toEqual([]);

    const r2 = havm(h, ["run"]);
    const { haPort } = await waitHaUp(h, r2);
    const s = await guestState(haPort, world.guest.token);
    expect(s.boot_count).toBe(2);
    expect(s.previous_shutdown).toBe("clean:api");
    r2.signal("SIGTERM");
    expect(await within(r2.exited, 90_000, "havm exit")).toBe(0);
    // a run may check the release (version/API) but must not download the image again
    expect(world.server.imageRequests()).toHaveLength(before + 1);
    const rec = await readGuestRecord(h.paths.vm.disk);
    expect(rec.bootCount).toBe(2);
    expect(rec.runState).toBe("clean:api");
  }, 400_000);

  test("8. with the release server unreachable, a VM that already has its disk still boots", async () => {
    // e.g. a Mac booting with havm as a login item before the network is up
    world.server.options.failVersion = true;
    world.server.options.failApi = true;
    try {
      const bootsBefore = (await readGuestRecord(home.paths.vm.disk)).bootCount;
      const p = havm(home, ["run"]);
      await waitHaUp(home, p);
      p.signal("SIGTERM");
      expect(await within(p.exited, 90_000, "havm exit after SIGTERM")).toBe(0);
      const rec = await readGuestRecord(home.paths.vm.disk);
      expect(rec.bootCount).toBe(bootsBefore + 1);
      expect(rec.clean).toBe(true);
    } finally {
      world.server.options.failVersion = false;
      world.server.options.failApi = false;
    }
  }, 300_000);
});
