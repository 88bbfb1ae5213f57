// Benchmark: havm's .xz decode path vs native xz, on a HAOS-shaped image.
//   bun bench/xz-decode.ts [--size-mib 1024] [--every 6] [--reps 2] [--work DIR]
// Builds an image (mostly zeros, some incompressible data, some text), compresses it like HAOS
// (`xz -3 -T0`, multi-block) and single-block (`xz -3 -T1`), then times, for each file:
//   havm   acquireImage with haos.image = the local .xz (liblzma decode + sparse write + fsync), in a child
//   havm-xz the same with HAVM_XZ_DECODER=subprocess (the fallback: an `xz -dc` child feeding the sparse writer)
//   fetch  (multi-block only) the full first-run pass over loopback HTTP: fetch + sha256 + decode + sparse write
//   native `xz -dc -T0 file > out` (the baseline) and `xz -dc -T0 file > /dev/null` (pure decode)
// and prints the ratio havm/native (target <= 1.05) and each havm child's peak RSS (target < 200 MB).
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compressXz, writeShapedImage } from "../test/image/fixtures/shaped-image.ts";

const MIB = 1024 * 1024;

if (process.argv[2] === "--child") {
  await child(process.argv[3] as "havm" | "fetch", process.argv[4]!, process.argv[5]!, process.argv[6]!);
  process.exit(0);
}

const { values } = parseArgs({
  options: {
    "size-mib": { type: "string", default: "1024" },
    every: { type: "string", default: "6" },
    reps: { type: "string", default: "2" },
    work: { type: "string", default: "/tmp/havm-bench-xz" },
  },
});
const sizeMiB = Number(values["size-mib"]);
const every = Number(values.every);
const reps = Number(values.reps);
const work = values.work!;
mkdirSync(work, { recursive: true });

const img = join(work, `shaped-${sizeMiB}-${every}.img`);
const multi = join(work, `shaped-${sizeMiB}-${every}-multi.img.xz`);
const single = join(work, `shaped-${sizeMiB}-${every}-single.img.xz`);
if (!existsSync(single)) {
  console.log(`building a ${sizeMiB} MiB HAOS-shaped image and compressing it (once; kept in ${work})...`);
  const shaped = writeShapedImage(img, sizeMiB, { dataEvery: every });
  console.log(`  data ${(shaped.dataBytes / MIB).toFixed(0)} MiB, zero blocks ${(100 - (shaped.dataBytes / shaped.size) * 100).toFixed(0)}%`);
  compressXz(img, multi, true);
  compressXz(img, single, false);
}
const blockCount = (f: string) => Bun.spawnSync(["xz", "--robot", "-lv", f]).stdout.toString().split("\n").filter((l) => l.startsWith("block\t")).length;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function timeShell(cmd: string): number {
  const t = performance.now();
  const r = Bun.spawnSync(["sh", "-c", cmd], { stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd}: ${r.stderr.toString()}`);
  return (performance.now() - t) / 1000;
}

// The loopback "GitHub" runs here, in the parent, so the child's RSS is havm's alone. It serves `served`.
let served = "";
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    if (new URL(req.url).pathname.startsWith("/api/")) {
      const h = new Bun.CryptoHasher("sha256");
      for await (const c of Bun.file(served).stream()) h.update(c);
      const digest = `sha256:${h.digest("hex")}`;
      return Response.json({ assets: [{ name: "haos_generic-x86-64-1.0.img.xz", size: statSync(served).size, digest }] });
    }
    return new Response(Bun.file(served));
  },
});

async function runChild(mode: "havm" | "fetch", xz: string, out: string, decoder: "ffi" | "subprocess" = "ffi"): Promise<{ seconds: number; rssMB: number }> {
  const env = { ...process.env, HAVM_XZ_DECODER: decoder };
  const p = Bun.spawn(["bun", import.meta.path, "--child", mode, xz, out, `http://127.0.0.1:${server.port}`], { stdout: "pipe", stderr: "pipe", env });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`child ${mode} failed: ${stderr}`);
  return JSON.parse(stdout.trim().split("\n").at(-1)!);
}

const rows: string[] = [];
for (const [label, xz] of [
  ["multi-block (xz -3 -T0)", multi],
  ["single-block (xz -3 -T1)", single],
] as const) {
  const outNative = join(work, "native.out");
  const outHavm = join(work, "havm-out");
  let native = Infinity;
  let nativeNull = Infinity;
  let havm = { seconds: Infinity, rssMB: 0 };
  let fetchPass = { seconds: Infinity, rssMB: 0 };
  let nativePipe = Infinity;
  let viaXz = { seconds: Infinity, rssMB: 0 };
  const xzPairedRatios: number[] = [];
  // Paired ratios (havm run right after native, per repetition) resist the drift of a shared machine.
  const pairedRatios: number[] = [];
  const hasCurl = Bun.spawnSync(["sh", "-c", "command -v curl"]).exitCode === 0;
  for (let i = 0; i < reps; i++) {
    rmSync(outNative, { force: true });
    const n = timeShell(`xz -dc -T0 '${xz}' > '${outNative}'`);
    native = Math.min(native, n);
    rmSync(outHavm, { recursive: true, force: true });
    const h = await runChild("havm", xz, outHavm);
    pairedRatios.push(h.seconds / n);
    nativeNull = Math.min(nativeNull, timeShell(`xz -dc -T0 '${xz}' > /dev/null`));
    if (h.seconds < havm.seconds) havm = { seconds: h.seconds, rssMB: Math.max(h.rssMB, havm.rssMB) };
    else havm.rssMB = Math.max(havm.rssMB, h.rssMB);
    rmSync(outHavm, { recursive: true, force: true });
    const x = await runChild("havm", xz, outHavm, "subprocess");
    viaXz = { seconds: Math.min(viaXz.seconds, x.seconds), rssMB: Math.max(viaXz.rssMB, x.rssMB) };
    xzPairedRatios.push(x.seconds / n);
    if (xz === multi) {
      rmSync(outHavm, { recursive: true, force: true });
      served = xz;
      const f = await runChild("fetch", xz, outHavm);
      fetchPass = { seconds: Math.min(f.seconds, fetchPass.seconds), rssMB: Math.max(f.rssMB, fetchPass.rssMB) };
      if (hasCurl) {
        // The native equivalent of the first run: download while decoding (no hash, nothing kept).
        const t = performance.now();
        const p = Bun.spawn(["sh", "-c", `curl -sf 'http://127.0.0.1:${server.port}/dl' | xz -dc -T0 > '${outNative}.pipe'`]);
        if ((await p.exited) !== 0) throw new Error("curl | xz failed");
        nativePipe = Math.min(nativePipe, (performance.now() - t) / 1000);
        rmSync(`${outNative}.pipe`, { force: true });
      }
    }
  }
  // The havm output must be the same bytes as xz's.
  rmSync(outHavm, { recursive: true, force: true });
  await runChild("havm", xz, outHavm);
  const decoded = Bun.spawnSync(["sh", "-c", `ls '${outHavm}'/.cache/havm/*.img`]).stdout.toString().trim();
  const same = Bun.spawnSync(["cmp", "-s", decoded, outNative]).exitCode === 0;
  rmSync(outHavm, { recursive: true, force: true });
  await runChild("havm", xz, outHavm, "subprocess");
  const sameViaXz = Bun.spawnSync(["sh", "-c", `cmp -s '${outHavm}'/.cache/havm/*.img '${outNative}'`]).exitCode === 0;
  const size = statSync(outNative).size;
  const mbps = (s: number) => `${(size / 1e6 / s).toFixed(0)} MB/s`;
  rows.push(
    `${label}: ${blockCount(xz)} block(s), ${(statSync(xz).size / MIB).toFixed(0)} MiB -> ${(size / MIB).toFixed(0)} MiB, output identical: ${same ? "yes" : "NO"} (via xz subprocess: ${sameViaXz ? "yes" : "NO"})`,
    `  native xz -dc -T0 > file     ${native.toFixed(2)} s  ${mbps(native)}`,
    `  native xz -dc -T0 > /dev/null ${nativeNull.toFixed(2)} s  ${mbps(nativeNull)}`,
    `  havm decode (lzma+sparse write+fsync) ${havm.seconds.toFixed(2)} s  ${mbps(havm.seconds)}  peak RSS ${havm.rssMB.toFixed(0)} MB`,
    `  ratio havm / native(file)    ${(havm.seconds / native).toFixed(3)} best-of-${reps} times; median of paired runs ${median(pairedRatios).toFixed(3)}  (target <= 1.05)`,
    `  ratio havm / native(null)    ${(havm.seconds / nativeNull).toFixed(3)}`,
    `  havm via xz subprocess (fallback) ${viaXz.seconds.toFixed(2)} s  ${mbps(viaXz.seconds)}  ratio vs native(file) ${(viaXz.seconds / native).toFixed(3)} best-of-${reps}, median paired ${median(xzPairedRatios).toFixed(3)}  peak RSS ${viaXz.rssMB.toFixed(0)} MB (havm only; xz not counted)`,
  );
  if (xz === multi) {
    rows.push(`  havm first run over loopback HTTP (fetch+sha256+keep .xz+decode+sparse+fsync) ${fetchPass.seconds.toFixed(2)} s  ${mbps(fetchPass.seconds)}  peak RSS ${fetchPass.rssMB.toFixed(0)} MB`);
    if (hasCurl) rows.push(`  native curl | xz -dc -T0 > file ${nativePipe.toFixed(2)} s  ${mbps(nativePipe)}  ratio havm/native ${(fetchPass.seconds / nativePipe).toFixed(3)}`);
  }
  rmSync(outNative, { force: true });
  rmSync(outHavm, { recursive: true, force: true });
}
console.log(rows.join("\n"));
server.stop(true);

async function child(mode: "havm" | "fetch", xz: string, home: string, base: string): Promise<void> {
  const { acquireImage } = await import("../src/image/acquire.ts");
  const { resolvePaths } = await import("../src/config/paths.ts");
  const { defaultConfig } = await import("../src/config/schema.ts");
  const { configureLogger } = await import("../src/util/log.ts");
  configureLogger({ level: "warning" });
  const paths = resolvePaths({ HOME: home }, "linux");
  const config = defaultConfig();
  if (mode === "havm") config.haos.image = xz;
  else {
    Object.assign(config.haos, { version: "1.0", releases_api: `${base}/api`, download_url: `${base}/dl` });
  }
  const t = performance.now();
  await acquireImage({ config, paths, arch: "x86_64" });
  const seconds = (performance.now() - t) / 1000;
  console.log(JSON.stringify({ seconds, rssMB: peakRssBytes() / 1e6 }));
}

/** This process's peak RSS. Linux: VmHWM (getrusage's maxrss survives exec, so a child would report its
 * parent's peak); elsewhere maxRSS (kilobytes). */
function peakRssBytes(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return process.resourceUsage().maxRSS * 1024;
}
