// havm cleanup: empty the download cache (release images). Never touches VM data.
import { defineCommand } from "citty";
import { globalArgs, loadContext } from "../cli/context.ts";
import { formatSize } from "../config/units.ts";
import { cleanupCache } from "../image/cache.ts";
import { log } from "../util/log.ts";

export default defineCommand({
  meta: { name: "cleanup", description: "Remove downloaded Home Assistant OS images (the cache); VM data is kept" },
  args: { ...globalArgs },
  run({ args }) {
    const { paths } = loadContext(args);
    const r = cleanupCache(paths.cacheDir);
    log.info("cleaned the download cache", { dir: paths.cacheDir, files: r.removed.length, freed: formatSize(r.freedBytes) });
    for (const b of r.busy) log.warn("kept a file a running havm is writing", { file: b.file, pid: b.pid });
    process.stdout.write(
      r.removed.length === 0 && r.busy.length === 0
        ? `Nothing to clean in ${paths.cacheDir}\n`
        : `Freed ${formatSize(r.freedBytes)} (${r.removed.length} file${r.removed.length === 1 ? "" : "s"}) in ${paths.cacheDir}` +
            (r.busy.length ? `; kept ${r.busy.length} file(s) a running havm is writing` : "") +
            "\n",
    );
  },
});
