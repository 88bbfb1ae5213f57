// The CONFIG disk: a small MBR + FAT16 image labelled `CONFIG` that HAOS imports at boot (hassos-config):
// `authorized_keys` there becomes /root/.ssh/authorized_keys and starts dropbear on port 22222.
// Built in memory (fat16.ts), written atomically to vm/config.img only when its bytes change, and attached
// as USB mass storage by both backends.
//
// Keys removed from the config (decision, the docs promise the same):
//   The config is the source of truth. HAOS keeps imported keys until it sees a CONFIG source WITHOUT
//   authorized_keys (that deletes the keys and stops dropbear). So when `ssh.authorized_keys` is absent but
//   vm/config.img exists (keys were configured before), havm rebuilds config.img without authorized_keys and
//   keeps attaching it: at the next boot HAOS deletes the imported keys; on later boots the empty CONFIG
//   disk changes nothing (the import is idempotent), and attaching it every boot means a boot that crashed
//   before the import cannot leave the keys behind. A warning is logged when the keys are dropped. Deleting
//   vm/config.img stops attaching it. When no keys were ever configured there is no CONFIG disk at all.
import { readFile } from "node:fs/promises";
import { HavmError, ExitCode, errnoCode } from "../util/errors.ts";
import { writeFileAtomic, exists } from "../util/fs.ts";
import { expandHome } from "../config/paths.ts";
import { log } from "../util/log.ts";
import { buildFat16Volume, buildMbr, stableId32, SECTOR, type FatFile } from "./fat16.ts";

/** Where the partition starts: 1 MiB, the usual alignment. */
export const PARTITION_START_LBA = 2048;
/** 8 MiB: comfortably FAT16 with 512-byte clusters (about 14,000 clusters), small on disk. */
export const DEFAULT_CONFIG_DISK_SIZE = 8 * 1024 * 1024;
export const CONFIG_LABEL = "CONFIG";
/** Fixed directory timestamps, so equal keys always give byte-identical images (rebuild only on change). */
const FIXED_TIMESTAMP = new Date(Date.UTC(2020, 0, 1, 0, 0, 0));
const MAX_KEYS_FILE = 1024 * 1024;

/** A disk image: MBR, one FAT16 partition (type 0x06) from 1 MiB to the end, labelled CONFIG. Pure. */
export function buildConfigDiskImage(files: FatFile[], opts: { sizeBytes?: number } = {}): Uint8Array {
  const size = opts.sizeBytes ?? DEFAULT_CONFIG_DISK_SIZE;
  if (size % SECTOR !== 0) throw new RangeError(`CONFIG disk size must be a multiple of ${SECTOR} bytes`);
  const totalSectors = size / SECTOR;
  const partSectors = totalSectors - PARTITION_START_LBA;
  const id = stableId32(CONFIG_LABEL, ...files.flatMap((f) => [f.name, "\0", f.data, "\0"]));
  const volume = buildFat16Volume({
    sectors: partSectors,
    hiddenSectors: PARTITION_START_LBA,
    label: CONFIG_LABEL,
    files,
    volumeId: id,
    timestamp: FIXED_TIMESTAMP,
  });
  const image = new Uint8Array(size);
  image.set(buildMbr([{ type: 0x06, startLba: PARTITION_START_LBA, sectors: partSectors }], id), 0);
  image.set(volume, PARTITION_START_LBA * SECTOR);
  return image;
}

// ---------------------------------------------------------------------------------------------------------
// authorized_keys validation (pure)

const KEY_TYPES = new Set([
  "ssh-ed25519",
  "ssh-rsa",
  "ssh-dss",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
]);
const isKeyType = (t: string) => KEY_TYPES.has(t) || KEY_TYPES.has(t.replace(/-cert-v01@openssh\.com$/, ""));

const PRIVATE_MARKERS = [/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/, /^PuTTY-User-Key-File-\d+:/m, /---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----/];

export type KeysCheck =
  | { ok: true; lines: string[] }
  | { ok: false; reason: "private" | "rfc4716" | "invalid" | "empty"; line?: number };

/** Split an authorized_keys line into tokens; double-quoted option values may contain spaces. */
function tokens(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "\\" && quoted && i + 1 < line.length) {
      cur += c + line[++i];
    } else if (c === '"') {
      quoted = !quoted;
      cur += c;
    } else if (!quoted && (c === " " || c === "\t")) {
      if (cur) out.push(cur);
      cur = "";
    } else cur += c;
  }
  if (cur) out.push(cur);
  return out;
}

/** True when `blob` is base64 whose SSH wire encoding starts with the string `type`. */
function blobMatches(type: string, blob: string): boolean {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob) || blob.length % 4 !== 0) return false;
  const bytes = Buffer.from(blob, "base64");
  if (bytes.length < 4 + type.length) return false;
  const len = bytes.readUInt32BE(0);
  return len === type.length && bytes.subarray(4, 4 + len).toString("latin1") === type;
}

/** Is this one authorized_keys line a public key (with optional options before it and a comment after)? */
export function isPublicKeyLine(line: string): boolean {
  const t = tokens(line);
  // Without options the key type is the first token; with options, the second (options are one token).
  for (const i of [0, 1]) {
    const type = t[i];
    const blob = t[i + 1];
    if (type !== undefined && blob !== undefined && isKeyType(type)) return blobMatches(type, blob);
  }
  return false;
}

/**
 * Check the text of an authorized_keys file. Returns the key lines (trimmed; comments and blank lines dropped)
 * or why it is refused. Never echoes key material.
 */
export function checkAuthorizedKeys(text: string): KeysCheck {
  if (PRIVATE_MARKERS.some((re) => re.test(text))) return { ok: false, reason: "private" };
  if (text.includes("---- BEGIN SSH2 PUBLIC KEY ----")) return { ok: false, reason: "rfc4716" };
  const lines: string[] = [];
  const all = text.replace(/^\uFEFF/, "").split(/\r?\n/); // editors on Windows may add a BOM
  for (let i = 0; i < all.length; i++) {
    const line = all[i]!.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (!isPublicKeyLine(line)) return { ok: false, reason: "invalid", line: i + 1 };
    lines.push(line);
  }
  if (lines.length === 0) return { ok: false, reason: "empty" };
  return { ok: true, lines };
}

// ---------------------------------------------------------------------------------------------------------
// The stage

export interface EnsureConfigDiskOptions {
  /** `ssh.authorized_keys` from the config (may start with `~`); undefined when not configured. */
  authorizedKeysPath?: string;
  home: string;
  /** vm/config.img */
  configDiskPath: string;
  sizeBytes?: number;
}

export interface ConfigDiskResult {
  /** The image to attach as USB mass storage; undefined when there is none. */
  path?: string;
  /** True when config.img was (re)written by this call. */
  changed: boolean;
  /** Number of public keys in the image. */
  keys: number;
}

async function readKeysFile(path: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const code = errnoCode(e);
    throw new HavmError(
      code === "ENOENT" ? `ssh.authorized_keys points to ${path}, which does not exist` : `cannot read ssh.authorized_keys file ${path} (${code ?? String(e)})`,
      {
        hint: "Set ssh.authorized_keys to a public key file such as ~/.ssh/id_ed25519.pub, or remove the setting.",
        exitCode: ExitCode.badInput,
        code: "config.ssh_keys",
      },
    );
  }
  if (bytes.length > MAX_KEYS_FILE) {
    throw new HavmError(`ssh.authorized_keys file ${path} is larger than 1 MiB: that is not an authorized_keys file`, {
      hint: "Point ssh.authorized_keys at a public key file such as ~/.ssh/id_ed25519.pub.",
      exitCode: ExitCode.badInput,
      code: "config.ssh_keys",
    });
  }
  return bytes.toString("utf8");
}

function refusal(path: string, check: Exclude<KeysCheck, { ok: true }>): HavmError {
  const opts = { exitCode: ExitCode.badInput, code: "config.ssh_keys" } as const;
  switch (check.reason) {
    case "private": {
      const pub = `${path}.pub`;
      return new HavmError(`ssh.authorized_keys points to ${path}, which is a PRIVATE key; havm never copies private keys`, {
        ...opts,
        code: "config.ssh_private_key",
        hint: exists(pub)
          ? `Use the public key next to it: set ssh.authorized_keys to ${pub}.`
          : "Set ssh.authorized_keys to the matching public key (the .pub file, e.g. ~/.ssh/id_ed25519.pub).",
      });
    }
    case "rfc4716":
      return new HavmError(`ssh.authorized_keys file ${path} holds an RFC 4716 (SSH2) public key, not OpenSSH format`, {
        ...opts,
        hint: `Convert it with: ssh-keygen -i -f ${path} > ${path}.openssh.pub`,
      });
    case "empty":
      return new HavmError(`ssh.authorized_keys file ${path} contains no public keys`, {
        ...opts,
        hint: "Add a public key (e.g. the contents of ~/.ssh/id_ed25519.pub), or remove ssh.authorized_keys from the config.",
      });
    case "invalid":
      return new HavmError(`ssh.authorized_keys file ${path}: line ${check.line} is not an OpenSSH public key`, {
        ...opts,
        hint: "Each line must look like `ssh-ed25519 AAAA... comment` (the contents of a .pub file).",
      });
  }
}

async function readIfExists(path: string): Promise<Uint8Array | undefined> {
  try {
    return await readFile(path);
  } catch (e) {
    if (errnoCode(e) === "ENOENT") return undefined;
    // Unreadable or otherwise broken: it is derived data, so it is simply rebuilt.
    log.warn("cannot read the existing CONFIG disk; rebuilding it", { path, error: errnoCode(e) ?? String(e) });
    return new Uint8Array(0);
  }
}

function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);
}

/** Build or refresh vm/config.img from `ssh.authorized_keys`; see the decision at the top of this file. */
export async function ensureConfigDisk(opts: EnsureConfigDiskOptions): Promise<ConfigDiskResult> {
  const target = opts.configDiskPath;
  const existing = await readIfExists(target);

  if (opts.authorizedKeysPath === undefined) {
    if (existing === undefined) return { changed: false, keys: 0 }; // keys never configured: no CONFIG disk
    const image = buildConfigDiskImage([], { sizeBytes: opts.sizeBytes });
    if (sameBytes(existing, image)) {
      log.debug("attaching the CONFIG disk without authorized_keys (SSH keys were removed from the config); delete it to stop", { path: target });
      return { path: target, changed: false, keys: 0 };
    }
    writeFileAtomic(target, image, 0o644);
    log.warn(
      "ssh.authorized_keys was removed from the config: HAOS keeps the SSH keys it imported until a CONFIG disk without " +
        "authorized_keys is attached. This boot attaches one, so HAOS deletes the keys and stops its SSH server on port 22222.",
      { path: target },
    );
    return { path: target, changed: true, keys: 0 };
  }

  const keysPath = expandHome(opts.authorizedKeysPath, opts.home);
  const check = checkAuthorizedKeys(await readKeysFile(keysPath));
  if (!check.ok) throw refusal(keysPath, check);
  const data = new TextEncoder().encode(check.lines.join("\n") + "\n");
  const image = buildConfigDiskImage([{ name: "authorized_keys", data }], { sizeBytes: opts.sizeBytes });
  if (sameBytes(existing, image)) return { path: target, changed: false, keys: check.lines.length };
  writeFileAtomic(target, image, 0o644);
  log.info("CONFIG disk written; HAOS imports the SSH keys at the next boot", { path: target, keys: check.lines.length });
  return { path: target, changed: true, keys: check.lines.length };
}
