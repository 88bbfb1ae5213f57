import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acquireImage, imageStats } from "../../src/image/acquire.ts";
import { resolvePaths, type HavmPaths } from "../../src/config/paths.ts";
import { defaultConfig, type Config } from "../../src/config/schema.ts";
import { ensureNativeLibrary } from "../support/native.ts";
import { compressXz, sha256File, writeShapedImage } from "./fixtures/shaped-image.ts";
import { startReleaseServer, type Behaviour, type Release } from "./fixtures/server.ts";

const BOARD = "generic-x86-64";
let work: string;
let img: string; // the raw image every release decodes to
let imgSha: string;
let dataBytes: number;
let xzMulti: string;
let xzMultiSha: string;
let xzSingle: string;
let xzSingleSha: string;

beforeAll(async () => {
  ensureNativeLibrary();
  work = mkdtempSync(join(tmpdir(), "havm-acquire-"));
  img = join(work, "src.img");
  dataBytes = writeShapedImage(img, 40).dataBytes;
  imgSha = await sha256File(img);
  xzMulti = join(work, "multi.img.xz");
  xzSingle = join(work, "single.img.xz");
  compressXz(img, xzMulti, true);
  compressXz(img, xzSingle, false);
  xzMultiSha = await sha256File(xzMulti);
  xzSingleSha = await sha256File(xzSingle);
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

function setup(releases: Release[], behaviour: Behaviour = {}, haos: Partial<Config["haos"]> = {}) {
  const server = startReleaseServer({ stable: { [BOARD]: "17.1", "generic-aarch64": "17.1" }, beta: { [BOARD]: "17.2.rc1" } }, releases, behaviour);
  const home = mkdtempSync(join(work, "home-"));
  const paths: HavmPaths = resolvePaths({ HOME: home }, "linux");
  const config = defaultConfig();
  Object.assign(config.haos, server.config(), haos);
  return { server, paths, config, [Symbol.dispose]: () => server.stop() };
}

const stable = (extra: Partial<Release> = {}): Release => ({ version: "17.1", board: BOARD, file: xzMulti, digest: `sha256:${xzMultiSha}`, ...extra });
const fast = { stallTimeoutMs: 400, retryDelayMs: 10, maxRetries: 3 };

function cacheNames(paths: HavmPaths): string[] {
  return existsSync(paths.cacheDir) ? readdirSync(paths.cacheDir).sort() : [];
}

describe("acquireImage", () => {
  test("stable channel: resolves, downloads, verifies, decodes sparsely; second run is a cache hit", async () => {
    using s = setup([stable()]);
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64", download: fast });
    expect(r).toMatchObject({ version: "17.1", board: BOARD, verified: true, source: "download" });
    expect(r.downloadedBytes).toBe(statSync(xzMulti).size);
    expect(r.imagePath).toBe(join(s.paths.cacheDir, "haos_generic-x86-64-17.1.img"));
    expect(await sha256File(r.imagePath)).toBe(imgSha);
    // sparse: allocated within 5% of the non-zero content
    const allocated = statSync(r.imagePath).blocks * 512;
    expect(Math.abs(allocated - dataBytes) / dataBytes).toBeLessThan(0.05);
    expect(cacheNames(s.paths)).toEqual(["haos_generic-x86-64-17.1.img", "haos_generic-x86-64-17.1.img.xz", "haos_generic-x86-64-17.1.img.xz.sha256"]);
    expect(s.server.requests.map((q) => q.path)).toEqual(["/version/stable.json", "/api/releases/tags/17.1", "/download/17.1/haos_generic-x86-64-17.1.img.xz"]);

    const again = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect(again).toMatchObject({ source: "cache", verified: true, downloadedBytes: 0, imagePath: r.imagePath });
    expect(s.server.requests.filter((q) => q.path.startsWith("/download/")).length).toBe(1);
    expect(imageStats.cacheHitsTotal).toBeGreaterThan(0);
    expect(imageStats.decodedBytesTotal).toBeGreaterThan(0);
  });

  test("pre-release channel reads beta.json; aarch64 picks the aarch64 board", async () => {
    using s = setup(
      [
        { version: "17.2.rc1", board: BOARD, file: xzSingle, digest: `sha256:${xzSingleSha}` },
        { version: "17.1", board: "generic-aarch64", file: xzSingle, digest: `sha256:${xzSingleSha}` },
      ],
      {},
      { release_channel: "pre-release" },
    );
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect(r).toMatchObject({ version: "17.2.rc1", verified: true });
    expect(s.server.requests[0]!.path).toBe("/version/beta.json");
    expect(await sha256File(r.imagePath)).toBe(imgSha);

    s.config.haos.release_channel = "stable";
    const arm = await acquireImage({ config: s.config, paths: s.paths, arch: "aarch64" });
    expect(arm).toMatchObject({ version: "17.1", board: "generic-aarch64" });
    expect(arm.imagePath.endsWith("haos_generic-aarch64-17.1.img")).toBe(true);
  });

  test("a pinned version asks no channel", async () => {
    using s = setup([stable({ version: "16.3" })], {}, { version: "16.3" });
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect(r.version).toBe("16.3");
    expect(s.server.requests.some((q) => q.path.includes("/version/"))).toBe(false);
  });

  test("a dropped connection is resumed with Range within the same run", async () => {
    const size = statSync(xzMulti).size;
    using s = setup([stable()], { interrupt: (i) => (i === 0 ? { after: Math.floor(size / 3), how: "drop" } : undefined) });
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64", download: fast });
    expect(r.verified).toBe(true);
    expect(await sha256File(r.imagePath)).toBe(imgSha);
    const dls = s.server.requests.filter((q) => q.path.startsWith("/download/"));
    expect(dls.length).toBe(2);
    expect(dls[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(Number(/\d+/.exec(dls[1]!.range!)![0])).toBeGreaterThan(0);
  });

  test("a partial download left by an earlier run is resumed, re-hashed and re-decoded", async () => {
    using s = setup([stable()]);
    const size = statSync(xzMulti).size;
    const have = Math.floor(size * 0.6);
    mkdirSync(s.paths.cacheDir, { recursive: true });
    writeFileSync(join(s.paths.cacheDir, "haos_generic-x86-64-17.1.img.xz.part"), (await Bun.file(xzMulti).bytes()).subarray(0, have));
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect({ verified: r.verified, downloadedBytes: r.downloadedBytes }).toEqual({ verified: true, downloadedBytes: size - have });
    expect(s.server.requests.find((q) => q.path.startsWith("/download/"))!.range).toBe(`bytes=${have}-`);
    expect(await sha256File(r.imagePath)).toBe(imgSha);
  });

  test("a server that ignores Range still gives the right file", async () => {
    const size = statSync(xzMulti).size;
    using s = setup([stable()], { ignoreRange: true, interrupt: (i) => (i === 0 ? { after: Math.floor(size / 2), how: "drop" } : undefined) });
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64", download: fast });
    expect(await sha256File(r.imagePath)).toBe(imgSha);
    expect(r.verified).toBe(true);
  });

  test("a stalled connection times out and the download resumes", async () => {
    const size = statSync(xzMulti).size;
    using s = setup([stable()], { interrupt: (i) => (i === 0 ? { after: Math.floor(size / 4), how: "stall" } : undefined) });
    const t = performance.now();
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64", download: fast });
    expect(performance.now() - t).toBeGreaterThan(fast.stallTimeoutMs);
    expect(await sha256File(r.imagePath)).toBe(imgSha);
    expect(s.server.requests.filter((q) => q.path.startsWith("/download/"))[1]!.range).toMatch(/^bytes=[1-9]\d*-$/);
  });

  test("a server that always stalls fails with a clear error and keeps the part for later", async () => {
    using s = setup([stable()], { interrupt: (i) => ({ after: i === 0 ? 1000 : 0, how: "stall" }) });
    const err = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64", download: { stallTimeoutMs: 200, retryDelayMs: 5, maxRetries: 1 } }).catch((e) => e);
    expect(err.code).toBe("download.failed");
    expect(err.message).toContain("no data for");
    expect(err.hint).toContain("resumed");
    expect(cacheNames(s.paths)).toEqual(["haos_generic-x86-64-17.1.img.xz.part"]);
    expect(statSync(join(s.paths.cacheDir, "haos_generic-x86-64-17.1.img.xz.part")).size).toBe(1000);
  });

  test("a digest mismatch deletes the partial files and says so", async () => {
    using s = setup([stable({ digest: `sha256:${"ab".repeat(32)}` })]);
    const err = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" }).catch((e) => e);
    expect(err.code).toBe("download.digest");
    expect(err.message).toContain("deleted");
    expect(err.message).toContain(xzMultiSha);
    expect(cacheNames(s.paths)).toEqual([]);
  });

  test("unverifiable: best-effort continues unverified, strict refuses", async () => {
    using s = setup([stable()], { apiStatus: 403 });
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect(r).toMatchObject({ verified: false, source: "download" });
    expect(await sha256File(r.imagePath)).toBe(imgSha);
    rmSync(s.paths.cacheDir, { recursive: true });
    s.config.haos.verify = "strict";
    const err = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" }).catch((e) => e);
    expect(err.code).toBe("image.unverified");
    expect(err.message).toContain("403");
  });

  test("corrupt xz: clear error, nothing left behind", async () => {
    const bad = join(work, "corrupt.img.xz");
    const bytes = new Uint8Array(await Bun.file(xzMulti).arrayBuffer());
    const mid = Math.floor(bytes.length / 2);
    for (let i = 0; i < 64; i++) bytes[mid + i] = bytes[mid + i]! ^ 0x5a;
    writeFileSync(bad, bytes);
    using s = setup([stable({ file: bad, digest: null })]);
    const err = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" }).catch((e) => e);
    expect(err.code).toBe("xz.corrupt");
    expect(err.message).toContain("corrupt");
    expect(cacheNames(s.paths)).toEqual([]);
  });

  test("truncated xz: clear error, nothing left behind", async () => {
    const cut = join(work, "truncated.img.xz");
    writeFileSync(cut, (await Bun.file(xzSingle).bytes()).subarray(0, statSync(xzSingle).size - 100));
    using s = setup([stable({ file: cut, digest: null })]);
    const err = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" }).catch((e) => e);
    if (err.code !== "xz.truncated") console.error(err);
    expect(err.code).toBe("xz.truncated");
    expect(err.message).toContain("truncated");
    expect(cacheNames(s.paths)).toEqual([]);
  });

  test("concatenated xz streams decode to the concatenation", async () => {
    const cat = join(work, "cat.img.xz");
    writeFileSync(cat, Buffer.concat([await Bun.file(xzMulti).bytes(), await Bun.file(xzSingle).bytes()]));
    using s = setup([stable({ file: cat, digest: `sha256:${await sha256File(cat)}` })]);
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect(statSync(r.imagePath).size).toBe(2 * statSync(img).size);
    const h = new Bun.CryptoHasher("sha256");
    const orig = new Uint8Array(await Bun.file(img).arrayBuffer());
    h.update(orig).update(orig);
    expect(await sha256File(r.imagePath)).toBe(h.digest("hex"));
  });

  test("a missing release is a clear 404 error", async () => {
    using s = setup([stable()], {}, { version: "99.9" });
    const err = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64", download: fast }).catch((e) => e);
    expect(err.code).toBe("download.notfound");
    expect(err.hint).toContain("haos.version");
  });

  test("haos.image: a local .img is used in place, a local .img.xz is decoded into the cache", async () => {
    using s = setup([]);
    s.config.haos.image = img;
    const plain = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect(plain).toMatchObject({ imagePath: img, source: "local", verified: false });
    s.config.haos.image = xzSingle;
    const dec = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect(dec.source).toBe("local");
    expect(dec.imagePath.startsWith(s.paths.cacheDir)).toBe(true);
    expect(await sha256File(dec.imagePath)).toBe(imgSha);
    expect(s.server.requests).toEqual([]);
  });

  test("haos.image as a URL downloads and decodes it", async () => {
    using s = setup([stable()]);
    s.config.haos.image = `${s.server.url}/download/17.1/haos_generic-x86-64-17.1.img.xz`;
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect(r).toMatchObject({ source: "download", version: "17.1", verified: false });
    expect(await sha256File(r.imagePath)).toBe(imgSha);
  });
});

describe("acquireImage from a cached download", () => {
  test("a cached .img.xz without its .img is decoded again, verified by its sidecar, without the API", async () => {
    using s = setup([stable()], { apiStatus: 500 }, { version: "17.1", verify: "strict" });
    mkdirSync(s.paths.cacheDir, { recursive: true });
    const xzPath = join(s.paths.cacheDir, "haos_generic-x86-64-17.1.img.xz");
    writeFileSync(xzPath, await Bun.file(xzMulti).bytes());
    writeFileSync(xzPath + ".sha256", `${xzMultiSha}  haos_generic-x86-64-17.1.img.xz\n`);
    const r = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" });
    expect(r).toMatchObject({ source: "cache", verified: true });
    expect(await sha256File(r.imagePath)).toBe(imgSha);
    expect(s.server.requests).toEqual([]);
  });

  test("a cached .img.xz that does not match its digest is deleted", async () => {
    using s = setup([stable()], {}, { version: "17.1" });
    mkdirSync(s.paths.cacheDir, { recursive: true });
    const xzPath = join(s.paths.cacheDir, "haos_generic-x86-64-17.1.img.xz");
    writeFileSync(xzPath, await Bun.file(xzSingle).bytes()); // valid xz, wrong file (size differs too)
    const err = await acquireImage({ config: s.config, paths: s.paths, arch: "x86_64" }).catch((e) => e);
    expect(err.code).toMatch(/^download\.(digest|size)$/);
    expect(err.message).toContain("deleted");
    expect(cacheNames(s.paths)).toEqual([]);
  });
});
