// The `xz` subprocess decoder (the fallback when liblzma cannot be dlopened): same bytes as the liblzma
// decoder, same errors, backpressure, no child left running; and the whole acquire pass through it.
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { XzDecodeError } from "../../src/ffi/lzma.ts";
import { resolvePaths } from "../../src/config/paths.ts";
import { defaultConfig, type Config } from "../../src/config/schema.ts";
import { acquireImage } from "../../src/image/acquire.ts";
import { selectXzDecoder, type XzDecoderKind } from "../../src/image/xz-decoder.ts";
import { SubprocessXzDecoder, findXzTool, xzExitError, xzToolCandidates, type XzTool } from "../../src/image/xz-subprocess.ts";
import { compressXz, sha256File, writeShapedImage } from "./fixtures/shaped-image.ts";
import { startReleaseServer, type Behaviour, type Release } from "./fixtures/server.ts";

const BOARD = "generic-x86-64";
const tool = findXzTool();
let work: string;
let img: string;
let imgSha: string;
let dataBytes: number;
const xz: Record<"multi" | "single" | "cat" | "padded" | "corrupt" | "truncated" | "junk" | "text", string> = {} as never;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "havm-xzfb-"));
  img = join(work, "src.img");
  dataBytes = writeShapedImage(img, 40).dataBytes;
  imgSha = await sha256File(img);
  for (const k of Object.keys({ multi: 0, single: 0, cat: 0, padded: 0, corrupt: 0, truncated: 0, junk: 0, text: 0 })) xz[k as keyof typeof xz] = join(work, `${k}.img.xz`);
  compressXz(img, xz.multi, true);
  compressXz(img, xz.single, false);
  const multi = readFileSync(xz.multi);
  const single = readFileSync(xz.single);
  writeFileSync(xz.cat, Buffer.concat([multi, single]));
  writeFileSync(xz.padded, Buffer.concat([single, Buffer.alloc(8), multi, Buffer.alloc(4)])); // stream padding is allowed
  const bad = Buffer.from(multi);
  const mid = Math.floor(bad.length / 2);
  for (let i = 0; i < 64; i++) bad[mid + i] = bad[mid + i]! ^ 0x5a;
  writeFileSync(xz.corrupt, bad);
  writeFileSync(xz.truncated, single.subarray(0, single.length - 100));
  writeFileSync(xz.junk, Buffer.concat([multi, Buffer.from("trailing junk after the last stream, longer than a header")]));
  writeFileSync(xz.text, "this is not xz at all, just text".repeat(10));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Live `xz` children of this process (Linux /proc). */
function xzChildren(): number[] {
  if (process.platform !== "linux") return [];
  const pids: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const m = /^\d+ \((.*)\) (\S) (\d+)/.exec(stat);
      if (m && m[1] === "xz" && Number(m[3]) === process.pid && m[2] !== "Z") pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function withDecoder<T>(kind: XzDecoderKind, f: () => T): T {
  const before = process.env.HAVM_XZ_DECODER;
  process.env.HAVM_XZ_DECODER = kind;
  try {
    return f();
  } finally {
    if (before === undefined) delete process.env.HAVM_XZ_DECODER;
    else process.env.HAVM_XZ_DECODER = before;
  }
}

/** Decode a file with the chosen decoder, in `step`-byte writes; the output bytes, or the error. */
async function decode(kind: XzDecoderKind, file: string, step = 1 << 20): Promise<Buffer | Error> {
  const input = readFileSync(file);
  const out: Buffer[] = [];
  const d = withDecoder(kind, () => selectXzDecoder()).create((c) => out.push(Buffer.from(c)), { name: file });
  try {
    for (let i = 0; i < input.length; i += step) await d.write(input.subarray(i, i + step));
    await d.finish();
    return Buffer.concat(out);
  } catch (e) {
    return e as Error;
  } finally {
    await d.close();
  }
}

describe.skipIf(!tool)("xz subprocess decoder", () => {
  test("finds XZ Utils by absolute path; relative PATH entries are never used", () => {
    expect(tool!.path.startsWith("/")).toBe(true);
    expect(tool!.version).toMatch(/^5\.\d+\.\d+$/);
    expect(xzToolCandidates({ PATH: "." })).toEqual(["/opt/homebrew/bin/xz", "/usr/local/bin/xz", "/usr/bin/xz", "/bin/xz"]);
  });

  for (const [label, key, step] of [
    ["multi-block", "multi", 1 << 20],
    ["single-block, odd chunking", "single", 77_777],
    ["concatenated streams", "cat", 1 << 20],
    ["concatenated streams with stream padding", "padded", 300_001],
  ] as const) {
    test(`${label}: the same bytes as the liblzma decoder`, async () => {
      const [viaFfi, viaXz] = await Promise.all([decode("ffi", xz[key]), decode("subprocess", xz[key], step)]);
      if (viaXz instanceof Error) throw viaXz;
      if (viaFfi instanceof Error) throw viaFfi;
      expect(viaXz.length).toBe(viaFfi.length);
      expect(Buffer.compare(viaXz, viaFfi)).toBe(0);
      const copies = key === "cat" || key === "padded" ? 2 : 1;
      expect(viaXz.length).toBe(copies * statSync(img).size);
    });
  }

  for (const [label, key, ffiCodes, xzCode] of [
    ["corrupt data", "corrupt", ["xz.corrupt"], "xz.corrupt"],
    ["truncated data", "truncated", ["xz.truncated"], "xz.truncated"],
    ["junk after the last stream", "junk", ["xz.corrupt", "xz.format", "xz.truncated"], "xz.corrupt"],
    ["not an .xz file", "text", ["xz.format"], "xz.format"],
  ] as const) {
    test(`${label}: both decoders refuse it with an XzDecodeError; no xz is left running`, async () => {
      const [viaFfi, viaXz] = await Promise.all([decode("ffi", xz[key]), decode("subprocess", xz[key])]);
      expect(viaFfi).toBeInstanceOf(XzDecodeError);
      expect(viaXz).toBeInstanceOf(XzDecodeError);
      expect(ffiCodes as readonly string[]).toContain((viaFfi as XzDecodeError).code!);
      expect((viaXz as XzDecodeError).code).toBe(xzCode);
      expect((viaXz as XzDecodeError).hint).toContain("download it again");
      expect(xzChildren()).toEqual([]);
    });
  }

  test("xz's exit status and messages map to clear errors", () => {
    expect(xzExitError(1, null, "xz: (stdin): Unexpected end of input\n", "a.xz")).toMatchObject({ code: "xz.truncated", message: expect.stringContaining("truncated") });
    expect(xzExitError(1, null, "xz: (stdin): Compressed data is corrupt\n", "a.xz").message).toBe("cannot decode a.xz: the compressed data is corrupt (LZMA_DATA_ERROR) (xz: Compressed data is corrupt)");
    const oom = xzExitError(1, null, "xz: (stdin): Cannot allocate memory\n", "a.xz");
    expect(oom).not.toBeInstanceOf(XzDecodeError); // not the file's fault: a download is kept
    expect(oom.code).toBe("xz.failed");
    expect(xzExitError(null, "SIGKILL", "", "a.xz").message).toBe("cannot decode a.xz: xz was killed by SIGKILL");
    expect(xzExitError(2, null, "xz: (stdin): Unsupported type of integrity check\n", "a.xz").message).toContain("warned");
  });

  test("writes wait for the pipe (backpressure): input never runs far ahead of the output", async () => {
    // Incompressible data, single block: xz's output trails its input closely. A slow consumer stalls xz,
    // which stops reading; without backpressure the whole input would be accepted at once.
    const rnd = join(work, "random");
    writeFileSync(rnd, randomBytes(4 << 20));
    const r = Bun.spawnSync(["sh", "-c", 'xz -0 -T1 -c -- "$1" > "$1.xz"', "sh", rnd]);
    expect(r.exitCode).toBe(0);
    const input = readFileSync(`${rnd}.xz`);
    let outBytes = 0;
    let maxAhead = 0;
    const d = new SubprocessXzDecoder(tool!, (c) => {
      outBytes += c.length;
      Bun.sleepSync(1);
    });
    try {
      for (let i = 0; i < input.length; i += 1 << 20) {
        await d.write(input.subarray(i, i + (1 << 20)));
        maxAhead = Math.max(maxAhead, Math.min(i + (1 << 20), input.length) - outBytes);
      }
      await d.finish();
    } finally {
      await d.close();
    }
    expect(outBytes).toBe(4 << 20);
    expect(maxAhead).toBeLessThan(2 << 20);
  });

  test("abort kills xz; the pending write rejects with the abort reason", async () => {
    const ctl = new AbortController();
    const d = new SubprocessXzDecoder(tool!, () => Bun.sleepSync(5), { signal: ctl.signal });
    expect(alive(d.pid)).toBe(true);
    const input = readFileSync(xz.single);
    const writing = (async () => {
      for (let i = 0; i < input.length; i += 1 << 16) await d.write(input.subarray(i, i + (1 << 16)));
    })();
    setTimeout(() => ctl.abort(new Error("user pressed ^C")), 30);
    expect(await writing.catch((e) => e.message)).toBe("user pressed ^C");
    await d.close();
    expect(alive(d.pid)).toBe(false);
    expect(xzChildren()).toEqual([]);
  });

  test("a failing output (disk full) stops xz and is the error reported", async () => {
    const d = new SubprocessXzDecoder(tool!, () => {
      throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
    });
    const input = readFileSync(xz.multi);
    const err = await (async () => {
      for (let i = 0; i < input.length; i += 1 << 20) await d.write(input.subarray(i, i + (1 << 20)));
      await d.finish();
    })().catch((e) => e);
    await d.close();
    expect(err.code).toBe("ENOSPC");
    expect(alive(d.pid)).toBe(false);
  });

  test("close() in the middle kills xz and delivers nothing more", async () => {
    let chunks = 0;
    const d = new SubprocessXzDecoder(tool!, () => chunks++);
    await d.write(readFileSync(xz.multi).subarray(0, 1 << 20));
    await d.close();
    const after = chunks;
    await Bun.sleep(20);
    expect(chunks).toBe(after);
    expect(alive(d.pid)).toBe(false);
    await d.close(); // idempotent
    await expect(d.write(new Uint8Array(1))).rejects.toThrow(/after close/);
  });
});

describe("selectXzDecoder", () => {
  const lib = () => ({ path: "/usr/lib/liblzma.so.5", version: "5.4.1", multithreaded: true });
  const noLib = () => {
    throw new Error("liblzma (the .xz library) could not be loaded");
  };
  const fakeTool: XzTool = { path: "/usr/bin/xz", version: "5.4.1", threads: true };

  test("liblzma when it loads; else the xz tool, saying why; else an error that says what to install", () => {
    expect(selectXzDecoder({ env: {}, loadLiblzma: lib, findXz: () => fakeTool }).kind).toBe("ffi");
    const fallback = selectXzDecoder({ env: {}, loadLiblzma: noLib, findXz: () => fakeTool });
    expect(fallback.kind).toBe("subprocess");
    expect(fallback.reason).toContain("liblzma unavailable");
    expect(fallback.reason).toContain("/usr/bin/xz");
    const none = (() => {
      try {
        return selectXzDecoder({ env: {}, loadLiblzma: noLib, findXz: () => undefined });
      } catch (e) {
        return e;
      }
    })() as { code: string; hint: string; exitCode: number };
    expect(none.code).toBe("xz.unavailable");
    expect(none.hint).toContain("xz-utils");
    expect(none.hint).toContain("brew install xz");
    expect(none.exitCode).toBe(4);
  });

  test("HAVM_XZ_DECODER forces a decoder and never falls back silently", () => {
    expect(selectXzDecoder({ env: { HAVM_XZ_DECODER: "subprocess" }, loadLiblzma: lib, findXz: () => fakeTool }).kind).toBe("subprocess");
    expect(selectXzDecoder({ env: { HAVM_XZ_DECODER: "ffi" }, loadLiblzma: lib, findXz: () => fakeTool }).kind).toBe("ffi");
    expect(() => selectXzDecoder({ env: { HAVM_XZ_DECODER: "ffi" }, loadLiblzma: noLib, findXz: () => fakeTool })).toThrow(/could not be loaded/);
    expect(() => selectXzDecoder({ env: { HAVM_XZ_DECODER: "subprocess" }, loadLiblzma: lib, findXz: () => undefined })).toThrow(/no xz tool/);
    expect(() => selectXzDecoder({ env: { HAVM_XZ_DECODER: "wasm" }, loadLiblzma: lib, findXz: () => fakeTool })).toThrow(/must be "ffi" or "subprocess"/);
  });
});

describe.skipIf(!tool)("acquireImage through the xz subprocess", () => {
  const saved = process.env.HAVM_XZ_DECODER;
  beforeAll(() => {
    process.env.HAVM_XZ_DECODER = "subprocess";
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.HAVM_XZ_DECODER;
    else process.env.HAVM_XZ_DECODER = saved;
  });
  afterEach(() => expect(xzChildren()).toEqual([]));

  function setup(releases: Release[], behaviour: Behaviour = {}, haos: Partial<Config["haos"]> = {}) {
    const server = startReleaseServer({ stable: { [BOARD]: "17.1" } }, releases, behaviour);
    const home = mkdtempSync(join(work, "home-"));
    const paths = resolvePaths({ HOME: home }, "linux");
    const config = defaultConfig();
    Object.assign(config.haos, server.config(), haos);
    return { server, paths, config, [Symbol.dispose]: () => server.stop() };
  }
  const release = async (file: string, digest?: string | null): Promise<Release> => ({
    version: "17.1",
    board: BOARD,
    file,
    digest: digest === undefined ? `sha256:${await sha256File(file)}` : digest,
  });
  const cacheNames = (cacheDir: string) => (existsSync(cacheDir) ? readdirSync(cacheDir).sort() : []);

  test("download + sha256 + decode + sparse write: the same image as the liblzma path, allocated within 5% of its data", async () => {
    using s = setup([await release(xz.multi)]);
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect(r).toMatchObject({ verified: true, source: "download" });
    expect(await sha256File(r.imagePath)).toBe(imgSha);
    const allocated = statSync(r.imagePath).blocks * 512;
    expect(Math.abs(allocated - dataBytes) / dataBytes).toBeLessThan(0.05);

    using f = setup([await release(xz.multi)]);
    const viaFfi = await withDecoder("ffi", () => acquireImage({ config: f.config, paths: f.paths, arch: "x86_64" }));
    expect(Buffer.compare(readFileSync(r.imagePath), readFileSync(viaFfi.imagePath))).toBe(0);
  });

  test("single-block local file and concatenated streams", async () => {
    using s = setup([await release(xz.cat)]);
    s.config.haos.image = xz.single;
    const local = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect(await sha256File(local.imagePath)).toBe(imgSha);
    s.config.haos.image = null as never;
    delete (s.config.haos as Partial<Config["haos"]>).image;
    const cat = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    const h = new Bun.CryptoHasher("sha256");
    const orig = readFileSync(img);
    expect(await sha256File(cat.imagePath)).toBe(h.update(orig).update(orig).digest("hex"));
  });

  for (const [label, key, code] of [
    ["corrupt", "corrupt", "xz.corrupt"],
    ["truncated", "truncated", "xz.truncated"],
    ["junk after the end", "junk", "xz.corrupt"],
  ] as const) {
    test(`${label} xz: a clear error, nothing left behind`, async () => {
      using s = setup([await release(xz[key], null)]);
      const err = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" }).catch((e) => e);
      expect(err.code).toBe(code);
      expect(err.message).toContain("deleted the downloaded file");
      expect(cacheNames(s.paths.cacheDir)).toEqual([]);
    });
  }

  test("a digest mismatch deletes the partial files; nothing is renamed", async () => {
    using s = setup([await release(xz.multi, `sha256:${"ab".repeat(32)}`)]);
    const err = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" }).catch((e) => e);
    expect(err.code).toBe("download.digest");
    expect(cacheNames(s.paths.cacheDir)).toEqual([]);
  });

  test("abort mid-download kills xz and leaves only the resumable part", async () => {
    using s = setup([await release(xz.multi)], { throttleMs: 5 });
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(new Error("interrupted")), 150);
    const err = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64", signal: ctl.signal }).catch((e) => e);
    expect(err.message).toBe("interrupted");
    expect(cacheNames(s.paths.cacheDir)).toEqual(["haos_generic-x86-64-17.1.img.xz.part"]);
  });
});
