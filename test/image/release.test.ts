import { describe, expect, test } from "bun:test";
import {
  assetInfoFromRelease,
  assetName,
  assetUrl,
  boardFor,
  channelFile,
  channelUrl,
  compareVersions,
  hostArch,
  parseDigest,
  releaseApiUrl,
  versionFromAssetName,
  versionFromChannel,
} from "../../src/image/release.ts";
import { parseContentRange } from "../../src/image/download.ts";

const HEX = "0123456789abcdef".repeat(4);

describe("release resolution (pure)", () => {
  test.each([
    ["x64", "x86_64", "generic-x86-64"],
    ["arm64", "aarch64", "generic-aarch64"],
  ] as const)("host %s -> %s -> %s", (node, arch, board) => {
    expect(hostArch(node)).toBe(arch);
    expect(boardFor(arch)).toBe(board);
  });

  test("unsupported CPU is a clear error", () => {
    expect(() => hostArch("ia32")).toThrow(/no image for this CPU/);
  });

  test("channels map to the version service's files", () => {
    expect(channelFile("stable")).toBe("stable.json");
    expect(channelFile("pre-release")).toBe("beta.json");
    expect(channelUrl("https://version.home-assistant.io/", "pre-release")).toBe("https://version.home-assistant.io/beta.json");
  });

  test("version from hassos.<board>", () => {
    const json = { channel: "stable", hassos: { "generic-x86-64": "17.1", "generic-aarch64": "17.0" } };
    expect(versionFromChannel(json, "generic-x86-64")).toBe("17.1");
    expect(versionFromChannel(json, "generic-aarch64")).toBe("17.0");
    expect(() => versionFromChannel({ hassos: {} }, "generic-x86-64")).toThrow(/no usable/);
    expect(() => versionFromChannel({ hassos: { "generic-x86-64": "../../etc" } }, "generic-x86-64")).toThrow(/no usable/);
    expect(() => versionFromChannel(null, "generic-x86-64")).toThrow();
  });

  test("asset names and URLs", () => {
    expect(assetName("generic-aarch64", "17.1.rc1")).toBe("haos_generic-aarch64-17.1.rc1.img.xz");
    expect(assetUrl("https://github.com/home-assistant/operating-system/releases/download", "generic-x86-64", "17.1")).toBe(
      "https://github.com/home-assistant/operating-system/releases/download/17.1/haos_generic-x86-64-17.1.img.xz",
    );
    expect(releaseApiUrl("https://api.github.com/repos/home-assistant/operating-system/releases", "17.1")).toBe(
      "https://api.github.com/repos/home-assistant/operating-system/releases/tags/17.1",
    );
  });

  test("digests and asset info from the releases API", () => {
    expect(parseDigest(`sha256:${HEX.toUpperCase()}`)).toBe(HEX);
    expect(parseDigest("sha512:abc")).toBeUndefined();
    expect(parseDigest(null)).toBeUndefined();
    const rel = {
      assets: [
        { name: "haos_generic-x86-64-17.1.img.xz", size: 123, digest: `sha256:${HEX}` },
        { name: "haos_generic-aarch64-17.1.img.xz", size: 456, digest: null },
      ],
    };
    expect(assetInfoFromRelease(rel, "haos_generic-x86-64-17.1.img.xz")).toEqual({ size: 123, sha256: HEX });
    expect(assetInfoFromRelease(rel, "haos_generic-aarch64-17.1.img.xz")).toEqual({ size: 456 });
    expect(assetInfoFromRelease(rel, "other")).toBeUndefined();
    expect(assetInfoFromRelease({ message: "API rate limit exceeded" }, "x")).toBeUndefined();
  });

  test("version order and cached names", () => {
    const sorted = ["17.1", "9.5", "17.10", "17.1.rc1", "17.2", "17.1.1"].sort(compareVersions);
    expect(sorted).toEqual(["9.5", "17.1.rc1", "17.1", "17.1.1", "17.2", "17.10"]);
    expect(versionFromAssetName("haos_generic-x86-64-17.1.img", "generic-x86-64")).toBe("17.1");
    expect(versionFromAssetName("haos_generic-aarch64-17.1.img", "generic-x86-64")).toBeUndefined();
  });

  test("Content-Range parsing", () => {
    expect(parseContentRange("bytes 100-199/1000")).toEqual({ start: 100, total: 1000 });
    expect(parseContentRange("bytes */1000")).toEqual({ start: undefined, total: 1000 });
    expect(parseContentRange("bytes 0-9/*")).toEqual({ start: 0, total: undefined });
    expect(parseContentRange(null)).toBeUndefined();
    expect(parseContentRange("junk")).toBeUndefined();
  });
});
