// The mini-HAOS guest behaves like HAOS where havm cares. Two boots under QEMU TCG on one disk and one
// NVRAM file (each ~15-20 s), plus image-level checks that need no boot.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bootGuest, bootUnavailableReason, httpGet, waitExit, waitFor, type BootedGuest } from "./boot.ts";
import {
  copyDisk,
  dataPartitionOffset,
  ensureGuestImage,
  makeConfigDisk,
  readDataFile,
  readGuestRecord,
  setGuestKnobs,
  type GuestImage,
} from "./guest.ts";

const MiB = 1024 * 1024;
const noBoot = bootUnavailableReason();
let img: GuestImage;
let dir: string;

beforeAll(async () => {
  img = await ensureGuestImage({ arch: "amd64" });
  dir = mkdtempSync(join(tmpdir(), "minihaos-test-"));
}, 600_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function sh(cmd: string[]): Promise<string> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: { ...process.env, MTOOLS_SKIP_CHECK: "1" } });
  const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${await new Response(p.stderr).text()}`);
  return out;
}

describe("the image (no boot)", () => {
  test("is a GPT disk with hassos-boot (ESP) and hassos-data, UEFI removable-path boot loader", async () => {
    const pt = JSON.parse(await sh(["sfdisk", "-J", img.diskPath])).partitiontable;
    expect(pt.label).toBe("gpt");
    const names = pt.partitions.map((p: { name: string }) => p.name);
    expect(names).toEqual(["hassos-boot", "hassos-data"]);
    expect(pt.partitions[0].type).toBe("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    expect(pt.partitions[1].start * 512).toBe(img.dataOffset);
    expect(await dataPartitionOffset(img.diskPath)).toBe(img.dataOffset);
    const esp = `${img.diskPath}@@${pt.partitions[0].start * 512}`;
    expect(await sh(["mdir", "-b", "-i", esp, "::/EFI/BOOT"])).toContain("BOOTX64.EFI");
  });

  test("pristine record: never booted, ACPI ignored by default, token stored", async () => {
    const rec = await readGuestRecord(img.diskPath);
    expect(rec.bootCount).toBe(0);
    expect(rec.runState).toBe("never-booted");
    expect(rec.clean).toBe(false);
    expect(rec.hasAuthorizedKeys).toBe(false);
    expect(await readDataFile(img.diskPath, "ignore_acpi")).toBe("");
    expect(await readDataFile(img.diskPath, "token")).toBe(img.token);
    expect(await readDataFile(img.diskPath, "no_http")).toBeUndefined();
  });

  test("setGuestKnobs writes and removes knob files on a copy, leaving the cache pristine", async () => {
    const disk = join(dir, "knobs.img");
    await copyDisk(img.diskPath, disk);
    await setGuestKnobs(disk, { ignoreAcpi: false, port80: true, shutdownDelay: 7, noHttp: true, token: "t0k" });
    expect(await readDataFile(disk, "ignore_acpi")).toBeUndefined();
    expect(await readDataFile(disk, "port80")).toBe("");
    expect(await readDataFile(disk, "no_http")).toBe("");
    expect((await readDataFile(disk, "shutdown_delay"))?.trim()).toBe("7");
    expect(await readDataFile(disk, "token")).toBe("t0k");
    await setGuestKnobs(disk, { port80: false, shutdownDelay: 0 });
    expect(await readDataFile(disk, "port80")).toBeUndefined();
    expect((await readDataFile(disk, "shutdown_delay"))?.trim()).toBe("0");
    expect(await readDataFile(disk, "no_http")).toBe("");
    expect(await readDataFile(img.diskPath, "port80")).toBeUndefined();
    await expect(setGuestKnobs(disk, { shutdownDelay: -1 })).rejects.toThrow(/whole seconds/);
  });

  test("makeConfigDisk: MBR + FAT labelled CONFIG, with or without authorized_keys", async () => {
    const withKeys = join(dir, "cfg-keys.img");
    await makeConfigDisk(withKeys, "ssh-ed25519 AAAA test\n");
    expect(await sh(["blkid", "-p", "-O", String(MiB), "-o", "value", "-s", "LABEL", withKeys])).toBe("CONFIG\n");
    expect(await sh(["mtype", "-i", `${withKeys}@@1M`, "::/authorized_keys"])).toBe("ssh-ed25519 AAAA test\n");
    const noKeys = join(dir, "cfg-nokeys.img");
    await makeConfigDisk(noKeys, null);
    expect(await sh(["mdir", "-b", "-i", `${noKeys}@@1M`, "::/"])).not.toContain("AUTHOR");
  });
});

describe.skipIf(!!noBoot)(`two boots under QEMU TCG${noBoot ? ` (skipped: ${noBoot})` : ""}`, () => {
  let disk: string;
  let vars: string;
  let key: string;
  const GROWN = 200 * MiB;

  beforeAll(async () => {
    disk = join(dir, "disk.img");
    vars = join(dir, "vars.fd");
    key = join(dir, "id_ed25519");
    await copyDisk(img.diskPath, disk);
    await sh(["truncate", "-s", String(GROWN), disk]); // what havm does for vm.disk_size: grow the raw file
    await sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "havm-test", "-f", key]);
  });

  const ssh = (g: BootedGuest, ...cmd: string[]) =>
    Bun.spawn(
      ["ssh", "-i", key, "-p", String(g.sshPort), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "root@127.0.0.1", ...cmd],
      { stdout: "pipe", stderr: "pipe", stdin: "ignore" },
    );
  const sshOut = async (g: BootedGuest, ...cmd: string[]) => {
    const p = ssh(g, ...cmd);
    const out = await new Response(p.stdout).text();
    return { code: await p.exited, out };
  };
  const state = async (g: BootedGuest) => JSON.parse((await httpGet(g.httpPort, "/api/minihaos/state", img.token))!.body);

  test("boot 1: CONFIG import, HTTP API with token, disk growth, ACPI ignored, `ha host shutdown` over ssh", async () => {
    const config = join(dir, "config.img");
    await makeConfigDisk(config, await Bun.file(`${key}.pub`).text());
    const g = await bootGuest({ disk, vars, config, runDir: join(dir, "run1") });
    try {
      const ready = await waitFor("HA API", async () => {
        const r = await httpGet(g.httpPort, "/api/", img.token);
        return r?.status === 200 ? r : undefined;
      }, 150_000);
      expect(JSON.parse(ready.body)).toEqual({ message: "API running." });
      expect((await httpGet(g.httpPort, "/api/"))?.status).toBe(401);
      expect((await httpGet(g.httpPort, "/api/", "wrong-token"))?.status).toBe(401);
      expect((await httpGet(g.httpPort, "/"))?.status).toBe(200);

      const s = await state(g);
      expect(s.hostname).toBe("homeassistant");
      expect(s.ip).toMatch(/^10\.0\.2\.\d+$/); // DHCP from QEMU's user network
      expect(s.mac).toBe("02:00:00:00:00:01");
      expect(s.boot_count).toBe(1);
      expect(s.config_imported).toBe("imported");
      expect(s.ssh_keys).toBe(true);
      expect(s.expanded).toBe("yes");
      expect(s.disk_size).toBe(GROWN);
      // hassos-data now ends at the last usable LBA, just before the 33-sector backup GPT at the disk's end
      expect(img.dataOffset + s.data_size).toBe(GROWN - 33 * 512);
      expect(s.fs_size).toBeGreaterThan(100 * MiB);

      await waitFor("ssh", async () => ((await sshOut(g, "echo", "ok")).out.trim() === "ok" ? true : undefined), 60_000, 500);
      expect((await sshOut(g, "hostname")).out.trim()).toBe("homeassistant");

      // generic HAOS ignores the power button: the guest is still up after a system_powerdown
      await g.qmp("system_powerdown");
      await Bun.sleep(3000);
      expect((await httpGet(g.httpPort, "/api/", img.token))?.status).toBe(200);

      // knobs switched over ssh while running: a hung HA Core, then a stuck Supervisor
      expect((await sshOut(g, "touch", "/mnt/data/http_hang", "/mnt/data/ignore_shutdown")).code).toBe(0);
      expect(await httpGet(g.httpPort, "/", undefined, 2000)).toBeUndefined(); // accepted, never answered
      expect((await sshOut(g, "ha", "host", "shutdown")).out).toContain("Command completed successfully.");
      await Bun.sleep(3000);
      expect((await sshOut(g, "echo", "still-up")).out.trim()).toBe("still-up");
      expect((await sshOut(g, "rm", "/mnt/data/http_hang", "/mnt/data/ignore_shutdown")).code).toBe(0);
      expect((await httpGet(g.httpPort, "/"))?.status).toBe(200);

      const ha = await sshOut(g, "ha", "host", "shutdown");
      expect(ha.code).toBe(0);
      expect(await waitExit(g, 60_000)).toBe(0);
      expect(g.serial()).toContain("ACPI power button ignored");
    } catch (e) {
      throw new Error(`${String(e)}\n--- serial log ---\n${g.serial().slice(-3000)}`);
    } finally {
      g.kill();
    }
    const rec = await readGuestRecord(disk);
    expect(rec.bootCount).toBe(1);
    expect(rec.runState).toBe("clean:ssh");
    expect(rec.history.at(-1)).toBe("shutdown ssh command=ha host shutdown");
    expect(rec.configImport).toBe("imported");
    expect(rec.hasAuthorizedKeys).toBe(true);
    expect(rec.diskSize).toBe(GROWN);
    expect(rec.nvramPreviousBoots).toBe(0);
    expect(rec.mac).toBe("02:00:00:00:00:01");
    // the partition table on the image file itself was rewritten: backup GPT at the end, data grown
    const pt = JSON.parse(await sh(["sfdisk", "-J", disk])).partitiontable;
    expect(pt.lastlba).toBe(GROWN / 512 - 34);
    expect(statSync(disk).size).toBe(GROWN);
  }, 240_000);

  test("boot 2: persistence, CONFIG without keys removes them, port 80, dropped host_shutdown answer", async () => {
    await setGuestKnobs(disk, { port80: true, dropOnShutdown: true });
    const config = join(dir, "config-nokeys.img");
    await makeConfigDisk(config, null);
    const g = await bootGuest({ disk, vars, config, runDir: join(dir, "run2"), guestHttpPort: 80 });
    try {
      await waitFor("HA API on port 80", async () => ((await httpGet(g.httpPort, "/api/", img.token))?.status === 200 ? true : undefined), 150_000);
      const s = await state(g);
      expect(s.boot_count).toBe(2);
      expect(s.previous_shutdown).toBe("clean:ssh");
      expect(s.nvram_previous_boots).toBe(1); // the OVMF vars file kept the variable from boot 1
      expect(s.config_imported).toBe("removed");
      expect(s.ssh_keys).toBe(false);
      expect(s.expanded).toBe("no"); // already at the end of the disk
      // no keys: dropbear is not running, so ssh cannot log in
      expect((await sshOut(g, "echo", "ok")).out).toBe("");

      // a crash-consistent copy of the running guest's disk (what a hard stop leaves) is readable and writable
      const snap = join(dir, "snapshot.img");
      await copyDisk(disk, snap);
      const crashed = await readGuestRecord(snap);
      expect(crashed.bootCount).toBe(2);
      expect(crashed.runState).toBe("running");
      expect(crashed.configImport).toBe("removed");
      await setGuestKnobs(snap, { noHttp: true });
      expect(await readDataFile(snap, "no_http")).toBe("");

      const res = await fetch(`http://127.0.0.1:${g.httpPort}/api/services/hassio/host_shutdown`, {
        method: "POST",
        headers: { Authorization: `Bearer ${img.token}`, "Content-Type": "application/json" },
        body: "{}",
        signal: AbortSignal.timeout(10_000),
      }).then((r) => r.status, (e: unknown) => `dropped: ${String(e)}`);
      expect(String(res)).toStartWith("dropped");
      expect(await waitExit(g, 60_000)).toBe(0);
    } catch (e) {
      throw new Error(`${String(e)}\n--- serial log ---\n${g.serial().slice(-3000)}`);
    } finally {
      g.kill();
    }
    const rec = await readGuestRecord(disk);
    expect(rec.bootCount).toBe(2);
    expect(rec.runState).toBe("clean:api");
    expect(rec.configImport).toBe("removed");
    expect(rec.hasAuthorizedKeys).toBe(false);
    expect(rec.nvramPreviousBoots).toBe(1);
  }, 240_000);
});

// arm64 (generic-aarch64 stand-in) under TCG emulation: one boot, when qemu-system-aarch64 and AAVMF exist.
const noArm = bootUnavailableReason("arm64");
describe.skipIf(!!noArm)(`arm64 guest${noArm ? ` (skipped: ${noArm})` : ""}`, () => {
  test("boots, answers the API with the token, grows its disk, shuts down over the API", async () => {
    const arm = await ensureGuestImage({ arch: "arm64" });
    const disk = join(dir, "arm64.img");
    await copyDisk(arm.diskPath, disk);
    await sh(["truncate", "-s", String(256 * MiB), disk]);
    const g = await bootGuest({ arch: "arm64", disk, vars: join(dir, "arm64-vars.fd"), runDir: join(dir, "run-arm64") });
    try {
      await waitFor("HA API (arm64)", async () => ((await httpGet(g.httpPort, "/api/", arm.token))?.status === 200 ? true : undefined), 240_000);
      expect((await httpGet(g.httpPort, "/api/"))?.status).toBe(401);
      const s = JSON.parse((await httpGet(g.httpPort, "/api/minihaos/state", arm.token))!.body);
      expect(s.hostname).toBe("homeassistant");
      expect(s.disk_size).toBe(256 * MiB);
      expect(s.expanded).toBe("yes");
      const r = await fetch(`http://127.0.0.1:${g.httpPort}/api/services/hassio/host_shutdown`, {
        method: "POST",
        headers: { Authorization: `Bearer ${arm.token}` },
      });
      expect(r.status).toBe(200);
      expect(await waitExit(g, 90_000)).toBe(0);
    } catch (e) {
      throw new Error(`${String(e)}\n--- serial log ---\n${g.serial().slice(-3000)}`);
    } finally {
      g.kill();
    }
    const rec = await readGuestRecord(disk);
    expect(rec.bootCount).toBe(1);
    expect(rec.runState).toBe("clean:api");
  }, 400_000);
});
