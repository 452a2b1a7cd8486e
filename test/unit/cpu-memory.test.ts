// The RAM check with injected facts: available memory from /proc and cgroup files, and the
// decision from a dry run's memory rows.
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { cgroupMemory, hostMemory, memInfoBytes, type ReadText } from '../../lib/host-memory.js';
import {
  KV_CELL_BYTES,
  gpuFits,
  hostMarginBytes,
  insufficientMemoryError,
  loadMaps,
  planDevices,
  planHost,
  refuseCellsBeyondRam,
  type LoadPlan,
} from '../../lib/plan.js';
import type { NativeDevice, NativeMemoryEntry } from '../../lib/binding/native.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;

function files(contents: Record<string, string>): ReadText {
  return (path) => contents[path] ?? null;
}

const meminfo = 'MemTotal:       24683568 kB\nMemFree:         2000000 kB\nMemAvailable:   20000000 kB\nBuffers:  10 kB\n';

describe('hostMemory', () => {
  it('takes MemAvailable, not MemFree: page cache is given back on demand', () => {
    expect(memInfoBytes(meminfo, 'MemAvailable')).toBe(20_000_000 * 1024);
    const host = hostMemory({ read: files({ '/proc/meminfo': meminfo }), freemem: () => 1 });
    expect(host).toEqual({ availableBytes: 20_000_000 * 1024, source: 'meminfo', memAvailableBytes: 20_000_000 * 1024, cgroup: null });
  });

  it('falls back to os.freemem() where /proc/meminfo cannot be read', () => {
    expect(hostMemory({ read: files({}), freemem: () => 5 * GiB })).toMatchObject({
      availableBytes: 5 * GiB,
      source: 'freemem',
      memAvailableBytes: null,
    });
  });

  it('a cgroup v2 limit tighter than MemAvailable wins: limit − usage + inactive file pages', () => {
    const read = files({
      '/proc/meminfo': meminfo,
      '/proc/self/cgroup': '0::/\n',
      '/sys/fs/cgroup/memory.max': `${4 * GiB}\n`,
      '/sys/fs/cgroup/memory.current': `${3 * GiB}\n`,
      '/sys/fs/cgroup/memory.stat': `anon ${2 * GiB}\nfile ${GiB}\nactive_file ${512 * MiB}\ninactive_file ${256 * MiB}\n`,
    });
    expect(hostMemory({ read })).toEqual({
      availableBytes: GiB + 256 * MiB,
      source: 'cgroup',
      memAvailableBytes: 20_000_000 * 1024,
      cgroup: {
        path: '/sys/fs/cgroup',
        limitBytes: 4 * GiB,
        usageBytes: 3 * GiB,
        reclaimableBytes: 256 * MiB,
        availableBytes: GiB + 256 * MiB,
      },
    });
  });

  it("walks a v2 cgroup's ancestors and keeps the tightest limit; 'max' is no limit", () => {
    const read = files({
      '/proc/self/cgroup': '0::/app.slice/job.scope\n',
      '/sys/fs/cgroup/app.slice/job.scope/cgroup.controllers': 'memory',
      '/sys/fs/cgroup/app.slice/job.scope/memory.max': 'max\n',
      '/sys/fs/cgroup/app.slice/memory.max': `${8 * GiB}\n`,
      '/sys/fs/cgroup/app.slice/memory.current': `${7 * GiB}\n`,
    });
    expect(cgroupMemory(read)).toMatchObject({ path: '/sys/fs/cgroup/app.slice', availableBytes: GiB, reclaimableBytes: 0 });
  });

  it("reads a v2 container's own root when its path lies outside the mount", () => {
    const read = files({
      '/proc/self/cgroup': '0::/kubepods/pod1/abc\n',
      '/sys/fs/cgroup/memory.max': `${2 * GiB}\n`,
      '/sys/fs/cgroup/memory.current': `${GiB}\n`,
    });
    expect(cgroupMemory(read)).toMatchObject({ path: '/sys/fs/cgroup', availableBytes: GiB });
  });

  it('cgroup v1: hierarchical_memory_limit, and the page-rounded 2^63 means no limit', () => {
    const limited = files({
      '/proc/self/cgroup': '4:memory:/docker/abc\n1:cpu:/\n',
      '/sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes': `${GiB}\n`,
      '/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes': '9223372036854771712\n',
      '/sys/fs/cgroup/memory/docker/abc/memory.stat': `cache 1\nhierarchical_memory_limit ${3 * GiB}\ntotal_inactive_file ${128 * MiB}\n`,
    });
    expect(cgroupMemory(limited)).toMatchObject({ limitBytes: 3 * GiB, availableBytes: 2 * GiB + 128 * MiB });
    const unlimited = files({
      '/proc/self/cgroup': '4:memory:/\n',
      '/sys/fs/cgroup/memory/memory.usage_in_bytes': `${GiB}\n`,
      '/sys/fs/cgroup/memory/memory.limit_in_bytes': '9223372036854771712\n',
      '/sys/fs/cgroup/memory/memory.stat': 'hierarchical_memory_limit 9223372036854771712\n',
    });
    expect(cgroupMemory(unlimited)).toBeNull();
  });

  it('never reports less than nothing', () => {
    const read = files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/memory.max': '100\n', '/sys/fs/cgroup/memory.current': '200\n' });
    expect(cgroupMemory(read)?.availableBytes).toBe(0);
  });
});

/** Rows as llama_get_memory_breakdown gives them for a CPU dry run (weights in the CPU's own buffer). */
const cpuRows = (kv: number, compute: number, repacked = 0): NativeMemoryEntry[] => [
  ...(repacked
    ? [{ bufferType: 'CPU_REPACK', device: 'CPU', deviceType: 'cpu', isHost: false, model: repacked, context: 0, compute: 0 }]
    : []),
  { bufferType: 'CPU', device: null, deviceType: null, isHost: true, model: 100 * MiB, context: kv, compute },
];

describe('planHost: the RAM decision', () => {
  const host = { availableBytes: 10 * GiB, source: 'meminfo' as const };

  it('counts KV cache, compute and cell bookkeeping; mapped weights are listed, not counted', () => {
    const plan = planHost({ memory: cpuRows(4 * GiB, GiB), cells: 1 << 20, mmap: true, host });
    expect(plan).toMatchObject({
      weightsBytes: 0,
      mappedWeightsBytes: 100 * MiB,
      kvCacheBytes: 4 * GiB,
      computeBytes: GiB,
      kvCellsBytes: (1 << 20) * KV_CELL_BYTES,
    });
    expect(plan.neededBytes).toBe(5 * GiB + (1 << 20) * KV_CELL_BYTES);
    expect(plan.marginBytes).toBe(hostMarginBytes(plan.neededBytes));
    expect(plan).toMatchObject({ availableBytes: 10 * GiB, availableSource: 'meminfo', fits: true });
  });

  it('counts the weights without mmap, and repacked weights always', () => {
    expect(planHost({ memory: cpuRows(0, 0, 5 * MiB), cells: 0, mmap: false, host })).toMatchObject({
      weightsBytes: 105 * MiB,
      mappedWeightsBytes: 0,
    });
    expect(planHost({ memory: cpuRows(0, 0, 5 * MiB), cells: 0, mmap: true, host })).toMatchObject({
      weightsBytes: 5 * MiB,
      mappedWeightsBytes: 100 * MiB,
    });
  });

  it('refuses what does not leave the margin free', () => {
    const margin = (n: number) => hostMarginBytes(n);
    const needed = 9 * GiB;
    const fitting = planHost({
      memory: cpuRows(needed, 0),
      cells: 0,
      mmap: true,
      host: { availableBytes: needed + margin(needed), source: 'cgroup' },
    });
    expect(fitting.fits).toBe(true);
    const short = planHost({
      memory: cpuRows(needed, 0),
      cells: 0,
      mmap: true,
      host: { availableBytes: needed + margin(needed) - 1, source: 'cgroup' },
    });
    expect(short.fits).toBe(false);
    expect(hostMarginBytes(0)).toBe(128 * MiB);
    expect(hostMarginBytes(20 * GiB)).toBe(128 * MiB + GiB);
  });

  it('for a CUDA load counts only what lives in RAM: pinned host buffers yes, VRAM no', () => {
    const memory: NativeMemoryEntry[] = [
      { bufferType: 'CUDA0', device: 'CUDA0', deviceType: 'gpu', isHost: false, model: 4 * GiB, context: 2 * GiB, compute: GiB },
      { bufferType: 'CUDA_Host', device: 'CUDA0', deviceType: 'gpu', isHost: true, model: 300 * MiB, context: 0, compute: 50 * MiB },
      { bufferType: 'CPU', device: null, deviceType: null, isHost: true, model: 200 * MiB, context: 0, compute: 0 },
    ];
    expect(planHost({ memory, cells: 0, mmap: false, host })).toMatchObject({
      weightsBytes: 500 * MiB,
      kvCacheBytes: 0,
      computeBytes: 50 * MiB,
    });
    // Under mmap the loader swaps a GPU's host buffer type for the CPU's, and maps it.
    expect(planHost({ memory, cells: 0, mmap: true, host })).toMatchObject({ weightsBytes: 0, mappedWeightsBytes: 500 * MiB });
  });
});

const devices: NativeDevice[] = [
  { index: 0, name: 'CPU', description: 'cpu', type: 'cpu', backend: 'CPU', memoryFree: 64 * GiB, memoryTotal: 64 * GiB, deviceId: null },
  { index: 1, name: 'CUDA0', description: 'gpu', type: 'gpu', backend: 'CUDA', memoryFree: 8 * GiB, memoryTotal: 24 * GiB, deviceId: null },
  { index: 2, name: 'iGPU', description: 'igpu', type: 'igpu', backend: 'Vulkan', memoryFree: GiB, memoryTotal: GiB, deviceId: null },
];

describe('planDevices, gpuFits and loadMaps', () => {
  it('judges the CPU row by the host plan (ggml reports all of RAM as free), GPUs by their free memory', () => {
    const host = planHost({ memory: cpuRows(20 * GiB, 0), cells: 0, mmap: true, host: { availableBytes: 16 * GiB, source: 'meminfo' } });
    const usage = [
      { device: 'CPU', weightsBytes: 0, kvCacheBytes: 20 * GiB, computeBytes: 0 },
      { device: 'CUDA0', weightsBytes: 4 * GiB, kvCacheBytes: GiB, computeBytes: GiB },
    ];
    const planned = planDevices(usage, devices, host);
    expect(planned[0]).toMatchObject({ freeBytes: 16 * GiB, fits: false });
    expect(planned[1]).toMatchObject({ freeBytes: 8 * GiB, fits: true, totalBytes: 6 * GiB });
    const plan = { devices: planned } as LoadPlan;
    expect(gpuFits(plan, devices)).toBe(true);
    expect(gpuFits({ devices: planDevices([{ ...usage[1]!, weightsBytes: 7 * GiB }], devices, host) } as LoadPlan, devices)).toBe(false);
  });

  it("llama.cpp's AUTO load mode maps unless an integrated GPU takes part; mmap: true/false decide", () => {
    expect(loadMaps({ devices: [] }, devices)).toBe(true);
    expect(loadMaps({ devices: ['CUDA0'] }, devices)).toBe(true);
    expect(loadMaps({ devices: ['iGPU'] }, devices)).toBe(false);
    expect(loadMaps({ devices: [], loadMode: 0 }, devices)).toBe(false);
    expect(loadMaps({ devices: ['iGPU'], loadMode: 1 }, devices)).toBe(true);
  });
});

describe('the refusals', () => {
  it('refuses a context whose cell bookkeeping alone exceeds RAM, before any dry run', () => {
    const host = { availableBytes: 4 * GiB, source: 'meminfo' as const, memAvailableBytes: 4 * GiB, cgroup: null };
    expect(() => refuseCellsBeyondRam({ nCtx: 1 << 20 }, host)).not.toThrow();
    let error: { code?: string; message?: string; details?: Record<string, unknown> } = {};
    try {
      refuseCellsBeyondRam({ nCtx: 16_777_216 * 8, nSeqMax: 8 }, host);
    } catch (e) {
      error = e as typeof error;
    }
    expect(error.code).toBe(ErrorCode.INSUFFICIENT_MEMORY);
    expect(error.message).toMatch(
      /^a context of 134217728 KV cells \(contextSize 16777216 × sequences 8\) needs 6\.50 GiB of RAM for llama\.cpp's bookkeeping/,
    );
    expect(error.details).toMatchObject({ cells: 134217728, availableBytes: 4 * GiB, availableSource: 'meminfo' });
  });

  it('names every part, what is available and the remedy', () => {
    const host = planHost({
      memory: cpuRows(32 * GiB, 2 * GiB),
      cells: 1 << 25,
      mmap: true,
      host: { availableBytes: 20 * GiB, source: 'cgroup' },
    });
    const error = insufficientMemoryError({ host } as LoadPlan);
    expect(error.code).toBe(ErrorCode.INSUFFICIENT_MEMORY);
    expect(error.message).toMatch(
      /^the load needs 35\.63 GiB of RAM \(weights 0 KiB, KV cache 32\.00 GiB, compute 2\.00 GiB, KV cells 1\.63 GiB; 100 MiB of memory-mapped weights not counted\) plus a margin of 1\.91 GiB, and 20\.00 GiB is available \(the cgroup memory limit\); nothing was allocated/,
    );
    expect(error.remedy).toMatch(/contextSize or sequences.*kvCacheType.*ubatchSize.*free memory/);
    expect(error.details).toEqual({ plan: { host } });
  });
});
