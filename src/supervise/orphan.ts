// After `kill -9` of havm, its hypervisor child may still run against the disk (qemu is normally tied
// to havm with a parent-death signal, but that is Linux-only and best effort). Before taking the lock,
// stop such an orphan so two VMs never run on one disk.
import { readVmLock, isProcessAlive } from "./lock.ts";
import { log } from "../util/log.ts";

/** Kill the VM process recorded in a stale lock, if it still runs. Returns true when one was stopped. */
export function reapOrphanedVm(lockPath: string, waitMs = 10_000): boolean {
  const info = readVmLock(lockPath);
  if (!info?.childPid) return false;
  // The supervisor still runs: its child is not an orphan (acquiring the lock will refuse).
  if (isProcessAlive(info.pid, info.procStart)) return false;
  const child = info.childPid;
  // Only the process we recorded: a recycled pid (other start time) belongs to someone else.
  const childAlive = () => isProcessAlive(child, info.childProcStart);
  if (!childAlive()) return false;
  log.warn("a VM from an earlier havm that was killed is still running; stopping it", { pid: child });
  try {
    process.kill(child, "SIGTERM");
  } catch {
    return false;
  }
  const deadline = Date.now() + waitMs;
  while (childAlive() && Date.now() < deadline) Bun.sleepSync(100);
  if (childAlive()) {
    log.warn("the orphaned VM did not stop; killing it", { pid: child });
    try {
      process.kill(child, "SIGKILL");
    } catch {
      // gone meanwhile
    }
    while (childAlive() && Date.now() < deadline + 5000) Bun.sleepSync(50);
  }
  return true;
}
