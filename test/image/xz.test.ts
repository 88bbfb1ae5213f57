import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { XzDecoder, liblzmaCandidates, liblzmaInfo } from "../../src/ffi/lzma.ts";
import { compressXz, writeShapedImage } from "./fixtures/shaped-image.ts";

let work: string;
let raw: Uint8Array;
let multi: Uint8Array;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "havm-xz-"));
  writeShapedImage(join(work, "a.img"), 30);
  compressXz(join(work, "a.img"), join(work, "a.img.xz"), true);
  raw = await Bun.file(join(work, "a.img")).bytes();
  multi = await Bun.file(join(work, "a.img.xz")).bytes();
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

function decode(input: Uint8Array, opts: { singleThreaded?: boolean; chunk?: number } = {}): Buffer {
  const out: Buffer[] = [];
  const d = new XzDecoder((c) => out.push(Buffer.from(c)), { singleThreaded: opts.singleThreaded, outSize: 256 * 1024 });
  try {
    const step = opts.chunk ?? 65536;
    for (let i = 0; i < input.length; i += step) d.feed(input.subarray(i, i + step));
    d.finish();
  } finally {
    d.end();
  }
  return Buffer.concat(out);
}

describe("liblzma via ffi", () => {
  test("loads by absolute path and reports its version", () => {
    const info = liblzmaInfo();
    expect(info.path.startsWith("/")).toBe(true);
    expect(info.version).toMatch(/^5\.\d+\.\d+/);
    expect(liblzmaCandidates("linux", "arm64").every((p) => p.startsWith("/"))).toBe(true);
    expect(liblzmaCandidates("darwin").at(-1)).toBe("/usr/lib/liblzma.5.dylib");
  });

  test("multi-threaded and single-threaded decoders give the same bytes, whatever the chunking", () => {
    const mt = decode(multi, { chunk: 1 << 20 });
    expect(Buffer.compare(mt, raw)).toBe(0);
    expect(Buffer.compare(decode(multi, { singleThreaded: true, chunk: 777 }), raw)).toBe(0);
  });

  test("not an .xz file", () => {
    expect(() => decode(new TextEncoder().encode("this is not xz at all, just text".repeat(10)))).toThrow(/not an \.xz file/);
  });

  test("garbage after the end of a stream is corruption", () => {
    const withTail = Buffer.concat([multi, Buffer.from("trailing junk!")]);
    expect(() => decode(withTail)).toThrow(/LZMA_(DATA|FORMAT)_ERROR/);
  });

  test("end() is idempotent and a used decoder refuses more work", () => {
    const d = new XzDecoder(() => {});
    d.end();
    d.end();
    expect(() => d.feed(multi.subarray(0, 100))).toThrow(/after end/);
  });
});
