import { describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { resolvePaths } from "../../src/config/paths.ts";
import { defaultConfig } from "../../src/config/schema.ts";
import { selectBackend } from "../../src/vm/select.ts";
import { QemuBackend } from "../../src/vm/qemu/qemu.ts";
import { ExitCode, HavmError } from "../../src/util/errors.ts";

const paths = resolvePaths({ HOME: "/home/test" }, "linux");
const vzPresent = existsSync(join(import.meta.dir, "../../src/vm/vz/vz.ts"));

describe("selectBackend", () => {
  test("linux -> qemu", async () => {
    const b = await selectBackend(defaultConfig(), paths, "linux");
    expect(b).toBeInstanceOf(QemuBackend);
    expect(b.name).toBe("qemu");
  });

  test("other platforms -> unsupported, exit code 4", async () => {
    const e = await selectBackend(defaultConfig(), paths, "win32").catch((x) => x);
    expect(e).toBeInstanceOf(HavmError);
    expect((e as HavmError).exitCode).toBe(ExitCode.unsupported);
    expect((e as HavmError).message).toContain("win32");
  });

  test.skipIf(vzPresent)("darwin without the vz module -> a clear error", async () => {
    const e = await selectBackend(defaultConfig(), resolvePaths({ HOME: "/Users/test" }, "darwin"), "darwin").catch((x) => x);
    expect(e).toBeInstanceOf(HavmError);
    expect((e as HavmError).code).toBe("backend.vz.missing");
  });

  test.skipIf(!vzPresent)("darwin -> vz, loaded lazily (no native code touched until used)", async () => {
    const b = await selectBackend(defaultConfig(), resolvePaths({ HOME: "/Users/test" }, "darwin"), "darwin");
    expect(b.name).toBe("vz");
  });
});
