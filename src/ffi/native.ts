// Where havm's own native library (libhavm: shim/fs.c, plus the VZ part on macOS) lives.
// - Compiled binary: the library is embedded (src/ffi/embedded.generated.ts). Bun would extract it to
//   $TMPDIR on every dlopen and never delete it, so it is copied once to a content-addressed file under
//   paths.libDir and dlopened from there.
// - Dev checkout: .build/shim/libhavm.so (.dylib on macOS), built by scripts/build-shim.sh.
// Always an absolute path: a bare name can make the loader look in the working directory.
import { chmodSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { embeddedLibrary } from "./embedded.generated.ts";
import { HavmError, ExitCode } from "../util/errors.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { resolvePaths } from "../config/paths.ts";

export const NATIVE_LIBRARY_EXT = process.platform === "darwin" ? "dylib" : "so";

/** .build/shim/libhavm.<ext> of this checkout (it may not exist). */
export function devLibraryPath(): string {
  return resolve(import.meta.dir, "..", "..", ".build", "shim", `libhavm.${NATIVE_LIBRARY_EXT}`);
}

/** Copy the embedded library to libDir/libhavm-<sha256 prefix>.<ext> unless that file is already there. */
export function materializeEmbedded(embedded: string, libDir: string): string {
  const bytes = readFileSync(embedded);
  const hash = new Bun.CryptoHasher("sha256").update(bytes).digest("hex").slice(0, 16);
  const target = join(libDir, `libhavm-${hash}.${NATIVE_LIBRARY_EXT}`);
  if (!existsSync(target)) {
    mkdirSync(libDir, { recursive: true, mode: 0o755 });
    writeFileAtomic(target, bytes, 0o755);
    chmodSync(target, 0o755);
  }
  return target;
}

let cached: string | undefined;

/**
 * The absolute path of libhavm to dlopen. HAVM_NATIVE_LIB (absolute) overrides, for tests and packagers.
 * Throws a HavmError with a hint when there is none.
 */
export function nativeLibraryPath(opts: { libDir?: string; env?: Record<string, string | undefined> } = {}): string {
  const env = opts.env ?? process.env;
  const override = env.HAVM_NATIVE_LIB;
  if (override) {
    if (!isAbsolute(override)) {
      throw new HavmError(`HAVM_NATIVE_LIB must be an absolute path, not "${override}"`, {
        hint: "Set it to the full path of libhavm, or unset it.",
        exitCode: ExitCode.badInput,
        code: "native.path",
      });
    }
    return override;
  }
  if (cached && !opts.libDir) return cached;
  let found: string | undefined;
  if (embeddedLibrary !== undefined) {
    found = materializeEmbedded(embeddedLibrary, opts.libDir ?? resolvePaths(env).libDir);
  } else if (existsSync(devLibraryPath())) {
    found = devLibraryPath();
  }
  if (!found) {
    throw new HavmError("havm's native library (libhavm) is missing", {
      hint: `Build it with scripts/build-shim.sh (expected at ${devLibraryPath()}).`,
      exitCode: ExitCode.unsupported,
      code: "native.missing",
    });
  }
  if (!opts.libDir) cached = found;
  return found;
}
