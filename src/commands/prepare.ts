import { defineCommand } from "citty";
import { globalArgs, loadContext } from "../cli/context.ts";
import { overrideArgs, applyOverrides } from "../cli/overrides.ts";

export default defineCommand({
  meta: {
    name: "prepare",
    description: "Do everything `havm run` does before booting (download, verify, decompress, disks, identity), then exit",
  },
  args: { ...globalArgs, ...overrideArgs },
  async run({ args }) {
    const ctx = applyOverrides(loadContext(args), args);
    const { prepare } = await import("../run.ts");
    return prepare(ctx);
  },
});
