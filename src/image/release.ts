// Which HAOS image to fetch and from where. Pure: no I/O; acquire.ts does the fetching.
import { HavmError, ExitCode } from "../util/errors.ts";

export type Arch = "x86_64" | "aarch64";
export type Board = "generic-x86-64" | "generic-aarch64";
export type Channel = "stable" | "pre-release";

/** Versions go into file names and URLs: digits first, then only [0-9A-Za-z.+-] (e.g. 17.1, 17.1.rc1). */
export const VERSION_RE = /^[0-9][0-9A-Za-z.+-]*$/;

export function hostArch(nodeArch: string = process.arch): Arch {
  if (nodeArch === "arm64") return "aarch64";
  if (nodeArch === "x64") return "x86_64";
  throw new HavmError(`Home Assistant OS has no image for this CPU (${nodeArch})`, {
    hint: "havm runs on x86-64 and arm64 (Apple silicon) hosts.",
    exitCode: ExitCode.unsupported,
    code: "image.arch",
  });
}

export function boardFor(arch: Arch): Board {
  return arch === "aarch64" ? "generic-aarch64" : "generic-x86-64";
}

/** The version service's file for a channel: pre-releases are the "beta" channel. */
export function channelFile(channel: Channel): "stable.json" | "beta.json" {
  return channel === "pre-release" ? "beta.json" : "stable.json";
}

export function channelUrl(versionUrl: string, channel: Channel): string {
  return `${versionUrl.replace(/\/+$/, "")}/${channelFile(channel)}`;
}

/** The version for a board from the version service's JSON (`hassos.<board>`). */
export function versionFromChannel(json: unknown, board: Board, source = "the version service"): string {
  const hassos = (json as { hassos?: unknown } | null)?.hassos;
  const version = hassos && typeof hassos === "object" ? (hassos as Record<string, unknown>)[board] : undefined;
  if (typeof version !== "string" || !VERSION_RE.test(version)) {
    throw new HavmError(`${source} names no usable Home Assistant OS version for ${board}`, {
      hint: "Pin a version with haos.version in the config, or try again later.",
      code: "image.version",
    });
  }
  return version;
}

export function assetName(board: Board, version: string): string {
  return `haos_${board}-${version}.img.xz`;
}

export function assetUrl(downloadUrl: string, board: Board, version: string): string {
  return `${downloadUrl.replace(/\/+$/, "")}/${encodeURIComponent(version)}/${assetName(board, version)}`;
}

/** The GitHub releases API URL of one release (by tag). */
export function releaseApiUrl(releasesApi: string, version: string): string {
  return `${releasesApi.replace(/\/+$/, "")}/tags/${encodeURIComponent(version)}`;
}

export interface AssetInfo {
  size?: number;
  /** Lowercase hex sha256, when the API publishes one. */
  sha256?: string;
}

/** "sha256:<hex>" -> hex; anything else -> undefined (cannot verify). */
export function parseDigest(digest: unknown): string | undefined {
  if (typeof digest !== "string") return undefined;
  const m = /^sha256:([0-9a-fA-F]{64})$/.exec(digest.trim());
  return m ? m[1]!.toLowerCase() : undefined;
}

/** Size and digest of one asset from a GitHub release JSON; undefined when the release lacks that asset. */
export function assetInfoFromRelease(json: unknown, name: string): AssetInfo | undefined {
  const assets = (json as { assets?: unknown } | null)?.assets;
  if (!Array.isArray(assets)) return undefined;
  const asset = assets.find((a) => (a as { name?: unknown } | null)?.name === name) as { size?: unknown; digest?: unknown } | undefined;
  if (!asset) return undefined;
  const info: AssetInfo = {};
  if (typeof asset.size === "number" && Number.isSafeInteger(asset.size) && asset.size >= 0) info.size = asset.size;
  const sha = parseDigest(asset.digest);
  if (sha) info.sha256 = sha;
  return info;
}

/** Compare dotted versions numerically where both parts are numbers ("17.10" > "17.9"). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.+-]/);
  const pb = b.split(/[.+-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    // "17.1" is newer than "17.1.rc1" but older than "17.1.1".
    if (x === undefined) return y !== undefined && /^\d+$/.test(y) ? -1 : 1;
    if (y === undefined) return /^\d+$/.test(x) ? 1 : -1;
    const nx = /^\d+$/.test(x) ? Number(x) : NaN;
    const ny = /^\d+$/.test(y) ? Number(y) : NaN;
    const c = !isNaN(nx) && !isNaN(ny) ? nx - ny : x < y ? -1 : x > y ? 1 : 0;
    if (c !== 0) return c < 0 ? -1 : 1;
  }
  return 0;
}

/** The version in a cached file name haos_<board>-<version>.img(.xz), if it is one for this board. */
export function versionFromAssetName(fileName: string, board: Board): string | undefined {
  const prefix = `haos_${board}-`;
  if (!fileName.startsWith(prefix)) return undefined;
  const m = /^(.*)\.img(\.xz)?$/.exec(fileName.slice(prefix.length));
  return m && VERSION_RE.test(m[1]!) ? m[1] : undefined;
}
