// Pure translation of a VmSpec (plus a few host facts) into QEMU's argv. No I/O: golden-tested.
// Everything the guest sees is decided here; qemu.ts only spawns what this returns.
import type { DiskSpec, GuestArch, VmSpec } from "../spec.ts";
import { HavmError, ExitCode } from "../../util/errors.ts";

export type QemuAccel = "kvm" | "tcg";

/** Host-side facts the spec does not carry (resolved by qemu.ts before start). */
export interface QemuHostFacts {
  /** Read-only UEFI code image (OVMF / AAVMF). */
  firmwareCode: string;
  accel: QemuAccel;
  qmpSocket: string;
  /** Guest agent socket; omitted = no agent channel. */
  guestAgentSocket?: string;
  pidFile: string;
  /** qemu-bridge-helper path for `network.mode: bridge`. */
  bridgeHelper?: string;
  /** Start with the CPUs stopped (-S) so QMP is connected before the guest runs. */
  startPaused?: boolean;
}

const MIB = 1024 * 1024;

/** The qemu-system binary name for a guest architecture. */
export function qemuBinaryName(arch: GuestArch): string {
  return arch === "x86_64" ? "qemu-system-x86_64" : "qemu-system-aarch64";
}

/** QEMU's option parser splits on ',': a literal comma inside a value is written twice. */
export function escapeOptionValue(value: string): string {
  return value.replaceAll(",", ",,");
}

/** QEMU device ids: letters, digits, '-', '_', '.', starting with a letter. */
export function deviceId(id: string): string {
  const clean = id.replace(/[^A-Za-z0-9_.-]/g, "_");
  return /^[A-Za-z]/.test(clean) ? clean : `d${clean}`;
}

/** The host cache mode for a disk. Never "unsafe": guest flushes always reach the disk. */
export function cacheMode(disk: DiskSpec): "writeback" | "none" {
  // writeback keeps flushes (fsync on FLUSH); "none" adds O_DIRECT. Both honour guest flushes, so
  // the spec's `sync` ("full" / "fsync") needs no flag here: Linux has only fsync.
  return disk.caching === "cached" ? "writeback" : "none";
}

function machineArgs(spec: VmSpec, host: QemuHostFacts): string[] {
  const cpu = host.accel === "kvm" ? "host" : "max";
  if (spec.arch === "x86_64") {
    return ["-machine", "q35", "-accel", host.accel, "-cpu", cpu];
  }
  // gic-version=max picks GICv3 when the host (KVM) or TCG supports it.
  return ["-machine", "virt,gic-version=max", "-accel", host.accel, "-cpu", cpu];
}

function diskArgs(disk: DiskSpec, index: number): string[] {
  const id = deviceId(disk.id);
  const drive = [
    "if=none",
    `id=${id}`,
    "format=raw",
    `file=${escapeOptionValue(disk.path)}`,
    `cache=${cacheMode(disk)}`,
    ...(disk.readOnly ? ["readonly=on"] : ["discard=unmap"]),
  ].join(",");
  if (disk.bus === "virtio") {
    const dev = ["virtio-blk-pci", `drive=${id}`, `id=${id}-blk`];
    if (index === 0) dev.push("bootindex=0");
    return ["-drive", drive, "-device", dev.join(",")];
  }
  // USB mass storage on the XHCI controller (the CONFIG stick): removable like a real stick.
  return ["-drive", drive, "-device", `usb-storage,bus=xhci.0,drive=${id},id=${id}-usb,removable=on`];
}

function networkArgs(spec: VmSpec, host: QemuHostFacts): string[] {
  const net = spec.network;
  if (net.mode === "bridge") {
    if (!net.interface) {
      throw new HavmError("network.type is bridge but no network.interface is set", {
        hint: "Set network.interface to the host bridge (for example br0) in the config file.",
        exitCode: ExitCode.badInput,
        code: "qemu.bridge.interface",
      });
    }
    const netdev = ["bridge", "id=net0", `br=${escapeOptionValue(net.interface)}`];
    if (host.bridgeHelper) netdev.push(`helper=${escapeOptionValue(host.bridgeHelper)}`);
    return ["-netdev", netdev.join(","), "-device", `virtio-net-pci,netdev=net0,id=nic0,mac=${net.mac}`];
  }
  const user = ["user", "id=net0"];
  if (net.hostname) user.push(`hostname=${escapeOptionValue(net.hostname)}`);
  for (const f of net.forwards) {
    if (!Number.isInteger(f.hostPort) || f.hostPort <= 0 || f.hostPort > 65535) {
      throw new HavmError(`no host port chosen for guest port ${f.guestPort}`, {
        hint: "This is a bug in havm: ports must be picked before QEMU starts.",
        code: "qemu.ports",
      });
    }
    user.push(`hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`);
  }
  return ["-netdev", user.join(","), "-device", `virtio-net-pci,netdev=net0,id=nic0,mac=${net.mac}`];
}

/** The argv after the binary name. */
export function qemuArgs(spec: VmSpec, host: QemuHostFacts): string[] {
  const hasUsbDisk = spec.disks.some((d) => d.bus === "usb");
  if (hasUsbDisk && !spec.usbController) {
    throw new HavmError("a USB disk is in the VM spec but the USB controller is off", {
      hint: "This is a bug in havm: the CONFIG disk needs the XHCI controller.",
      code: "qemu.spec.usb",
    });
  }
  if (spec.memoryBytes % MIB !== 0) {
    throw new HavmError(`memory size ${spec.memoryBytes} is not a whole number of MiB`, {
      hint: "Set vm.memory_size to a whole number of MiB.",
      exitCode: ExitCode.badInput,
      code: "qemu.spec.memory",
    });
  }
  const args: string[] = [
    "-name",
    `guest=${escapeOptionValue(spec.name)}`,
    "-uuid",
    spec.machineIdentifier.uuid,
    ...machineArgs(spec, host),
    "-smp",
    String(spec.cpus),
    "-m",
    `${spec.memoryBytes / MIB}M`,
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    // UTC clock like HAOS expects on bare metal.
    "-rtc",
    "base=utc",
    "-drive",
    `if=pflash,format=raw,unit=0,readonly=on,file=${escapeOptionValue(host.firmwareCode)}`,
    "-drive",
    `if=pflash,format=raw,unit=1,file=${escapeOptionValue(spec.efi.varsPath)}`,
  ];
  spec.disks
    .filter((d) => d.bus === "virtio")
    .forEach((d, i) => args.push(...diskArgs(d, i)));
  args.push(...networkArgs(spec, host));
  if (spec.entropy) {
    args.push("-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0,id=rng0-dev");
  }
  if (spec.balloon) {
    // deflate-on-oom: the guest takes memory back before its OOM killer runs, so a target never strands it.
    args.push("-device", "virtio-balloon-pci,id=balloon0,deflate-on-oom=on,free-page-reporting=on");
  }
  if (spec.usbController) {
    args.push("-device", "qemu-xhci,id=xhci");
    for (const d of spec.disks.filter((d) => d.bus === "usb")) args.push(...diskArgs(d, 0));
  }
  if (spec.watchdog) {
    args.push("-device", "i6300esb,id=watchdog0", "-action", "watchdog=reset");
  }
  args.push(
    "-chardev",
    `file,id=serial0,path=${escapeOptionValue(spec.serialLogPath)},append=on`,
    "-serial",
    "chardev:serial0",
    "-chardev",
    `socket,id=qmp0,path=${escapeOptionValue(host.qmpSocket)},server=on,wait=off`,
    "-mon",
    "chardev=qmp0,mode=control",
  );
  if (host.guestAgentSocket) {
    args.push(
      "-device",
      "virtio-serial-pci,id=virtio-serial0",
      "-chardev",
      `socket,id=qga0,path=${escapeOptionValue(host.guestAgentSocket)},server=on,wait=off`,
      "-device",
      "virtserialport,bus=virtio-serial0.0,chardev=qga0,name=org.qemu.guest_agent.0",
    );
  }
  args.push("-pidfile", host.pidFile);
  if (host.startPaused) args.push("-S");
  return args;
}

/** Run QEMU through `setpriv --pdeathsig KILL` so it dies with havm even when havm is SIGKILLed. */
export function launchArgv(binary: string, args: string[], setprivPath?: string): string[] {
  return setprivPath ? [setprivPath, "--pdeathsig", "KILL", "--", binary, ...args] : [binary, ...args];
}
