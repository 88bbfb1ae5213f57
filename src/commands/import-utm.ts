// `havm import-utm <Name.utm> [--force]`: bring an existing Home Assistant VM over from UTM.
import { defineCommand } from "citty";
import { globalArgs, loadContext } from "../cli/context.ts";
import { log } from "../util/log.ts";
import { importUtm } from "../utm/import.ts";

export default defineCommand({
  meta: {
    name: "import-utm",
    description: "Copy a UTM VM (Name.utm) into havm's VM directory and merge its settings into config.yml; the bundle is left intact",
  },
  args: {
    ...globalArgs,
    bundle: { type: "positional", required: true, description: "The UTM bundle, e.g. ~/Library/Containers/com.utmapp.UTM/Data/Documents/HA.utm", valueHint: "PATH" },
    force: { type: "boolean", description: "Replace havm's existing VM (disk, NVRAM, machine identifier)" },
  },
  async run({ args }) {
    const ctx = loadContext(args);
    const configFile = args.config ?? ctx.paths.configFile;
    const result = await importUtm({
      bundle: args.bundle,
      paths: ctx.paths,
      configFile,
      force: args.force === true,
      // Warnings first: they may make the user stop a long copy (another disk with data, wrong arch).
      onPlan: (plan) => plan.warnings.forEach((w) => log.warn(w)),
    });
    const lines = [
      `imported ${result.plan.name} (UTM ${result.plan.backend === "apple" ? "Apple Virtualization" : "QEMU"} backend):`,
      ...result.imported.map((l) => `  ${l}`),
      "not imported:",
      ...result.notImported.map((l) => `  ${l}`),
      "The UTM bundle was not changed. Start the VM with: havm run",
    ];
    process.stdout.write(lines.join("\n") + "\n");
  },
});
