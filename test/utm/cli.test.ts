// `havm import-utm` as a user runs it: the real entry point, a temp HOME, exit codes and messages.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolvePaths } from "../../src/config/paths.ts";
import { BUN, ROOT, runHavm } from "../support/cli.ts";
import { MIB, sparseRaw, tempDir, writeBundle, writeEfiVars } from "./fixtures.ts";

// Linux-only expectations (XDG paths, the qemu backend reusing edk2 variables).
describe.skipIf(process.platform !== "linux")("havm import-utm (CLI)", () => {
  function bundleIn(home: string): { bundle: string; disk: string } {
    const bundle = writeBundle(home, {
      backend: "QEMU",
      drives: [{ name: "disk.img" }],
      cpuCount: 0,
      memoryMiB: 3072,
      network: [{ Mode: "Emulated", MacAddress: "02:AA:BB:CC:DD:EE" }],
    });
    const disk = join(bundle, "Data", "disk.img");
    sparseRaw(disk, 32 * MIB, [0, 16 * MIB]);
    writeEfiVars(join(bundle, "Data", "efi_vars.fd"));
    return { bundle, disk };
  }

  test("imports, prints what was and was not imported; then refuses a second import without --force", () => {
    const home = tempDir("havm-utm-cli-");
    const { bundle, disk } = bundleIn(home);
    const paths = resolvePaths({ HOME: home }, "linux");
    const r = runHavm(["import-utm", bundle], { home });
    expect(r.stderr).not.toContain("ERROR");
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("imported Home Assistant (UTM QEMU backend):");
    expect(r.stdout).toContain(`  disk: Data/disk.img (raw, 32 MiB) -> ${paths.vm.disk} (sparse copy)`);
    expect(r.stdout).toContain(`  EFI variables: Data/efi_vars.fd -> ${paths.vm.nvram}`);
    expect(r.stdout).toContain("not imported:\n");
    expect(r.stdout).toContain("  SSH keys: UTM keeps none for the guest");
    expect(r.stderr).toContain("reusing UTM's edk2 variable store Data/efi_vars.fd");
    expect(Buffer.compare(readFileSync(disk), readFileSync(paths.vm.disk))).toBe(0);
    expect(readFileSync(paths.configFile, "utf8")).toBe('vm:\n  cpu_count: 4\n  memory_size: 3072 MiB\nnetwork:\n  type: nat\n  mac: "02:aa:bb:cc:dd:ee"\n');

    const again = runHavm(["import-utm", bundle], { home });
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toContain(`havm already has a VM in ${paths.vm.dir} (haos.img, NVRAM); importing would replace it`);
    expect(again.stderr).toContain("hint: Add --force to replace it");
    expect(runHavm(["import-utm", bundle, "--force"], { home }).exitCode).toBe(0);
  });

  test("--config writes that file", () => {
    const home = tempDir("havm-utm-cli-");
    const { bundle } = bundleIn(home);
    const config = join(home, "custom.yml");
    writeFileSync(config, "# custom\nlogging:\n  level: info\n");
    const r = runHavm(["import-utm", bundle, "--config", config], { home });
    expect(r.exitCode).toBe(0);
    expect(readFileSync(config, "utf8")).toStartWith("# custom\nlogging:\n  level: info\nvm:\n  cpu_count: 4\n");
    expect(existsSync(resolvePaths({ HOME: home }, "linux").configFile)).toBe(false);
  });

  test("exit 2 for a path that is not a bundle, 3 while havm runs the VM", () => {
    const home = tempDir("havm-utm-cli-");
    const notBundle = runHavm(["import-utm", home], { home });
    expect(notBundle.exitCode).toBe(2);
    expect(notBundle.stderr).toContain(`${home} is not a UTM bundle: it has no config.plist`);

    const { bundle } = bundleIn(home);
    const paths = resolvePaths({ HOME: home }, "linux");
    mkdirSync(paths.vm.dir, { recursive: true });
    writeFileSync(paths.vm.lock, JSON.stringify({ pid: process.pid }));
    const busy = runHavm(["import-utm", bundle], { home });
    expect(busy.exitCode).toBe(3);
    expect(busy.stderr).toContain(`havm is running this VM (${paths.vm.dir})`);
    expect(busy.stderr).toContain("hint: Stop it first (havm stop)");
  });
});

describe.skipIf(process.platform !== "linux")("Ctrl-C during the copy", () => {
  test("exits 130, leaves the previous VM and config untouched, and removes its temp files and lock", async () => {
    const home = tempDir("havm-utm-cli-");
    const bundle = writeBundle(home, { backend: "QEMU", drives: [{ name: "disk.img" }] });
    // Fully written (no holes), so the copy takes long enough to be interrupted.
    const disk = join(bundle, "Data", "disk.img");
    const block = new Uint8Array(MIB).fill(0x5a);
    const parts: Uint8Array[] = Array.from({ length: 384 }, () => block);
    await Bun.write(disk, new Blob(parts));
    const paths = resolvePaths({ HOME: home }, "linux");
    mkdirSync(paths.vm.dir, { recursive: true });
    writeFileSync(paths.vm.disk, "old disk");
    mkdirSync(paths.configDir, { recursive: true });
    writeFileSync(paths.configFile, "vm:\n  cpu_count: 6\n");

    const proc = Bun.spawn([BUN, join(ROOT, "src/main.ts"), "import-utm", bundle, "--force"], {
      cwd: home,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home },
      stdout: "pipe",
      stderr: "pipe",
    });
    const deadline = Date.now() + 20_000;
    let sawTemp = false;
    while (Date.now() < deadline && proc.exitCode === null) {
      if (readdirSync(paths.vm.dir).some((n) => n.startsWith(".haos.img.") || n.startsWith("..haos.img."))) {
        sawTemp = true;
        break;
      }
      await Bun.sleep(2);
    }
    proc.kill("SIGINT");
    const code = await proc.exited;
    const stderr = await new Response(proc.stderr).text();
    if (!sawTemp) throw new Error(`the copy finished before it could be interrupted (exit ${code}): ${stderr}`);
    expect(code).toBe(130);
    expect(stderr).toContain(`import interrupted by SIGINT; nothing was changed in ${paths.vm.dir}`);
    expect(readFileSync(paths.vm.disk, "utf8")).toBe("old disk");
    expect(readFileSync(paths.configFile, "utf8")).toBe("vm:\n  cpu_count: 6\n");
    expect(readdirSync(paths.vm.dir).sort()).toEqual(["haos.img"]);
  });
});
