// Serve a HAOS stand-in release on 127.0.0.1 so `havm run` can be tried offline (and e2e tests driven by hand).
//
//   bun scripts/release-server.ts [--board B] [--version V] [--beta V] [--image FILE.img.xz] [--port N] [--download-port N]
//
// Without --image it builds (once, cached in ~/.cache/havm-test) the mini-HAOS test guest from Debian packages
// and serves it as haos_<board>-<version>.img.xz. It prints the config lines to put in havm's config file
// (~/.config/havm/config.yml), then serves until Ctrl+C. Needs the Debian packages listed in test/guest/README.md.
import { parseArgs } from "node:util";
import { ensureGuestXz } from "../test/guest/guest.ts";
import { startReleaseServer } from "../test/support/release-server.ts";

const { values } = parseArgs({
  options: {
    board: { type: "string" },
    version: { type: "string", default: "17.1" },
    beta: { type: "string" },
    image: { type: "string" },
    port: { type: "string", default: "8999" },
    "download-port": { type: "string", default: "8998" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log("usage: bun scripts/release-server.ts [--board B] [--version V] [--beta V] [--image FILE.img.xz] [--port N] [--download-port N]");
  process.exit(0);
}
const arch = process.arch === "arm64" ? "arm64" : "amd64";
const board = values.board ?? (arch === "arm64" ? "generic-aarch64" : "generic-x86-64");
let image = values.image;
if (!image) {
  console.error(`building (or reusing) the mini-HAOS ${arch} test image...`);
  image = await ensureGuestXz({ arch });
}
const server = await startReleaseServer({
  board,
  version: values.version!,
  betaVersion: values.beta,
  imageXzPath: image,
  port: Number(values.port),
  downloadPort: Number(values["download-port"]),
});
console.log(`# serving ${server.assetName} (${server.size} bytes, sha256 ${server.sha256})`);
console.log("# put these lines in havm's config file (e.g. ~/.config/havm/config.yml):");
console.log(server.configYaml() + [
  "ha:",
  "  api_token: minihaos-test-token   # the stand-in guest's token (only for the mini-HAOS image)",
  "vm:",
  "  memory_size: 512 MiB",
  "  cpu_count: 1",
  "  disk_size: 1 GiB",
  "qemu:",
  "  accel: tcg                       # or auto where /dev/kvm can boot firmware",
].join("\n"));
console.log("# Ctrl+C to stop");
const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
for (;;) {
  await Bun.sleep(5_000);
  // show each new request while the demo runs
  for (const r of server.requests.splice(0)) console.error(`${r.method} ${r.path} ${r.range ?? ""} -> ${r.status}`);
}
