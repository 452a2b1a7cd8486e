/**
 * How much RAM a load can still take before the kernel has to kill something. Read from Linux
 * itself: /proc/meminfo's MemAvailable, capped by the memory limit of the process's cgroup, since
 * containers are where the OOM killer strikes first.
 */
import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { posix } from 'node:path';

export interface HostMemory {
  /** Bytes that new allocations can take now: the lowest of the figures below that applies. */
  availableBytes: number;
  /**
   * Where availableBytes comes from: 'meminfo' (MemAvailable), 'cgroup' (a cgroup limit is
   * tighter) or 'freemem' (os.freemem(), where /proc/meminfo cannot be read).
   */
  source: 'meminfo' | 'cgroup' | 'freemem';
  /** /proc/meminfo's MemAvailable; null where it cannot be read. */
  memAvailableBytes: number | null;
  /** The tightest cgroup memory limit of this process; null when none is set. */
  cgroup: CgroupMemory | null;
}

export interface CgroupMemory {
  /** The cgroup folder whose limit is the tightest. */
  path: string;
  limitBytes: number;
  usageBytes: number;
  /** Inactive file pages charged to the cgroup, which the kernel reclaims before it kills. */
  reclaimableBytes: number;
  /** limitBytes − usageBytes + reclaimableBytes. */
  availableBytes: number;
}

/** Reads a text file, or null when it does not exist or cannot be read. */
export type ReadText = (path: string) => string | null;

export interface HostMemorySources {
  read?: ReadText;
  /** os.freemem(): only where /proc/meminfo cannot be read. */
  freemem?: () => number;
}

const CGROUP_ROOT = '/sys/fs/cgroup';
/** cgroup v1 writes "no limit" as a page-rounded 2^63 − 1; anything this large is no limit. */
const NO_LIMIT = 2 ** 62;

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null; // no such file: not Linux, or no cgroup controller of that kind here
  }
}

/** A "Key: N kB" line of /proc/meminfo, in bytes. */
export function memInfoBytes(meminfo: string, key: string): number | null {
  const m = new RegExp(`^${key}:\\s+(\\d+)\\s*kB`, 'm').exec(meminfo);
  return m ? Number(m[1]) * 1024 : null;
}

function statValue(stat: string | null, key: string): number {
  const m = stat === null ? null : new RegExp(`^${key} (\\d+)$`, 'm').exec(stat);
  return m ? Number(m[1]) : 0;
}

function number(text: string | null): number | null {
  if (text === null) return null;
  const value = Number(text.trim());
  return Number.isFinite(value) && text.trim() !== '' ? value : null;
}

function limited(path: string, limitBytes: number | null, usageBytes: number | null, reclaimableBytes: number): CgroupMemory | null {
  if (limitBytes === null || usageBytes === null || limitBytes >= NO_LIMIT) return null;
  const availableBytes = Math.max(0, limitBytes - usageBytes + Math.min(reclaimableBytes, usageBytes));
  return { path, limitBytes, usageBytes, reclaimableBytes, availableBytes };
}

/**
 * cgroup v2: every cgroup from the process's own up to the root of the mount can carry a
 * memory.max, and each one binds; the tightest wins.
 */
function cgroupV2(read: ReadText, cgroupPath: string): CgroupMemory[] {
  const found: CgroupMemory[] = [];
  let dir = posix.join(CGROUP_ROOT, cgroupPath);
  // In a container the process's path may name a cgroup outside its mount namespace.
  if (read(posix.join(dir, 'cgroup.controllers')) === null) dir = CGROUP_ROOT;
  for (;;) {
    const max = read(posix.join(dir, 'memory.max'));
    if (max !== null && max.trim() !== 'max') {
      const stat = read(posix.join(dir, 'memory.stat'));
      const entry = limited(dir, number(max), number(read(posix.join(dir, 'memory.current'))), statValue(stat, 'inactive_file'));
      if (entry) found.push(entry);
    }
    if (dir === CGROUP_ROOT || dir === '/') break;
    dir = posix.dirname(dir);
  }
  return found;
}

/** cgroup v1: memory.stat's hierarchical_memory_limit already folds in the ancestors' limits. */
function cgroupV1(read: ReadText, cgroupPath: string): CgroupMemory[] {
  const mount = posix.join(CGROUP_ROOT, 'memory');
  let dir = posix.join(mount, cgroupPath);
  if (read(posix.join(dir, 'memory.usage_in_bytes')) === null) dir = mount;
  const stat = read(posix.join(dir, 'memory.stat'));
  const hierarchical = stat === null ? null : statValue(stat, 'hierarchical_memory_limit') || null;
  const limit = hierarchical ?? number(read(posix.join(dir, 'memory.limit_in_bytes')));
  const entry = limited(dir, limit, number(read(posix.join(dir, 'memory.usage_in_bytes'))), statValue(stat, 'total_inactive_file'));
  return entry ? [entry] : [];
}

/** The tightest cgroup memory limit of this process, from /proc/self/cgroup (v2 and v1). */
export function cgroupMemory(read: ReadText = readText): CgroupMemory | null {
  const lines = (read('/proc/self/cgroup') ?? '').split('\n');
  const found: CgroupMemory[] = [];
  for (const line of lines) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line.trim()) ?? [];
    if (path === undefined) continue;
    if (controllers === '') found.push(...cgroupV2(read, path));
    else if (controllers!.split(',').includes('memory')) found.push(...cgroupV1(read, path));
  }
  return found.reduce<CgroupMemory | null>(
    (tightest, c) => (tightest === null || c.availableBytes < tightest.availableBytes ? c : tightest),
    null,
  );
}

/**
 * RAM available to new allocations now. MemAvailable rather than os.freemem() (MemFree): page
 * cache is given back on demand, so MemFree alone would refuse loads that work.
 */
export function hostMemory(sources: HostMemorySources = {}): HostMemory {
  const read = sources.read ?? readText;
  const meminfo = read('/proc/meminfo');
  const memAvailableBytes = meminfo === null ? null : memInfoBytes(meminfo, 'MemAvailable');
  const cgroup = cgroupMemory(read);
  // Not Linux (or no /proc): Node's own figure is all there is, and it errs on the safe side.
  const system = memAvailableBytes ?? (sources.freemem ?? freemem)();
  if (cgroup !== null && cgroup.availableBytes < system) {
    return { availableBytes: cgroup.availableBytes, source: 'cgroup', memAvailableBytes, cgroup };
  }
  return { availableBytes: system, source: memAvailableBytes === null ? 'freemem' : 'meminfo', memAvailableBytes, cgroup };
}
