/**
 * Dry-run plans: llama.cpp's no-alloc load (the same mechanism its own fitter uses) tells per
 * device how many bytes of weights, KV cache and compute a configuration needs, before anything
 * is allocated. Every load is checked against it: VRAM for a CUDA load, so a model that does not
 * fit is refused with the plan instead of spilling to the CPU or dying of out-of-memory; and RAM
 * for every load, so a context beyond the machine's memory is a typed error rather than the
 * kernel's OOM killer.
 */
import { stat } from 'node:fs/promises';
import { CudaLlamaError, ErrorCode } from './errors.js';
import { formatBytes } from './format.js';
import type { GpuDecision } from './gpu/decision.js';
import { hostMemory, type HostMemory } from './host-memory.js';
import { listDevices } from './gpu/rpc.js';
import { layerDevices, memoryByDevice, type DeviceUsage } from './layer-report.js';
import type {
  NativeAddon,
  NativeContextParams,
  NativeDevice,
  NativeLayerPlacement,
  NativeMemoryEntry,
  NativeModelParams,
} from './binding/native.js';

export interface PlannedDevice extends DeviceUsage {
  totalBytes: number;
  /**
   * Free memory now: what the device reports, or for the CPU the RAM available to the load
   * (plan.host.availableBytes, since ggml reports all of RAM as free); null for host buffers that
   * belong to no device.
   */
  freeBytes: number | null;
  /** The device has room for its share; for the CPU, plan.host.fits. */
  fits: boolean;
}

/**
 * What the load takes of system RAM, and whether the machine has it. Weights that are
 * memory-mapped are page cache the kernel can drop and read again, so they are listed but not
 * counted; everything else is memory the process keeps.
 */
export interface PlannedHost {
  /** Weights copied into RAM: all host weights without mmap, repacked ones (CPU_REPACK) with it. */
  weightsBytes: number;
  /** Weights the load memory-maps from the file: listed, not counted. */
  mappedWeightsBytes: number;
  /** KV-cache buffers in RAM. */
  kvCacheBytes: number;
  /** Compute buffers in RAM (pinned host buffers of a GPU included). */
  computeBytes: number;
  /** llama.cpp's bookkeeping of every KV-cache cell (positions, sequence sets), which its memory breakdown leaves out. */
  kvCellsBytes: number;
  /** weightsBytes + kvCacheBytes + computeBytes + kvCellsBytes. */
  neededBytes: number;
  /** Kept free on top of neededBytes, for what no breakdown counts (see hostMarginBytes). */
  marginBytes: number;
  /** RAM available to new allocations now: MemAvailable, or a tighter cgroup limit. */
  availableBytes: number;
  /** Where availableBytes comes from: 'meminfo', 'cgroup' or 'freemem'. */
  availableSource: HostMemory['source'];
  /** neededBytes + marginBytes ≤ availableBytes. */
  fits: boolean;
}

export interface LoadPlan {
  policy: { requested: GpuDecision['requested']; target: GpuDecision['target']; gpuLayers: GpuDecision['gpuLayers'] };
  contextSize: number;
  layers: { index: number; device: string }[];
  output: string;
  devices: PlannedDevice[];
  /** System RAM: what the load keeps of it, and what is available. */
  host: PlannedHost;
  /** Every device has room for its share, and RAM for the host's. */
  fits: boolean;
}

/**
 * Host bytes llama.cpp keeps per KV-cache cell (llama_kv_cells in src/llama-kv-cells.h): pos and
 * shift (llama_pos each), ext (x, y, tok: 12 bytes) and the cell's sequence set, a bitset of
 * LLAMA_MAX_SEQ = 256 bits. Real allocations even in a no-alloc dry run; a test measures it.
 */
export const KV_CELL_BYTES = 4 + 4 + 12 + 256 / 8;

/**
 * RAM kept free beyond the plan: 128 MiB plus 5% of what the plan needs. It covers what no
 * breakdown counts (the output buffer of logits, graph metadata, thread stacks) and the estimate
 * in MemAvailable, without refusing small models in small containers.
 */
export function hostMarginBytes(neededBytes: number): number {
  return 128 * 2 ** 20 + Math.ceil(neededBytes * 0.05);
}

/** Host memory of a dry run's rows: system RAM is where a buffer's device is the CPU or none. */
function inHostMemory(entry: NativeMemoryEntry): boolean {
  return entry.isHost || entry.device === null || entry.deviceType === 'cpu' || entry.deviceType === 'accel';
}

export interface HostPlanInputs {
  /** The dry run's llama_get_memory_breakdown rows (made with mmap off: llama.cpp's no-alloc pass maps nothing). */
  memory: NativeMemoryEntry[];
  /** KV-cache cells of the context (llama_n_ctx). */
  cells: number;
  /** The real load memory-maps the file. */
  mmap: boolean;
  host: Pick<HostMemory, 'availableBytes' | 'source'>;
}

/**
 * The RAM decision, pure. Under mmap llama.cpp maps the weights of host buffer types (the CPU's
 * own, and a GPU's pinned host type, which the loader swaps for the CPU's when mapping); weights
 * in extra CPU buffer types (CPU_REPACK) are rearranged copies, held in RAM either way.
 */
export function planHost({ memory, cells, mmap, host }: HostPlanInputs): PlannedHost {
  let weightsBytes = 0;
  let mappedWeightsBytes = 0;
  let kvCacheBytes = 0;
  let computeBytes = 0;
  for (const entry of memory.filter(inHostMemory)) {
    if (mmap && entry.isHost) mappedWeightsBytes += entry.model;
    else weightsBytes += entry.model;
    kvCacheBytes += entry.context;
    computeBytes += entry.compute;
  }
  const kvCellsBytes = cells * KV_CELL_BYTES;
  const neededBytes = weightsBytes + kvCacheBytes + computeBytes + kvCellsBytes;
  const marginBytes = hostMarginBytes(neededBytes);
  return {
    weightsBytes,
    mappedWeightsBytes,
    kvCacheBytes,
    computeBytes,
    kvCellsBytes,
    neededBytes,
    marginBytes,
    availableBytes: host.availableBytes,
    availableSource: host.source,
    fits: neededBytes + marginBytes <= host.availableBytes,
  };
}

/**
 * Whether the real load maps the file. llama.cpp's AUTO mode (no loadMode sent) maps it unless a
 * device of the load lacks the mmap_support capability, which only integrated GPUs lack.
 */
export function loadMaps(modelParams: NativeModelParams, devices: NativeDevice[]): boolean {
  if (modelParams.loadMode !== undefined && modelParams.loadMode !== -1) return modelParams.loadMode === 1 || modelParams.loadMode === 3;
  return !(modelParams.devices ?? []).some((name) => devices.find((d) => d.name === name)?.type === 'igpu');
}

const gib = (n: number) => formatBytes(n, { unit: 'GiB', digits: 2 });

function availableText(host: Pick<PlannedHost, 'availableBytes' | 'availableSource'>): string {
  const from = { meminfo: 'MemAvailable', cgroup: 'the cgroup memory limit', freemem: 'os.freemem()' }[host.availableSource];
  return `${gib(host.availableBytes)} is available (${from})`;
}

const memoryRemedy =
  'lower contextSize or sequences (the KV cache holds contextSize × sequences tokens), use a smaller kvCacheType ' +
  "('q8_0' is about half of 'f16', which is half of 'f32'), lower ubatchSize (compute buffers grow with it), or free memory; " +
  'Llama.plan() shows the numbers before a load';

/**
 * The check that runs before the dry run: the dry run itself allocates the KV cells'
 * bookkeeping for real, so a context whose bookkeeping alone exceeds RAM is refused first.
 */
export function refuseCellsBeyondRam(contextParams: NativeContextParams, host: HostMemory = hostMemory()): void {
  // llama.cpp pads n_ctx up to a multiple of 256.
  const cells = Math.ceil((contextParams.nCtx ?? 0) / 256) * 256;
  const neededBytes = cells * KV_CELL_BYTES;
  const marginBytes = hostMarginBytes(neededBytes);
  if (neededBytes + marginBytes <= host.availableBytes) return;
  const sequences = contextParams.nSeqMax ?? 1;
  throw new CudaLlamaError(
    ErrorCode.INSUFFICIENT_MEMORY,
    `a context of ${cells} KV cells (contextSize ${(contextParams.nCtx ?? 0) / sequences} × sequences ${sequences}) needs ${gib(neededBytes)} of RAM for ` +
      `llama.cpp's bookkeeping of the cells alone, before the KV cache itself, and ${availableText({ availableBytes: host.availableBytes, availableSource: host.source })}; nothing was allocated`,
    {
      remedy: memoryRemedy,
      details: { cells, kvCellsBytes: neededBytes, marginBytes, availableBytes: host.availableBytes, availableSource: host.source },
    },
  );
}

/** The refusal of a load whose plan does not fit in RAM (ERR_INSUFFICIENT_MEMORY), sizes in the message and in details.plan. */
export function insufficientMemoryError(plan: LoadPlan): CudaLlamaError {
  const h = plan.host;
  const part = (n: number) => formatBytes(n);
  const mapped = h.mappedWeightsBytes > 0 ? `; ${part(h.mappedWeightsBytes)} of memory-mapped weights not counted` : '';
  return new CudaLlamaError(
    ErrorCode.INSUFFICIENT_MEMORY,
    `the load needs ${gib(h.neededBytes)} of RAM (weights ${part(h.weightsBytes)}, KV cache ${part(h.kvCacheBytes)}, compute ${part(h.computeBytes)}, ` +
      `KV cells ${part(h.kvCellsBytes)}${mapped}) plus a margin of ${part(h.marginBytes)}, and ${availableText(h)}; nothing was allocated`,
    {
      remedy: memoryRemedy,
      details: { plan },
    },
  );
}

export interface DryRunHost {
  /** The memory to plan against; default: read now (hostMemory()). */
  host?: HostMemory;
}

/** What a dry run measures: bytes and placement, which depend on the file and the parameters only. */
interface Measured {
  memory: NativeMemoryEntry[];
  placement: NativeLayerPlacement;
  contextSize: number;
  cells: number;
}

/**
 * Measurements of recent configurations. A dry run costs one more parse of the vocabulary (as
 * much as the rest of a small model's load), and programs load one configuration again and
 * again; free memory is read anew for every plan, only the bytes are kept.
 */
const measured = new Map<string, Measured>();
const MEASURED_KEPT = 16;

async function measure(
  addon: NativeAddon,
  path: string,
  modelParams: NativeModelParams,
  contextParams: NativeContextParams,
): Promise<Measured> {
  const file = await stat(path);
  const key = JSON.stringify([path, file.ino, file.size, file.mtimeMs, modelParams, contextParams]);
  const known = measured.get(key);
  if (known) return known;
  // llama.cpp's no-alloc pass maps nothing (it asserts on a mapped one), so it reads as load mode none.
  const model = await addon.Model.load(path, { ...modelParams, noAlloc: true, loadMode: 0 });
  try {
    const context = await addon.Context.create(model, contextParams);
    try {
      const info = context.info();
      const result: Measured = Object.freeze({
        memory: addon.memoryBreakdown(context),
        placement: addon.layerPlacement(model),
        contextSize: info.contextSize,
        cells: info.totalContextSize,
      });
      if (measured.size >= MEASURED_KEPT) measured.delete(measured.keys().next().value!);
      measured.set(key, result);
      return result;
    } finally {
      context.dispose();
    }
  } finally {
    model.dispose();
  }
}

/**
 * Runs the dry run (or reuses its bytes for a configuration measured before) and judges them
 * against the free memory of now. The model and context it makes hold no tensor memory and are
 * freed at once.
 */
export async function dryRun(
  addon: NativeAddon,
  path: string,
  decision: GpuDecision,
  modelParams: NativeModelParams,
  contextParams: NativeContextParams,
  options: DryRunHost = {},
): Promise<LoadPlan> {
  const { memory, placement, contextSize, cells } = await measure(addon, path, modelParams, contextParams);
  const devices = listDevices(addon);
  const host = planHost({ memory, cells, mmap: loadMaps(modelParams, devices), host: options.host ?? hostMemory() });
  const planned = planDevices(memoryByDevice(memory), devices, host);
  return Object.freeze({
    policy: { requested: decision.requested, target: decision.target, gpuLayers: decision.gpuLayers },
    contextSize,
    layers: layerDevices(placement),
    output: placement.output ?? 'CPU',
    devices: planned,
    host,
    fits: host.fits && planned.every((d) => d.fits),
  });
}

/** ggml's CPU device reports all of RAM as free; its row is judged by the host plan instead. */
function isHostDevice(device: NativeDevice | undefined): boolean {
  return device?.type === 'cpu' || device?.type === 'accel';
}

export function planDevices(usage: DeviceUsage[], devices: NativeDevice[], host?: PlannedHost): PlannedDevice[] {
  return usage.map((u) => {
    const device = devices.find((d) => d.name === u.device);
    const totalBytes = u.weightsBytes + u.kvCacheBytes + u.computeBytes;
    if (host && isHostDevice(device)) return { ...u, totalBytes, freeBytes: host.availableBytes, fits: host.fits };
    const freeBytes = device ? device.memoryFree : null;
    return { ...u, totalBytes, freeBytes, fits: freeBytes === null || totalBytes <= freeBytes };
  });
}

/** The GPU devices have room for their shares (RAM aside): what decides whether a CUDA load stays on the GPU. */
export function gpuFits(plan: LoadPlan, devices: NativeDevice[]): boolean {
  return plan.devices.every((d) => d.fits || isHostDevice(devices.find((n) => n.name === d.device)));
}

export function formatPlan(plan: LoadPlan): string {
  return plan.devices
    .map(
      (d) =>
        `${d.device}: needs ${gib(d.totalBytes)} (weights ${gib(d.weightsBytes)}, KV ${gib(d.kvCacheBytes)}, compute ${gib(d.computeBytes)})` +
        `${d.freeBytes === null ? '' : `, ${gib(d.freeBytes)} free`}${d.fits ? '' : ' - DOES NOT FIT'}`,
    )
    .join('; ');
}
