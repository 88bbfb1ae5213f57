// The mini-HAOS test guest: build (once, cached), tune and read back its disk without booting it.
// The image is built by build-minihaos.sh from Debian packages; see test/guest/README.md for its behaviour.
// Everything here works on the raw image file: knobs are written and the record is read with debugfs
// on the ext4 data partition (no mount, no root, no boot).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";

export type GuestArch = "amd64" | "arm64";

export interface GuestImage {
  /** The cached pristine image: copy it before booting (callers must never boot this file). */
  diskPath: string;
  /** Byte offset of the hassos-data ext4 partition inside the disk. */
  dataOffset: number;
  /** The API bearer token stored on the data partition. */
  token: string;
  arch: GuestArch;
}

/** Behaviour variants, stored as files on the data partition (read by the guest at boot or on use). */
export interface GuestKnobs {
  /** Ignore the ACPI power button, like generic HAOS boards. The built image has this ON. */
  ignoreAcpi?: boolean;
  /** Serve HTTP on port 80 instead of 8123 (new HA installs since Aug 2026). */
  port80?: boolean;
  /** On POST host_shutdown, start the shutdown and cut the connection without answering. */
  dropOnShutdown?: boolean;
  /** Seconds the guest stalls while shutting down (before it records the clean stop). */
  shutdownDelay?: number;
  /** Never answer HTTP (no listener at all). */
  noHttp?: boolean;
  /** Accept HTTP connections but never answer (a hung HA Core). */
  hangHttp?: boolean;
  /** Acknowledge host_shutdown and `ha host shutdown` but do nothing (a stuck Supervisor). */
  ignoreShutdown?: boolean;
  /** Seconds after boot before HTTP starts listening. */
  haStartDelay?: number;
  /** Replace the API bearer token. */
  token?: string;
}

/** What the guest wrote on its data partition (read from the image, not from a running guest). */
export interface GuestRecord {
  bootCount: number;
  /** "never-booted", "running" (booted and not cleanly stopped: a crash or a hard stop) or "clean:<reason>". */
  runState: string;
  /** true when the last boot ended with a clean shutdown. */
  clean: boolean;
  /** api | ssh | acpi | poweroff (a plain poweroff/reboot inside the guest); undefined unless clean. */
  shutdownReason: string | undefined;
  /** Disk and hassos-data partition sizes in bytes as seen by the guest at its last boot (0: never booted). */
  diskSize: number;
  dataSize: number;
  /** Size of the ext4 filesystem on hassos-data after growth, in bytes. */
  fsSize: number;
  /** Result of the CONFIG import at the last boot: none | imported | removed. */
  configImport: string;
  /** How many boots the NVRAM probe saw before the last one (-1: no efivarfs). */
  nvramPreviousBoots: number;
  /** One line per boot ("boot N previous=... disk=... data=... expanded=...") and per clean shutdown. */
  history: string[];
  /** The guest NIC's MAC address at its last boot. */
  mac: string;
  /** Whether the image has ssh keys imported (data/ssh/authorized_keys). */
  hasAuthorizedKeys: boolean;
}

const HERE = import.meta.dir;
export const BUILDER = join(HERE, "build-minihaos.sh");

/** Root of the test cache: outside the work tree, shared between test runs. */
export function testCacheDir(): string {
  return process.env.HAVM_TEST_CACHE ?? join(process.env.HOME ?? homedir(), ".cache", "havm-test");
}

/** The builder's content hash: a changed builder means a new cached image. */
export function builderHash(): string {
  return createHash("sha256").update(readFileSync(BUILDER)).digest("hex").slice(0, 12);
}

export function guestImageDir(arch: GuestArch = "amd64"): string {
  return join(testCacheDir(), `guest-${builderHash()}-${arch}`);
}

function parseLayout(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const m = /^([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

async function run(cmd: string[], opts: { stdin?: string; cwd?: string; env?: Record<string, string> } = {}): Promise<string> {
  const p = Bun.spawn(cmd, {
    stdin: opts.stdin === undefined ? "ignore" : new TextEncoder().encode(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
    cwd: opts.cwd,
    env: opts.env ?? (process.env as Record<string, string>),
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${err.trim() || out.trim()}`);
  return out;
}

const inflight = new Map<string, Promise<GuestImage>>();

/** Build the guest image if it is not cached yet; returns the cached pristine image (copy it before use). */
export function ensureGuestImage(opts: { arch?: GuestArch } = {}): Promise<GuestImage> {
  const arch = opts.arch ?? "amd64";
  const dir = guestImageDir(arch);
  let p = inflight.get(dir);
  if (!p) {
    p = buildIfMissing(arch, dir);
    inflight.set(dir, p);
    p.catch(() => inflight.delete(dir));
  }
  return p;
}

async function buildIfMissing(arch: GuestArch, dir: string): Promise<GuestImage> {
  const layoutFile = join(dir, "layout.env");
  if (!existsSync(layoutFile) || !existsSync(join(dir, "disk.img"))) {
    mkdirSync(testCacheDir(), { recursive: true });
    // Build beside the final place, then rename: a concurrent builder (another test process) either wins
    // the rename or finds the finished image; nobody ever sees half an image.
    const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
    rmSync(tmp, { recursive: true, force: true });
    const env = { ...(process.env as Record<string, string>), CACHE: join(testCacheDir(), "debs") };
    try {
      await run(["bash", BUILDER, arch, tmp], { env, cwd: testCacheDir() });
      try {
        renameSync(tmp, dir);
      } catch {
        if (!existsSync(layoutFile)) throw new Error(`could not move the built guest image into ${dir}`);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  const layout = parseLayout(readFileSync(layoutFile, "utf8"));
  return {
    diskPath: join(dir, "disk.img"),
    dataOffset: Number(layout.DATA_OFFSET),
    token: layout.TOKEN ?? "",
    arch,
  };
}

/** Copy a disk image keeping it sparse (cp --sparse=always). */
export async function copyDisk(from: string, to: string): Promise<void> {
  await run(["cp", "--sparse=always", from, to]);
}

/** Find the hassos-data partition's byte offset by reading the disk's primary GPT. */
export async function dataPartitionOffset(diskPath: string): Promise<number> {
  const fh = await open(diskPath, "r");
  try {
    const hdr = Buffer.alloc(512);
    await fh.read(hdr, 0, 512, 512);
    if (hdr.toString("latin1", 0, 8) !== "EFI PART") throw new Error(`${diskPath}: no GPT header at LBA 1`);
    const entriesLba = Number(hdr.readBigUInt64LE(72));
    const count = hdr.readUInt32LE(80);
    const size = hdr.readUInt32LE(84);
    const table = Buffer.alloc(count * size);
    await fh.read(table, 0, table.length, entriesLba * 512);
    for (let i = 0; i < count; i++) {
      const e = table.subarray(i * size, (i + 1) * size);
      const name = e.toString("utf16le", 56, 128).replace(/\0.*$/s, "");
      if (name === "hassos-data") return Number(e.readBigUInt64LE(32)) * 512;
    }
  } finally {
    await fh.close();
  }
  throw new Error(`${diskPath}: no GPT partition named hassos-data`);
}

async function debugfs(diskPath: string, args: string[], write = false): Promise<string> {
  const offset = await dataPartitionOffset(diskPath);
  return run(["debugfs", ...(write ? ["-w"] : []), ...args, `${diskPath}?offset=${offset}`]);
}

/** Set behaviour knobs on a (copied, not running) guest disk. Unset knobs are left as they are. */
export async function setGuestKnobs(diskPath: string, knobs: GuestKnobs): Promise<void> {
  const scratch = join(tmpdir(), `minihaos-knobs-${process.pid}-${Date.now()}`);
  mkdirSync(scratch, { recursive: true });
  const cmds: string[] = [];
  let n = 0;
  const put = (name: string, content: string) => {
    const local = join(scratch, `f${n++}`);
    writeFileSync(local, content);
    cmds.push(`rm /${name}`, `write ${local} /${name}`);
  };
  const flag = (name: string, on: boolean | undefined) => {
    if (on === undefined) return;
    if (on) put(name, "");
    else cmds.push(`rm /${name}`);
  };
  const seconds = (name: string, v: number | undefined) => {
    if (v === undefined) return;
    if (!Number.isInteger(v) || v < 0) throw new Error(`${name}: expected whole seconds >= 0, got ${v}`);
    put(name, `${v}\n`);
  };
  flag("ignore_acpi", knobs.ignoreAcpi);
  flag("port80", knobs.port80);
  flag("drop_on_shutdown", knobs.dropOnShutdown);
  flag("no_http", knobs.noHttp);
  flag("http_hang", knobs.hangHttp);
  flag("ignore_shutdown", knobs.ignoreShutdown);
  seconds("shutdown_delay", knobs.shutdownDelay);
  seconds("ha_start_delay", knobs.haStartDelay);
  if (knobs.token !== undefined) put("token", knobs.token);
  try {
    if (cmds.length === 0) return;
    const cmdFile = join(scratch, "cmds");
    writeFileSync(cmdFile, cmds.join("\n") + "\n");
    await debugfs(diskPath, ["-f", cmdFile], true);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Read one file from the data partition; undefined when it does not exist. */
export async function readDataFile(diskPath: string, name: string): Promise<string | undefined> {
  // debugfs prints errors to stderr and still exits 0: ask for the inode first.
  const stat = await debugfs(diskPath, ["-R", `stat /${name}`]).catch(() => "");
  if (!/Inode:/.test(stat)) return undefined;
  return debugfs(diskPath, ["-R", `cat /${name}`]);
}

/**
 * Read the guest's own record of its boots and shutdowns from the image. The guest must not be running.
 * Also right after a hard stop: the guest flushes its ext4 journal after its boot-time writes.
 */
export async function readGuestRecord(diskPath: string): Promise<GuestRecord> {
  const names = ["boot_count", "run_state", "disk_size", "data_size", "fs_size", "config_import", "nvram_previous_boots", "history", "ssh/authorized_keys", "mac"] as const;
  const vals = await Promise.all(names.map((n) => readDataFile(diskPath, n)));
  const get = (i: number) => (vals[i] ?? "").trim();
  const num = (i: number, dflt = 0) => (get(i) === "" ? dflt : Number(get(i)));
  const runState = get(1);
  const clean = runState.startsWith("clean:");
  return {
    bootCount: num(0),
    runState,
    clean,
    shutdownReason: clean ? runState.slice("clean:".length) : undefined,
    diskSize: num(2),
    dataSize: num(3),
    fsSize: num(4),
    configImport: get(5) || "none",
    nvramPreviousBoots: num(6, -1),
    history: get(7).split("\n").filter((l) => l !== ""),
    hasAuthorizedKeys: get(8) !== "",
    mac: get(9),
  };
}

/** Compress a disk like HAOS release assets (.img.xz, xz -3, multithreaded). */
export async function makeXzImage(diskPath: string, outPath: string): Promise<void> {
  const tmp = `${outPath}.tmp-${process.pid}`;
  await run(["sh", "-c", 'xz -3 -T0 -c -- "$1" > "$2"', "sh", diskPath, tmp]);
  renameSync(tmp, outPath);
}

/**
 * A cached .img.xz of the pristine guest (built on first use, next to the image), for release-server tests.
 */
export async function ensureGuestXz(opts: { arch?: GuestArch } = {}): Promise<string> {
  const img = await ensureGuestImage(opts);
  const xz = img.diskPath.replace(/\.img$/, ".img.xz");
  if (!existsSync(xz)) await makeXzImage(img.diskPath, xz);
  return xz;
}

/**
 * Build a HAOS CONFIG stick image: MBR + one FAT16 partition labelled CONFIG, with `authorized_keys`
 * when given (null: a CONFIG source without keys, which makes HAOS remove its keys).
 */
export async function makeConfigDisk(outPath: string, authorizedKeys: string | null, sizeMb = 16): Promise<void> {
  rmSync(outPath, { force: true });
  await run(["truncate", "-s", `${sizeMb}M`, outPath]);
  await run(["sfdisk", "-q", outPath], { stdin: "label: dos\nstart=2048, type=6, bootable\n" });
  const sectors = sizeMb * 2048 - 2048;
  await run(["mkfs.fat", "-F", "16", "-n", "CONFIG", "--offset", "2048", "-h", "2048", outPath, String(sectors / 2)]);
  const env = { ...(process.env as Record<string, string>), MTOOLS_SKIP_CHECK: "1" };
  if (authorizedKeys !== null) {
    const keys = `${outPath}.authorized_keys`;
    writeFileSync(keys, authorizedKeys);
    try {
      await run(["mcopy", "-i", `${outPath}@@1M`, keys, "::/authorized_keys"], { env });
    } finally {
      rmSync(keys, { force: true });
    }
  } else {
    // a marker so the volume is not empty, like a real stick with other config files
    const other = `${outPath}.readme`;
    writeFileSync(other, "no keys here\n");
    try {
      await run(["mcopy", "-i", `${outPath}@@1M`, other, "::/README.txt"], { env });
    } finally {
      rmSync(other, { force: true });
    }
  }
}
