// From nothing to a decoded, verified HAOS image in the cache, in one streaming pass:
// fetch -> sha256 -> .xz decode (liblzma, multi-threaded; an `xz` child where liblzma cannot load, see
// xz-decoder.ts) -> sparse write. The compressed file is kept as `haos_<board>-<version>.img.xz` and the
// decoded one as `haos_<board>-<version>.img` (as the original tool does). Nothing is renamed into place
// before the stream ended cleanly and the digest matched.
import { closeSync, fdatasync, fstatSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, truncateSync, writeSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { Config } from "../config/schema.ts";
import type { HavmPaths } from "../config/paths.ts";
import { expandHome } from "../config/paths.ts";
import { formatSize } from "../config/units.ts";
import { XzDecodeError } from "../ffi/lzma.ts";
import { HavmError, ExitCode, errnoCode, errorMessage, inputError } from "../util/errors.ts";
import { exists, fsyncDir, tempPathFor } from "../util/fs.ts";
import { log } from "../util/log.ts";
import { createProgress } from "../util/progress.ts";
import { PART_SUFFIX, VERIFIED_SUFFIX, claimPartial, removeStaleTemps } from "./cache.ts";
import { RangeNotSatisfiableError, download, streamFile } from "./download.ts";
import { selectXzDecoder } from "./xz-decoder.ts";
import {
  type Arch,
  type AssetInfo,
  type Board,
  assetInfoFromRelease,
  assetName,
  assetUrl,
  boardFor,
  channelUrl,
  compareVersions,
  hostArch,
  releaseApiUrl,
  versionFromAssetName,
  versionFromChannel,
} from "./release.ts";

export interface AcquireOptions {
  config: Config;
  paths: HavmPaths;
  arch?: "x86_64" | "aarch64";
  fetch?: typeof fetch;
  signal?: AbortSignal;
  /** Download tuning (tests shorten these). */
  download?: { stallTimeoutMs?: number; retryDelayMs?: number; maxRetries?: number };
}

export interface AcquiredImage {
  imagePath: string;
  version: string;
  board: string;
  verified: boolean;
  downloadedBytes: number;
  source: "cache" | "download" | "local";
}

/** Counters for the metrics exporter (monotonic within one process). */
export const imageStats = {
  downloadBytesTotal: 0,
  downloadsTotal: 0,
  downloadRetriesTotal: 0,
  digestMismatchesTotal: 0,
  decodedBytesTotal: 0,
  decodeSeconds: 0,
  cacheHitsTotal: 0,
};

const METADATA_TIMEOUT_MS = 15_000;
/** Zero-detection granularity for the sparse writer. */
const ZERO_BLOCK = 64 * 1024;
const ZEROS = Buffer.alloc(ZERO_BLOCK);
const FLUSH_EVERY = 64 * 1024 * 1024;

export async function acquireImage(opts: AcquireOptions): Promise<AcquiredImage> {
  const { config, paths } = opts;
  const fetchFn = opts.fetch ?? fetch;
  const board = boardFor(opts.arch ?? hostArch());
  mkdirSync(paths.cacheDir, { recursive: true });
  const stale = removeStaleTemps(paths.cacheDir);
  if (stale.length > 0) log.debug("removed leftovers of an interrupted run", { files: stale });

  if (config.haos.image) return acquireCustom(config.haos.image, board, opts, fetchFn);

  const version = config.haos.version ?? (await resolveChannelVersion(config, board, paths.cacheDir, fetchFn, opts.signal));
  const xzPath = join(paths.cacheDir, assetName(board, version));
  const imgPath = xzPath.slice(0, -".xz".length);

  if (exists(imgPath)) {
    imageStats.cacheHitsTotal++;
    log.debug("using cached image", { image: imgPath });
    return { imagePath: imgPath, version, board, verified: exists(xzPath + VERIFIED_SUFFIX), downloadedBytes: 0, source: "cache" };
  }

  // A download verified earlier carries its digest in a sidecar: no need to ask the API again.
  const known = readVerifiedDigest(xzPath);
  const expected = known ? { sha256: known } : await lookupAsset(config, version, basename(xzPath), fetchFn, opts.signal);

  if (exists(xzPath)) {
    // Downloaded before, decoded image gone (deleted, or a crash between the two renames): decode again.
    log.info("decoding cached download", { file: xzPath });
    const r = await streamPass({ localXz: xzPath, deleteSourceOnCorruption: true, imgPath, expected, label: "Decoding", signal: opts.signal });
    imageStats.cacheHitsTotal++;
    return { imagePath: imgPath, version, board, verified: r.verified, downloadedBytes: 0, source: "cache" };
  }

  const url = assetUrl(config.haos.download_url, board, version);
  log.info("downloading Home Assistant OS", { version, board, url, size: expected?.size !== undefined ? formatSize(expected.size) : "unknown" });
  const run = () => streamPass({ url, xzFinal: xzPath, imgPath, expected, label: `HAOS ${version}`, fetch: fetchFn, signal: opts.signal, tuning: opts.download });
  let r: PassResult;
  try {
    r = await run();
  } catch (e) {
    if (!(e instanceof RangeNotSatisfiableError)) throw e;
    log.warn("the server cannot resume this download; starting over", { url });
    rmSync(xzPath + PART_SUFFIX, { force: true });
    r = await run();
  }
  imageStats.downloadsTotal++;
  return { imagePath: imgPath, version, board, verified: r.verified, downloadedBytes: r.downloaded, source: "download" };
}

// ---------------------------------------------------------------------------------------------------------
// Version and asset metadata

function readVerifiedDigest(xzPath: string): string | undefined {
  if (!exists(xzPath)) return undefined;
  try {
    const m = /^([0-9a-f]{64})\b/.exec(readFileSync(xzPath + VERIFIED_SUFFIX, "utf8"));
    return m?.[1];
  } catch {
    return undefined;
  }
}

async function fetchJson(url: string, fetchFn: typeof fetch, signal: AbortSignal | undefined): Promise<unknown> {
  const timeout = AbortSignal.timeout(METADATA_TIMEOUT_MS);
  const res = await fetchFn(url, {
    headers: { accept: "application/json, application/vnd.github+json" },
    signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
  });
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    throw new Error(`HTTP ${res.status}`);
  }
  return await res.json();
}

async function resolveChannelVersion(config: Config, board: Board, cacheDir: string, fetchFn: typeof fetch, signal?: AbortSignal): Promise<string> {
  const url = channelUrl(config.haos.version_url, config.haos.release_channel);
  try {
    const version = versionFromChannel(await fetchJson(url, fetchFn, signal), board, url);
    log.debug("resolved version", { channel: config.haos.release_channel, version });
    return version;
  } catch (e) {
    signal?.throwIfAborted();
    // Offline start of an installed VM: the newest image already in the cache will do.
    const cached = newestCachedVersion(cacheDir, board);
    if (cached) {
      log.warn("cannot reach the version service; using the newest cached image", { url, reason: errorMessage(e), version: cached });
      return cached;
    }
    if (e instanceof HavmError) throw e;
    throw new HavmError(`cannot find out the current Home Assistant OS version: ${url}: ${errorMessage(e)}`, {
      hint: "Check the network connection, or pin a version with haos.version in the config.",
      code: "image.version",
      cause: e,
    });
  }
}

function newestCachedVersion(cacheDir: string, board: Board): string | undefined {
  let names: string[] = [];
  try {
    names = readdirSync(cacheDir);
  } catch {
    return undefined;
  }
  const versions = names.filter((n) => n.endsWith(".img")).map((n) => versionFromAssetName(n, board)).filter((v): v is string => v !== undefined);
  return versions.sort(compareVersions).at(-1);
}

/** Size and digest from the releases API. Outages and rate limits degrade to "unverified" unless strict. */
async function lookupAsset(config: Config, version: string, name: string, fetchFn: typeof fetch, signal?: AbortSignal): Promise<AssetInfo | undefined> {
  const url = releaseApiUrl(config.haos.releases_api, version);
  let info: AssetInfo | undefined;
  let problem: string | undefined;
  try {
    info = assetInfoFromRelease(await fetchJson(url, fetchFn, signal), name);
    if (!info) problem = `the release lists no ${name}`;
    else if (!info.sha256) problem = "the release publishes no sha256 digest for it";
  } catch (e) {
    signal?.throwIfAborted();
    problem = `the releases API did not answer (${errorMessage(e)})`;
  }
  if (problem) {
    if (config.haos.verify === "strict") {
      throw new HavmError(`cannot verify ${name}: ${problem}`, {
        hint: "Try again later (the GitHub API may be rate limiting), or set haos.verify: best-effort.",
        code: "image.unverified",
      });
    }
    log.warn("the image will not be verified", { file: name, reason: problem });
  }
  return info;
}

// ---------------------------------------------------------------------------------------------------------
// haos.image: a local file or a URL, .img or .img.xz

async function acquireCustom(image: string, board: Board, opts: AcquireOptions, fetchFn: typeof fetch): Promise<AcquiredImage> {
  const cacheDir = opts.paths.cacheDir;
  const isUrl = /^https?:\/\//i.test(image);
  const name = isUrl ? basename(decodeURIComponent(new URL(image).pathname)) : basename(image);
  const compressed = name.toLowerCase().endsWith(".xz");
  const plainName = compressed ? name.slice(0, -3) : name;
  const version = versionFromAssetName(plainName, board) ?? /-(\d[0-9A-Za-z.+-]*)\.img$/.exec(plainName)?.[1] ?? "custom";
  if (!/\.img$/i.test(plainName)) {
    throw inputError(`haos.image must name an .img or .img.xz file, not "${image}"`, "Use the raw disk image of Home Assistant OS (e.g. haos_generic-x86-64-17.1.img.xz).");
  }
  const key = new Bun.CryptoHasher("sha256");

  if (!isUrl) {
    const path = resolve(expandHome(image, opts.paths.home));
    let st;
    try {
      st = statSync(path);
    } catch {
      throw inputError(`haos.image: ${path} does not exist`, "Fix the path in the config, or remove haos.image to download the release.");
    }
    if (!compressed) return { imagePath: path, version, board, verified: false, downloadedBytes: 0, source: "local" };
    key.update(`${path}\0${st.size}\0${st.mtimeMs}`);
    const imgPath = join(cacheDir, `local-${key.digest("hex").slice(0, 12)}-${plainName}`);
    if (!exists(imgPath)) await streamPass({ localXz: path, imgPath, label: "Decoding", signal: opts.signal });
    return { imagePath: imgPath, version, board, verified: false, downloadedBytes: 0, source: "local" };
  }

  key.update(image);
  const prefix = `url-${key.digest("hex").slice(0, 12)}-`;
  const imgPath = join(cacheDir, prefix + plainName);
  if (exists(imgPath)) {
    imageStats.cacheHitsTotal++;
    return { imagePath: imgPath, version, board, verified: false, downloadedBytes: 0, source: "cache" };
  }
  log.info("downloading the configured image", { url: image });
  const r = await streamPass({
    url: image,
    xzFinal: compressed ? join(cacheDir, prefix + name) : undefined,
    imgPath,
    label: "Image",
    fetch: fetchFn,
    signal: opts.signal,
    tuning: opts.download,
    raw: !compressed,
  });
  imageStats.downloadsTotal++;
  return { imagePath: imgPath, version, board, verified: false, downloadedBytes: r.downloaded, source: "download" };
}

// ---------------------------------------------------------------------------------------------------------
// The streaming pass

interface PassInput {
  /** Download from here... */
  url?: string;
  /** ...keeping the compressed file here (resumable via <xzFinal>.part). Absent: nothing kept, no resume. */
  xzFinal?: string;
  /** ...or read this local .xz file. */
  localXz?: string;
  /** The local .xz is havm's own cache: delete it when it turns out corrupt. */
  deleteSourceOnCorruption?: boolean;
  /** The decoded image's final path. */
  imgPath: string;
  /** The input is a raw .img, not .xz. */
  raw?: boolean;
  expected?: AssetInfo;
  label: string;
  fetch?: typeof fetch;
  signal?: AbortSignal;
  tuning?: AcquireOptions["download"];
}

interface PassResult {
  sha256?: string;
  verified: boolean;
  downloaded: number;
}

/** Starts fdatasync on libuv's thread pool every FLUSH_EVERY bytes, so a final fsync has little left to do. */
class BackgroundFlush {
  private pending = 0;
  private inFlight: Promise<void> | undefined;
  constructor(private readonly fd: number) {}

  wrote(bytes: number): void {
    this.pending += bytes;
    if (this.pending < FLUSH_EVERY || this.inFlight) return;
    this.pending = 0;
    this.inFlight = new Promise<void>((done) => fdatasync(this.fd, () => done())).finally(() => (this.inFlight = undefined));
  }

  /** Wait for a flush in flight (before fsync or close). */
  async settle(): Promise<void> {
    await this.inFlight;
  }
}

/**
 * Writes a byte stream sequentially, leaving all-zero blocks as holes; sets the full size at the end.
 * Data is flushed to disk in the background (fdatasync on libuv's thread pool every FLUSH_EVERY bytes) so the
 * final fsync, which must happen before the rename, has little left to do.
 */
class SparseWriter {
  pos = 0;
  dataBytes = 0;
  private readonly flush: BackgroundFlush;
  constructor(private readonly fd: number) {
    this.flush = new BackgroundFlush(fd);
  }

  write(buf: Uint8Array): void {
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.length);
    let i = 0;
    while (i < b.length) {
      let len = Math.min(ZERO_BLOCK, b.length - i);
      if (b.subarray(i, i + len).equals(len === ZERO_BLOCK ? ZEROS : ZEROS.subarray(0, len))) {
        i += len;
        continue;
      }
      const start = i;
      i += len;
      while (i < b.length) {
        len = Math.min(ZERO_BLOCK, b.length - i);
        if (b.subarray(i, i + len).equals(len === ZERO_BLOCK ? ZEROS : ZEROS.subarray(0, len))) break;
        i += len;
      }
      let off = start;
      while (off < i) off += writeSync(this.fd, b, off, i - off, this.pos + off);
      this.dataBytes += i - start;
      this.flush.wrote(i - start);
    }
    this.pos += b.length;
  }

  async finish(): Promise<void> {
    await this.flush.settle();
    ftruncateSync(this.fd, this.pos);
    fsyncSync(this.fd);
  }

  /** Wait for a background flush before the descriptor is closed. */
  async settle(): Promise<void> {
    await this.flush.settle();
  }
}

class DigestMismatchError extends HavmError {}

async function streamPass(p: PassInput): Promise<PassResult> {
  const name = basename(p.xzFinal ?? p.localXz ?? p.imgPath);
  // The decoder first: if none is available, nothing has been created yet.
  const decoder = p.raw ? undefined : selectXzDecoder().create((out) => writer.write(out), { name, signal: p.signal });
  const tmpImg = tempPathFor(p.imgPath);
  let imgFd: number;
  try {
    imgFd = openSync(tmpImg, "wx", 0o644);
  } catch (e) {
    await decoder?.close();
    throw e;
  }
  const writer = new SparseWriter(imgFd);
  // Hash only what can be checked or recorded: a download (its digest may be published, and is kept in a
  // sidecar when it matched) or a cached file with a known digest. A user's local .xz needs none.
  const hasher = p.url || p.expected?.sha256 ? new Bun.CryptoHasher("sha256") : undefined;
  let decodeMs = 0;
  const consume = async (chunk: Uint8Array): Promise<void> => {
    hasher?.update(chunk);
    if (!decoder) return writer.write(chunk);
    const t = performance.now();
    await decoder.write(chunk);
    decodeMs += performance.now() - t;
  };
  const part = p.xzFinal ? p.xzFinal + PART_SUFFIX : undefined;
  let partFd: number | undefined;
  let partFlush: BackgroundFlush | undefined;
  let release: (() => void) | undefined;
  let downloaded = 0;
  let imgClosed = false;
  try {
    if (p.localXz) {
      const total = statSync(p.localXz).size;
      const progress = createProgress(p.label, { total });
      let done = 0;
      await streamFile(p.localXz, async (c) => {
        p.signal?.throwIfAborted();
        await consume(c);
        done += c.length;
        progress.update(done);
      });
      progress.finish();
    } else if (p.url) {
      let offset = 0;
      if (part && p.xzFinal) {
        release = claimPartial(p.xzFinal);
        offset = exists(part) ? statSync(part).size : 0;
        if (p.expected?.size !== undefined && offset > p.expected.size) {
          truncateSync(part, 0);
          offset = 0;
        }
        if (offset > 0) {
          log.info("resuming an interrupted download", { file: basename(part), have: formatSize(offset) });
          await streamFile(part, consume); // re-hash and re-decode what is already here
        }
        partFd = openSync(part, "a", 0o644);
        partFlush = new BackgroundFlush(partFd);
      }
      const progress = createProgress(p.label, { total: p.expected?.size });
      let total = p.expected?.size;
      const res = await download({
        url: p.url,
        fetch: p.fetch,
        signal: p.signal,
        offset,
        stallTimeoutMs: p.tuning?.stallTimeoutMs,
        retryDelayMs: p.tuning?.retryDelayMs,
        maxRetries: p.tuning?.maxRetries,
        onTotal: (t) => {
          total ??= t;
          if (t !== undefined && p.expected?.size !== undefined && t !== p.expected.size) {
            log.warn("the server's size differs from the release's", { server: t, release: p.expected.size });
          }
        },
        onChunk: async (chunk, at) => {
          if (partFd !== undefined) {
            let off = 0;
            while (off < chunk.length) off += writeSync(partFd, chunk, off, chunk.length - off);
            partFlush?.wrote(chunk.length);
          }
          await consume(chunk);
          downloaded += chunk.length;
          imageStats.downloadBytesTotal += chunk.length;
          progress.update(at + chunk.length, total);
        },
      });
      imageStats.downloadRetriesTotal += res.attempts - 1;
      progress.finish(`downloaded ${name}`);
    }

    if (decoder) {
      const t = performance.now();
      await decoder.finish();
      decodeMs += performance.now() - t;
    }
    const sha256 = hasher?.digest("hex");
    const size = p.localXz ? statSync(p.localXz).size : part && partFd !== undefined ? fstatSync(partFd).size : undefined;
    if (p.expected?.size !== undefined && size !== undefined && size !== p.expected.size) {
      throw new DigestMismatchError(`${name} has ${size} bytes, the release says ${p.expected.size}; deleted the downloaded file`, {
        hint: "Run havm again to download it afresh.",
        code: "download.size",
      });
    }
    if (p.expected?.sha256 && sha256 !== p.expected.sha256) {
      imageStats.digestMismatchesTotal++;
      throw new DigestMismatchError(`${name} is corrupt: its sha256 is ${sha256}, the release says ${p.expected.sha256}; deleted the downloaded file`, {
        hint: "Run havm again to download it afresh. If this repeats, something between you and GitHub alters downloads.",
        code: "download.digest",
      });
    }
    const verified = p.expected?.sha256 !== undefined;
    await writer.finish();
    closeSync(imgFd);
    imgClosed = true;
    if (decoder) {
      imageStats.decodedBytesTotal += writer.pos;
      imageStats.decodeSeconds += decodeMs / 1000;
    }
    // Into place: the compressed file (and its verified digest), then the decoded image.
    if (part && p.xzFinal && partFd !== undefined) {
      await partFlush?.settle();
      fsyncSync(partFd);
      closeSync(partFd);
      partFd = undefined;
      if (verified) writeFileSyncAtomicSmall(p.xzFinal + VERIFIED_SUFFIX, `${sha256}  ${basename(p.xzFinal)}\n`);
      renameSync(part, p.xzFinal);
    } else if (p.localXz && verified && p.deleteSourceOnCorruption) {
      writeFileSyncAtomicSmall(p.localXz + VERIFIED_SUFFIX, `${sha256}  ${basename(p.localXz)}\n`);
    }
    renameSync(tmpImg, p.imgPath);
    fsyncDir(dirname(p.imgPath));
    log.info("image ready", {
      image: p.imgPath,
      size: formatSize(writer.pos),
      data: formatSize(writer.dataBytes),
      verified,
      ...(decoder ? { decodeSeconds: Number((decodeMs / 1000).toFixed(1)), decoder: decoder.description, threads: decoder.multithreaded ? "multi" : "single" } : {}),
    });
    return { sha256, verified, downloaded };
  } catch (e) {
    // Stop the decoder first: an xz child must deliver no more output into a descriptor about to be closed.
    await decoder?.close();
    await partFlush?.settle();
    if (partFd !== undefined) closeSync(partFd);
    await writer.settle();
    if (!imgClosed) closeSync(imgFd);
    rmSync(tmpImg, { force: true });
    const corrupt = e instanceof DigestMismatchError || e instanceof XzDecodeError;
    if (corrupt && part) rmSync(part, { force: true });
    if (corrupt && p.localXz && p.deleteSourceOnCorruption) {
      rmSync(p.localXz, { force: true });
      rmSync(p.localXz + VERIFIED_SUFFIX, { force: true });
    }
    if (e instanceof XzDecodeError && (part || p.deleteSourceOnCorruption)) {
      throw new HavmError(`${e.message}; deleted the downloaded file`, { hint: "Run havm again to download it afresh.", code: e.code, cause: e });
    }
    if (errnoCode(e) === "ENOSPC") throw noSpace(dirname(p.imgPath), e);
    throw e;
  } finally {
    await decoder?.close();
    release?.();
  }
}

function writeFileSyncAtomicSmall(path: string, text: string): void {
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, "wx", 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

function noSpace(dir: string, cause: unknown): HavmError {
  return new HavmError(`the disk holding ${dir} is full`, {
    hint: "Free some space (havm cleanup removes old downloads) and run havm again; the download resumes.",
    exitCode: ExitCode.failure,
    code: "image.nospace",
    cause,
  });
}

export type { Arch };
