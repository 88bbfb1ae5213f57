// `havm version`: what this binary is, what it runs on, and whether `havm run` can work here.
import { defineCommand } from "citty";
import { readFileSync } from "node:fs";
import { arch, release } from "node:os";
import { globalArgs, loadContext } from "../cli/context.ts";
import { HAVM_COMMIT, HAVM_VERSION } from "../version.ts";
import { selectBackend } from "../vm/select.ts";
import type { BackendProbe } from "../vm/backend.ts";

/** "Debian GNU/Linux 12 (bookworm), kernel 6.1.0" / "macOS 15.4". Reads files only: no child process. */
export function osDescription(platform = process.platform): string {
  try {
    if (platform === "darwin") {
      const plist = readFileSync("/System/Library/CoreServices/SystemVersion.plist", "utf8");
      const v = /<key>ProductVersion<\/key>\s*<string>([^<]+)<\/string>/.exec(plist)?.[1];
      return `macOS ${v ?? "unknown"}`;
    }
    const osRelease = readFileSync("/etc/os-release", "utf8");
    const pretty = /^PRETTY_NAME="?([^"\n]+)"?/m.exec(osRelease)?.[1] ?? "Linux";
    return `${pretty}, kernel ${release()}`;
  } catch {
    return `${platform} ${release()}`;
  }
}

export default defineCommand({
  meta: { name: "version", description: "Show havm's version, the host, and whether the VM backend is usable here" },
  args: {
    ...globalArgs,
    json: { type: "boolean", description: "Print as JSON" },
  },
  async run({ args }) {
    const ctx = loadContext(args);
    let probe: BackendProbe;
    try {
      const backend = await selectBackend(ctx.config, ctx.paths);
      probe = await backend.probe();
    } catch (e) {
      probe = { backend: process.platform === "darwin" ? "vz" : "qemu", usable: false, details: [(e as Error).message] };
    }
    const info = {
      version: HAVM_VERSION,
      commit: HAVM_COMMIT,
      os: osDescription(),
      arch: arch() === "x64" ? "x86_64" : arch() === "arm64" ? "arm64" : arch(),
      runtime: `bun ${Bun.version}`,
      backend: probe.backend,
      usable: probe.usable,
      details: probe.details,
      ...(probe.hint ? { hint: probe.hint } : {}),
    };
    if (args.json) {
      process.stdout.write(JSON.stringify(info, null, 2) + "\n");
      return;
    }
    const lines = [
      `havm ${info.version} (${info.commit})`,
      `os:      ${info.os}`,
      `arch:    ${info.arch}`,
      `runtime: ${info.runtime}`,
      `backend: ${info.backend} (${info.usable ? "usable" : "NOT usable"})`,
      ...info.details.map((d) => `  - ${d}`),
      ...(probe.hint ? [`  hint: ${probe.hint}`] : []),
    ];
    process.stdout.write(lines.join("\n") + "\n");
  },
});
