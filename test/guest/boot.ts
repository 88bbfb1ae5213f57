// A minimal QEMU launcher for testing the mini-HAOS guest itself (independent of havm's QEMU backend).
// amd64: q35 + OVMF; arm64: virt + AAVMF. TCG (KVM cannot boot firmware on this project's machines), user
// networking with host forwards on 127.0.0.1 only.
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { join } from "node:path";

export const OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd";
export const OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd";
export const AAVMF_CODE = "/usr/share/AAVMF/AAVMF_CODE.fd";
export const AAVMF_VARS = "/usr/share/AAVMF/AAVMF_VARS.fd";

/** Why guest boots of `arch` cannot run here, or undefined when they can. */
export function bootUnavailableReason(arch: "amd64" | "arm64" = "amd64"): string | undefined {
  if (arch === "arm64") {
    if (!Bun.which("qemu-system-aarch64")) return "qemu-system-aarch64 is not installed (Debian: qemu-system-arm)";
    if (!existsSync(AAVMF_CODE)) return `${AAVMF_CODE} is missing (Debian: qemu-efi-aarch64)`;
    return undefined;
  }
  if (!Bun.which("qemu-system-x86_64")) return "qemu-system-x86_64 is not installed (Debian: qemu-system-x86)";
  if (!existsSync(OVMF_CODE)) return `${OVMF_CODE} is missing (Debian: ovmf)`;
  return undefined;
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface BootOptions {
  disk: string;
  /** OVMF variable store: created from the template when missing, kept otherwise (NVRAM persistence). */
  vars: string;
  runDir: string;
  /** A CONFIG stick image attached as USB mass storage. */
  config?: string;
  /** Guest port forwarded as `httpPort` (8123, or 80 for the port80 knob). */
  guestHttpPort?: number;
  memMiB?: number;
  arch?: "amd64" | "arm64";
}

export interface BootedGuest {
  pid: number;
  httpPort: number;
  sshPort: number;
  serialLog: string;
  /** Resolves with QEMU's exit code. */
  exited: Promise<number>;
  /** Send one QMP command (after capabilities negotiation). */
  qmp(command: string): Promise<void>;
  kill(): void;
  serial(): string;
}

export async function bootGuest(o: BootOptions): Promise<BootedGuest> {
  mkdirSync(o.runDir, { recursive: true });
  const arm = o.arch === "arm64";
  if (!existsSync(o.vars)) copyFileSync(arm ? AAVMF_VARS : OVMF_VARS, o.vars);
  const httpPort = await freePort();
  const sshPort = await freePort();
  const qmpSock = join(o.runDir, "qmp.sock");
  const serialLog = join(o.runDir, "serial.log");
  const net =
    `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${httpPort}-:${o.guestHttpPort ?? 8123},` +
    `hostfwd=tcp:127.0.0.1:${sshPort}-:22222`;
  const machine = arm
    ? ["qemu-system-aarch64", "-machine", "virt", "-accel", "tcg", "-cpu", "max,pauth-impdef=on"]
    : ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max"];
  const args = [
    ...machine,
    "-m", String(o.memMiB ?? 512), "-smp", "1", "-nodefaults", "-display", "none", "-no-user-config",
    "-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${arm ? AAVMF_CODE : OVMF_CODE}`,
    "-drive", `if=pflash,format=raw,unit=1,file=${o.vars}`,
    "-drive", `if=none,id=hd0,format=raw,file=${o.disk},cache=writeback`,
    "-device", "virtio-blk-pci,drive=hd0,bootindex=0",
    "-netdev", net, "-device", "virtio-net-pci,netdev=n0,mac=02:00:00:00:00:01",
    "-device", "qemu-xhci,id=xhci",
    "-qmp", `unix:${qmpSock},server=on,wait=off`,
    "-serial", `file:${serialLog}`,
  ];
  if (o.config) {
    args.push("-drive", `if=none,id=cfg,format=raw,readonly=on,file=${o.config}`,
      "-device", "usb-storage,bus=xhci.0,drive=cfg,removable=on");
  }
  const proc = Bun.spawn(args, { stdout: "ignore", stderr: "pipe" });
  const exited = proc.exited;
  return {
    pid: proc.pid,
    httpPort,
    sshPort,
    serialLog,
    exited,
    kill: () => proc.kill("SIGKILL"),
    serial: () => (existsSync(serialLog) ? readFileSync(serialLog, "latin1") : ""),
    qmp: (command: string) =>
      new Promise<void>((resolve, reject) => {
        const sock = connect(qmpSock);
        let buf = "";
        let sent = false;
        sock.on("data", (d) => {
          buf += d.toString();
          if (!sent && buf.includes("QMP")) {
            sent = true;
            sock.write(`{"execute":"qmp_capabilities"}\n{"execute":"${command}"}\n`);
          }
          if ((buf.match(/"return"/g) ?? []).length >= 2) {
            sock.end();
            resolve();
          }
        });
        sock.on("error", reject);
        sock.on("close", () => resolve());
      }),
  };
}

/** Poll until `fn` returns a value (not undefined) or the deadline passes. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, everyMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

/** GET with an optional bearer token; returns status and body, or undefined when no HTTP answer came. */
export async function httpGet(port: number, path: string, token?: string, timeoutMs = 3000): Promise<{ status: number; body: string } | undefined> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: r.status, body: await r.text() };
  } catch {
    return undefined;
  }
}

/** Wait for QEMU to exit; kill it and throw when it does not within the timeout. */
export async function waitExit(g: BootedGuest, timeoutMs: number): Promise<number> {
  const t = Bun.sleep(timeoutMs).then(() => "timeout" as const);
  const r = await Promise.race([g.exited, t]);
  if (r === "timeout") {
    g.kill();
    await g.exited;
    throw new Error(`QEMU did not exit within ${timeoutMs} ms`);
  }
  return r;
}
