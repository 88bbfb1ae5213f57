import { defineCommand } from "citty";
import { globalArgs, loadContext } from "../cli/context.ts";
import { overrideArgs, applyOverrides } from "../cli/overrides.ts";

export default defineCommand({
  meta: {
    name: "run",
    description: "Download (first time), prepare and boot Home Assistant OS, then supervise it until stopped (SIGTERM/Ctrl+C shut it down gracefully)",
  },
  args: { ...globalArgs, ...overrideArgs },
  async run({ args }) {
    const ctx = applyOverrides(loadContext(args), args);
    const { run } = await import("../run.ts");
    return run(ctx);
  },
});
