// Which backend runs the VM: Virtualization.framework on macOS, QEMU on Linux. Backends are imported
// lazily so a Linux run never loads the FFI shim and a macOS run never loads QEMU code.
import type { Backend } from "./backend.ts";
import type { Config } from "../config/schema.ts";
import type { HavmPaths } from "../config/paths.ts";
import { HavmError, ExitCode, errorMessage } from "../util/errors.ts";

/** What src/vm/vz/vz.ts is expected to export (either form). */
type VzModule = {
  createVzBackend?: (opts: { config: Config; paths: HavmPaths }) => Backend | Promise<Backend>;
  VzBackend?: new (opts: { config: Config; paths: HavmPaths }) => Backend;
};

export async function selectBackend(config: Config, paths: HavmPaths, platform: NodeJS.Platform = process.platform): Promise<Backend> {
  if (platform === "linux") {
    const { QemuBackend } = await import("./qemu/qemu.ts");
    return new QemuBackend({ qemu: config.qemu, paths: paths.vm, cacheDir: paths.cacheDir });
  }
  if (platform === "darwin") {
    let mod: VzModule;
    try {
      // @ts-ignore -- vz.ts is written in parallel; a missing module is reported at run time below.
      mod = (await import("./vz/vz.ts")) as VzModule;
    } catch (e) {
      throw new HavmError(`the macOS backend (Virtualization.framework) is not available in this build: ${errorMessage(e)}`, {
        hint: "Use a havm release built for macOS (scripts/build.sh on a Mac).",
        exitCode: ExitCode.unsupported,
        code: "backend.vz.missing",
      });
    }
    if (mod.createVzBackend) return await mod.createVzBackend({ config, paths });
    if (mod.VzBackend) return new mod.VzBackend({ config, paths });
    throw new HavmError("the macOS backend module exports no backend", {
      hint: "This havm build is broken: src/vm/vz/vz.ts must export createVzBackend or VzBackend.",
      exitCode: ExitCode.unsupported,
      code: "backend.vz.missing",
    });
  }
  throw new HavmError(`havm does not support ${platform}`, {
    hint: "havm runs on Linux (QEMU) and macOS (Virtualization.framework).",
    exitCode: ExitCode.unsupported,
    code: "backend.unsupported",
  });
}
