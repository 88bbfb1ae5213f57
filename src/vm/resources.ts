// CPU and memory the VM gets. Defaults are clamped to what the host and backend allow (with a note);
// values the user wrote are refused when they do not fit (exit 2), before anything is touched. Pure.
import type { Config } from "../config/schema.ts";
import { formatSize } from "../config/units.ts";
import { inputError } from "../util/errors.ts";
import type { HostLimits } from "./backend.ts";

export interface Resources {
  cpus: number;
  memoryBytes: number;
  /** Info lines about clamped defaults, for the log. */
  notes: string[];
}

const MIB = 1024 * 1024;

export function resolveResources(config: Config, userSet: ReadonlySet<string>, limits: HostLimits, configFile = "config"): Resources {
  const notes: string[] = [];
  const maxCpus = Math.min(limits.cpus, limits.maxCpus);
  const maxMemory = Math.floor(Math.min(limits.memoryBytes, limits.maxMemoryBytes) / MIB) * MIB;

  let cpus = config.vm.cpu_count;
  if (cpus > maxCpus || cpus < limits.minCpus) {
    if (userSet.has("vm.cpu_count")) {
      throw inputError(
        `vm.cpu_count ${cpus} in ${configFile} does not fit this host: it allows ${limits.minCpus} to ${maxCpus} CPUs`,
        `Set vm.cpu_count to ${maxCpus} or less, or delete the line to use the default.`,
        "config.host-limits",
      );
    }
    const clamped = Math.max(limits.minCpus, Math.min(cpus, maxCpus));
    notes.push(`using ${clamped} CPUs instead of the default ${cpus}: this host allows at most ${maxCpus}`);
    cpus = clamped;
  }

  let memoryBytes = config.vm.memory_size;
  if (memoryBytes > maxMemory || memoryBytes < limits.minMemoryBytes) {
    if (userSet.has("vm.memory_size")) {
      throw inputError(
        `vm.memory_size ${formatSize(memoryBytes)} in ${configFile} does not fit this host: it allows ${formatSize(limits.minMemoryBytes)} to ${formatSize(maxMemory)}`,
        `Set vm.memory_size to ${formatSize(maxMemory)} or less, or delete the line to use the default.`,
        "config.host-limits",
      );
    }
    const clamped = Math.max(limits.minMemoryBytes, Math.min(memoryBytes, maxMemory));
    notes.push(`using ${formatSize(clamped)} of memory instead of the default ${formatSize(memoryBytes)}: this host allows at most ${formatSize(maxMemory)}`);
    memoryBytes = clamped;
  }
  return { cpus, memoryBytes, notes };
}
