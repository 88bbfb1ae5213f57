import { captureLogLines } from "../support/log-capture.ts";
import { describe, expect, test, afterAll, beforeAll } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildConfigDiskImage, checkAuthorizedKeys, ensureConfigDisk, isPublicKeyLine } from "../../src/disk/config-disk.ts";
import { HavmError } from "../../src/util/errors.ts";

const MiB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), "havm-config-disk-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(argv: string[]): { code: number; out: string } {
  const r = Bun.spawnSync(argv, { env: { ...process.env, MTOOLS_SKIP_CHECK: "1", LC_ALL: "C" }, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString() + r.stderr.toString() };
}

/** Real keys from ssh-keygen: the public line, the private file text, and the RFC 4716 export. */
const keys = { pub1: "", pub2: "", privateText: "", rfc4716: "", privPath: "", pubPath: "" };
beforeAll(() => {
  const ssh = join(dir, "home", ".ssh");
  mkdirSync(ssh, { recursive: true });
  for (const [name, comment] of [["id_ed25519", "alice@laptop"], ["other", "bob@desk"]] as const) {
    const r = run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", join(ssh, name)]);
    if (r.code !== 0) throw new Error(r.out);
  }
  keys.privPath = join(ssh, "id_ed25519");
  keys.pubPath = join(ssh, "id_ed25519.pub");
  keys.pub1 = readFileSync(keys.pubPath, "utf8").trim();
  keys.pub2 = readFileSync(join(ssh, "other.pub"), "utf8").trim();
  keys.privateText = readFileSync(keys.privPath, "utf8");
  keys.rfc4716 = run(["ssh-keygen", "-e", "-f", keys.pubPath]).out;
});

describe("buildConfigDiskImage read back with real tools", () => {
  // 4 MiB: smallest comfortable size; 8 MiB: the default; 48 MiB: needs 2 sectors per cluster to stay FAT16.
  test.each([4 * MiB, 8 * MiB, 48 * MiB])("%i bytes", (size) => {
    const content = `${keys.pub1}\n${keys.pub2}\n`;
    const image = buildConfigDiskImage([{ name: "authorized_keys", data: new TextEncoder().encode(content) }], { sizeBytes: size });
    expect(image.length).toBe(size);
    const img = join(dir, `config-${size}.img`);
    writeFileSync(img, image);

    // Signatures, checked directly (the tools below accept a missing one on the partition).
    expect([image[510], image[511]]).toEqual([0x55, 0xaa]);
    expect([image[MiB + 510], image[MiB + 511]]).toEqual([0x55, 0xaa]);
    expect(new DataView(image.buffer).getUint32(MiB + 28, true)).toBe(2048); // BPB hidden sectors

    const table = JSON.parse(run(["sfdisk", "-J", img]).out).partitiontable;
    expect(table.label).toBe("dos");
    expect(table.partitions.length).toBe(1);
    expect(table.partitions[0].start).toBe(2048);
    expect(table.partitions[0].size).toBe(size / 512 - 2048);
    expect(table.partitions[0].type).toBe("6");
    expect(run(["sfdisk", "-d", img]).out).toMatch(/start=\s*2048, size=\s*\d+, type=6/);

    const minfo = run(["minfo", "-i", `${img}@@1M`]);
    expect(minfo.code).toBe(0);
    expect(minfo.out).toContain("hidden sectors: 2048");
    expect(minfo.out).toContain('disk label="CONFIG     "');
    expect(minfo.out).toContain('disk type="FAT16   "');

    const mdir = run(["mdir", "-i", `${img}@@1M`, "::"]);
    expect(mdir.out).toContain("Volume in drive : is CONFIG");
    expect(mdir.out).toMatch(/\s+authorized_keys\n/);
    expect(run(["mtype", "-i", `${img}@@1M`, "::authorized_keys"]).out).toBe(content);

    // blkid reports the root-directory label (LABEL) and the boot-sector label (LABEL_FATBOOT) separately.
    const blkid = run(["blkid", "-p", "-O", String(MiB), "-o", "export", img]).out;
    expect(blkid).toContain("TYPE=vfat\n");
    expect(blkid).toContain("VERSION=FAT16\n");
    expect(blkid).toContain("LABEL=CONFIG\n");
    expect(blkid).toContain("LABEL_FATBOOT=CONFIG\n");

    const slice = join(dir, `part-${size}.img`);
    expect(run(["dd", `if=${img}`, `of=${slice}`, "bs=1M", "skip=1", "status=none"]).code).toBe(0);
    const fsck = run(["fsck.fat", "-n", "-v", slice]);
    expect(fsck.code).toBe(0);
    expect(fsck.out).toContain("16 bit entries");
    const clusters = Number(/(\d+) data clusters/.exec(fsck.out)?.[1]);
    expect(clusters).toBeGreaterThanOrEqual(4085);
    expect(clusters).toBeLessThanOrEqual(65524);
    rmSync(slice);
  });

  test("equal input gives identical bytes; different keys give different bytes", () => {
    const f = (s: string) => [{ name: "authorized_keys", data: new TextEncoder().encode(s) }];
    const a = buildConfigDiskImage(f(keys.pub1 + "\n"));
    expect(Buffer.from(a).equals(Buffer.from(buildConfigDiskImage(f(keys.pub1 + "\n"))))).toBe(true);
    expect(Buffer.from(a).equals(Buffer.from(buildConfigDiskImage(f(keys.pub2 + "\n"))))).toBe(false);
  });
});

describe("checkAuthorizedKeys", () => {
  test("accepts public keys, options, comments and blank lines", () => {
    const text = `\uFEFF# my keys\n\n${keys.pub1}\r\nno-pty,command="echo hi there" ${keys.pub2}\n`;
    const r = checkAuthorizedKeys(text);
    expect(r).toEqual({ ok: true, lines: [keys.pub1, `no-pty,command="echo hi there" ${keys.pub2}`] });
  });
  test("refuses a private key, an RFC 4716 key, garbage and empty files", () => {
    expect(checkAuthorizedKeys(keys.privateText)).toEqual({ ok: false, reason: "private" });
    expect(checkAuthorizedKeys(`${keys.pub1}\n${keys.privateText}`)).toEqual({ ok: false, reason: "private" });
    expect(checkAuthorizedKeys("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n")).toEqual({ ok: false, reason: "private" });
    expect(checkAuthorizedKeys(keys.rfc4716)).toEqual({ ok: false, reason: "rfc4716" });
    expect(checkAuthorizedKeys(`${keys.pub1}\nhello world\n`)).toEqual({ ok: false, reason: "invalid", line: 2 });
    expect(checkAuthorizedKeys("# only a comment\n\n")).toEqual({ ok: false, reason: "empty" });
  });
  const cases: [string, () => string, boolean][] = [
    ["the key type must match the blob", () => keys.pub1.replace("ssh-ed25519", "ssh-rsa"), false],
    ["truncated base64", () => keys.pub1.split(" ").slice(0, 2).join(" ").slice(0, 30), false],
    ["no blob", () => "ssh-ed25519", false],
    ["a real key", () => keys.pub1, true],
    ["a key without comment", () => keys.pub1.split(" ").slice(0, 2).join(" "), true],
  ];
  test.each(cases)("isPublicKeyLine: %s", (_, line, ok) => {
    expect(isPublicKeyLine(line())).toBe(ok);
  });
});

describe("ensureConfigDisk", () => {
  const lines = captureLogLines();

  test("no keys ever configured: no CONFIG disk", async () => {
    const target = join(dir, "vm-none", "config.img");
    expect(await ensureConfigDisk({ home: join(dir, "home"), configDiskPath: target })).toEqual({ changed: false, keys: 0 });
    expect(() => statSync(target)).toThrow();
  });

  test("written once, rebuilt only on change, keys removed -> an image without authorized_keys", async () => {
    const home = join(dir, "home");
    const vm = join(dir, "vm-keys");
    const target = join(vm, "config.img");
    const keysFile = join(home, "keys.pub");
    writeFileSync(keysFile, `${keys.pub1}\n`);

    const first = await ensureConfigDisk({ authorizedKeysPath: "~/keys.pub", home, configDiskPath: target });
    expect(first).toEqual({ path: target, changed: true, keys: 1 });
    expect(run(["mtype", "-i", `${target}@@1M`, "::authorized_keys"]).out).toBe(`${keys.pub1}\n`);
    const ino = statSync(target).ino;

    const again = await ensureConfigDisk({ authorizedKeysPath: "~/keys.pub", home, configDiskPath: target });
    expect(again).toEqual({ path: target, changed: false, keys: 1 });
    expect(statSync(target).ino).toBe(ino); // not rewritten (an atomic write would replace the inode)

    writeFileSync(keysFile, `${keys.pub1}\n${keys.pub2}\n`);
    const changed = await ensureConfigDisk({ authorizedKeysPath: keysFile, home, configDiskPath: target });
    expect(changed).toEqual({ path: target, changed: true, keys: 2 });
    expect(statSync(target).ino).not.toBe(ino);
    expect(run(["mtype", "-i", `${target}@@1M`, "::authorized_keys"]).out).toBe(`${keys.pub1}\n${keys.pub2}\n`);

    lines.length = 0;
    const removed = await ensureConfigDisk({ home, configDiskPath: target });
    expect(removed).toEqual({ path: target, changed: true, keys: 0 });
    const mdir = run(["mdir", "-a", "-i", `${target}@@1M`, "::"]).out;
    expect(mdir).toContain("Volume in drive : is CONFIG");
    expect(mdir).not.toContain("authorized_keys");
    expect(mdir).toContain("No files");
    expect(run(["blkid", "-p", "-O", String(MiB), "-o", "export", target]).out).toContain("LABEL=CONFIG\n");
    expect(lines.join("\n")).toMatch(/WARN .*HAOS keeps the SSH keys it imported until a CONFIG disk without authorized_keys is attached.*This boot attaches one/);

    const stillRemoved = await ensureConfigDisk({ home, configDiskPath: target });
    expect(stillRemoved).toEqual({ path: target, changed: false, keys: 0 });
    // No temp files left behind.
    expect(readdirSync(vm)).toEqual(["config.img"]);
  });

  test("a private key is refused, names the .pub file, and is never copied", async () => {
    const vm = join(dir, "vm-private");
    const target = join(vm, "config.img");
    mkdirSync(vm, { recursive: true });
    const before = buildConfigDiskImage([{ name: "authorized_keys", data: new TextEncoder().encode(keys.pub2 + "\n") }]);
    writeFileSync(target, before);
    let err: unknown;
    try {
      await ensureConfigDisk({ authorizedKeysPath: "~/.ssh/id_ed25519", home: join(dir, "home"), configDiskPath: target });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HavmError);
    const h = err as HavmError;
    expect(h.exitCode).toBe(2);
    expect(h.code).toBe("config.ssh_private_key");
    expect(h.message).toContain("PRIVATE key");
    expect(h.message).toContain(keys.privPath);
    expect(h.hint).toContain(keys.pubPath);
    expect(h.message + h.hint).not.toContain(keys.privateText.split("\n")[1]!);
    // The old image is untouched and nothing in the VM dir holds private key material.
    expect(readFileSync(target).equals(Buffer.from(before))).toBe(true);
    const secretLine = keys.privateText.split("\n")[1]!;
    for (const f of readdirSync(vm)) expect(readFileSync(join(vm, f), "latin1")).not.toContain(secretLine);
  });

  test("a missing keys file is bad input", async () => {
    const p = ensureConfigDisk({ authorizedKeysPath: "~/nope.pub", home: join(dir, "home"), configDiskPath: join(dir, "vm-missing", "config.img") });
    await expect(p).rejects.toThrow(/does not exist/);
    await expect(p).rejects.toMatchObject({ exitCode: 2 });
  });
});
