// Which backend runs the VM: Virtualization.framework on macOS, QEMU on Linux. Backends are imported
// lazily so a Linux run never loads the FFI shim and a macOS run never loads QEMU code.
import type { Backend } from "./backend.ts";
import type { Config } from "../config/schema.ts";
import type { HavmPaths } from "../config/paths.ts";
import { HavmError, ExitCode, errorMessage } from "../util/errors.ts";

export async function selectBackend(config: Config, paths: HavmPaths, platform: NodeJS.Platform = process.platform): Promise<Backend> {
  if (platform === "linux") {
    const { QemuBackend } = await import("./qemu/qemu.ts");
    return new QemuBackend({ qemu: config.qemu, paths: paths.vm, cacheDir: paths.cacheDir });
  }
  if (platform === "darwin") {
    let vz: typeof import("./vz/vz.ts");
    try {
      vz = await import("./vz/vz.ts");
    } catch (e) {
      throw new HavmError(`the macOS backend (Virtualization.framework) is not available in this build: ${errorMessage(e)}`, {
        hint: "Use a havm release built for macOS (scripts/build.sh on a Mac).",
        exitCode: ExitCode.unsupported,
        code: "backend.vz.missing",
      });
    }
    // The vz backend needs no config or paths: the VM's files arrive in the spec.
    return vz.createVzBackend({}, platform);
  }
  throw new HavmError(`havm does not support ${platform}`, {
    hint: "havm runs on Linux (QEMU) and macOS (Virtualization.framework).",
    exitCode: ExitCode.unsupported,
    code: "backend.unsupported",
  });
}
