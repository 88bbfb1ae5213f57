// A writer killed with SIGKILL at random moments never leaves a registry that fails to parse: it is always
// the old or the new state (writeFileAtomic: temp file, fsync, rename).
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UsbRegistry } from "../../src/usb/registry.ts";

const root = mkdtempSync(join(tmpdir(), "havm-usbcrash-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

test("registry survives SIGKILL mid-write", async () => {
  const path = join(root, "usb.json");
  const reg = new UsbRegistry(path);
  reg.write([{ vendorId: 1, productId: 1 }]);
  const seen = new Set<number>();
  for (let round = 0; round < 12; round++) {
    const child = Bun.spawn([process.execPath, join(import.meta.dir, "fixtures", "registry-writer.ts"), path], { stdout: "pipe", stderr: "inherit" });
    const reader = child.stdout.getReader();
    await reader.read(); // "ready": the writer is looping now
    await Bun.sleep(5 + Math.floor(Math.random() * 60));
    child.kill("SIGKILL");
    await child.exited;
    expect(child.signalCode).toBe("SIGKILL");
    const devices = reg.list(); // throws if half-written
    expect([1, 150, 300]).toContain(devices.length);
    expect(devices.every((d) => d.productId === devices.length || devices.length === 1)).toBe(true);
    seen.add(devices.length);
  }
  // The writer really was writing both states (not killed before its first write every time).
  expect(seen.has(150) || seen.has(300)).toBe(true);
  // The next write sweeps the temp files the killed writers left behind.
  reg.write(reg.list());
  expect(readdirSync(root).filter((n) => n.endsWith(".tmp"))).toEqual([]);
}, 30_000);
