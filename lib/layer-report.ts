/**
 * The layer report: where every part of a loaded model lives, built from llama.cpp's APIs (device
 * registry, per-layer device, memory breakdown per buffer type, scheduled graph), never from logs.
 * Plain, frozen, JSON-serializable data, plus a table from toString().
 */
import { formatBytes } from './format.js';
import type { GpuDecision } from './gpu/decision.js';
import { onGpu } from './gpu/devices.js';
import { rpcEndpointOf } from './gpu/rpc.js';
import { placementProblems, type CpuOpsOnGpuMemory, type PlacementProblem } from './gpu/placement.js';
import type { NativeGraphPlacement, NativeLayerPlacement, NativeMemoryEntry } from './binding/native.js';

export interface DeviceUsage {
  /** ggml device name ('CPU', 'CUDA0', 'RPC0', ...), or the buffer type name for host buffers without a device. */
  device: string;
  /** For a remote device of ggml's RPC backend: the rpc-server's 'host:port'. Absent for local devices. */
  endpoint?: string;
  weightsBytes: number;
  kvCacheBytes: number;
  computeBytes: number;
}

export interface GraphUsage {
  /** Graph splits: each split boundary is a copy between backends. */
  splits: number;
  /** Compute ops per backend (views and no-ops excluded). */
  opsByBackend: Record<string, number>;
  /** Ops on the CPU that read weights or KV cache held in GPU memory: 0 unless the GPU backend could not run them. */
  cpuOpsOnGpuMemory: CpuOpsOnGpuMemory;
}

export interface LayerReport {
  policy: {
    requested: GpuDecision['requested'];
    target: GpuDecision['target'];
    gpuLayers: GpuDecision['gpuLayers'];
    fallback: GpuDecision['fallback'];
  };
  layerCount: number;
  /** Device of each repeating layer, in order. */
  layers: { index: number; device: string }[];
  /** Device holding the token-embedding tensor. */
  input: string;
  /** Device the output layer is computed on. */
  output: string;
  /** Device holding the output projection tensor; null for a model without one (an encoder such as BERT). */
  outputTensor: string | null;
  kvCache: { devices: string[]; bytes: number };
  devices: DeviceUsage[];
  /** Where the ops of a generation step (one token per sequence) and of a prompt batch are scheduled. */
  graph: { tokenGeneration: GraphUsage; promptProcessing: GraphUsage };
  offloaded: { layers: number; total: number };
  /**
   * Where a CUDA load differs from what was asked (layers, output layer, KV cache, ops on the CPU);
   * empty when placement is as asked, and always for the CPU. gpu: 'cuda' refuses a load with any.
   */
  problems: PlacementProblem[];
  /** e.g. "offloaded: 22/22 layers to CUDA0; output CUDA0; KV cache CUDA0". */
  summary: string;
}

export interface LayerReportInputs {
  decision: GpuDecision;
  placement: NativeLayerPlacement;
  memory: NativeMemoryEntry[];
  tokenGraph: NativeGraphPlacement;
  promptGraph: NativeGraphPlacement;
  /** The load's offloadKvCache: false asks for the KV cache on the CPU, which is then no problem. */
  offloadKvCache: boolean;
}

const CPU = 'CPU';

function mib(bytes: number): string {
  return formatBytes(bytes, { unit: 'MiB', digits: 1 });
}

/** Bytes per device from llama_get_memory_breakdown's per-buffer-type rows (used by the report and the plan). */
export function memoryByDevice(memory: NativeMemoryEntry[]): DeviceUsage[] {
  const byDevice = new Map<string, DeviceUsage>();
  for (const entry of memory) {
    // Host buffer types without a device (CPU_Mapped: the mmapped file) are CPU memory.
    const device = entry.device ?? (entry.isHost ? CPU : entry.bufferType);
    const endpoint = rpcEndpointOf(device);
    const usage = byDevice.get(device) ?? { device, ...(endpoint ? { endpoint } : {}), weightsBytes: 0, kvCacheBytes: 0, computeBytes: 0 };
    usage.weightsBytes += entry.model;
    usage.kvCacheBytes += entry.context;
    usage.computeBytes += entry.compute;
    byDevice.set(device, usage);
  }
  return [...byDevice.values()].filter((d) => d.weightsBytes + d.kvCacheBytes + d.computeBytes > 0);
}

/** Layer devices with nulls (no device) read as the CPU. */
export function layerDevices(placement: NativeLayerPlacement): { index: number; device: string }[] {
  return placement.layers.map((device, index) => ({ index, device: device ?? CPU }));
}

function graphUsage(graph: NativeGraphPlacement): GraphUsage {
  const { count, examples } = graph.cpuOpsOnGpuMemory;
  return {
    splits: graph.splits,
    opsByBackend: { ...graph.nodesByBackend },
    cpuOpsOnGpuMemory: { count, examples: examples.map((e) => ({ ...e })) },
  };
}

export function buildLayerReport({ decision, placement, memory, tokenGraph, promptGraph, offloadKvCache }: LayerReportInputs): LayerReport {
  const layers = layerDevices(placement);
  const devices = memoryByDevice(memory);
  const kvDevices = devices.filter((d) => d.kvCacheBytes > 0);
  const gpu = (device: string) => onGpu(decision.devices, device);
  const offloadedLayers = layers.filter((l) => gpu(l.device)).length;
  const output = placement.output ?? CPU;
  const kvNames = kvDevices.map((d) => d.device);
  const gpuNames = [...new Set(layers.map((l) => l.device).filter(gpu))];
  const graph = { tokenGeneration: graphUsage(tokenGraph), promptProcessing: graphUsage(promptGraph) };
  const kvCache = { devices: kvNames, bytes: kvDevices.reduce((sum, d) => sum + d.kvCacheBytes, 0) };
  const problems = placementProblems(decision, { layers, output, kvCache, graph }, { offloadKvCache });
  const summary =
    `offloaded: ${offloadedLayers}/${layers.length} layers${gpuNames.length ? ` to ${gpuNames.join(', ')}` : ''}; ` +
    `output ${output}; KV cache ${kvNames.join(', ') || 'none'}` +
    (decision.fallback ? `; CPU FALLBACK: ${decision.fallback.reason}` : '') +
    (problems.length ? `; NOT AS REQUESTED: ${problems.map((p) => p.kind).join(', ')}` : '');

  const report: LayerReport = {
    policy: { requested: decision.requested, target: decision.target, gpuLayers: decision.gpuLayers, fallback: decision.fallback },
    layerCount: layers.length,
    layers,
    input: placement.input ?? CPU,
    output,
    outputTensor: placement.hasOutputTensor ? (placement.outputTensor ?? CPU) : null,
    kvCache,
    devices,
    graph,
    offloaded: { layers: offloadedLayers, total: layers.length },
    problems,
    summary,
  };
  Object.defineProperty(report, 'toString', { value: () => formatLayerReport(report), enumerable: false });
  return deepFreeze(report);
}

/** Groups consecutive layers on one device: "0-21 CUDA0". */
function layerRuns(layers: LayerReport['layers']): string[] {
  const runs: string[] = [];
  let start = 0;
  for (let i = 1; i <= layers.length; i++) {
    if (i === layers.length || layers[i].device !== layers[start].device) {
      runs.push(`${start === i - 1 ? start : `${start}-${i - 1}`} ${layers[start].device}`);
      start = i;
    }
  }
  return runs;
}

export function formatLayerReport(report: LayerReport): string {
  // A remote device's name carries its endpoint ('RPC0 10.0.0.2:50052'): the column fits the longest.
  const deviceNames = report.devices.map((d) => (d.endpoint ? `${d.device} ${d.endpoint}` : d.device));
  const width = Math.max(15, ...deviceNames.map((name) => name.length + 1));
  const lines = [
    `policy: gpu '${report.policy.requested}' -> ${report.policy.target}${report.policy.fallback ? ` (fallback: ${report.policy.fallback.reason})` : ''}`,
    `layers: ${layerRuns(report.layers).join(', ')}`,
    `input (token_embd): ${report.input}   output layer: ${report.output}   output tensor: ${report.outputTensor ?? 'none'}`,
    `KV cache: ${report.kvCache.devices.join(', ') || 'none'} (${mib(report.kvCache.bytes)})`,
    `${'device'.padEnd(width)} weights        KV cache       compute`,
    ...report.devices.map(
      (d, i) => `${deviceNames[i]!.padEnd(width)} ${mib(d.weightsBytes).padEnd(15)}${mib(d.kvCacheBytes).padEnd(15)}${mib(d.computeBytes)}`,
    ),
    `graph (step):    ${report.graph.tokenGeneration.splits} split(s), ops ${JSON.stringify(report.graph.tokenGeneration.opsByBackend)}`,
    `graph (prompt):  ${report.graph.promptProcessing.splits} split(s), ops ${JSON.stringify(report.graph.promptProcessing.opsByBackend)}`,
    ...report.problems.map((p) => `NOT AS REQUESTED (${p.kind}): ${p.message}`),
    report.summary,
  ];
  return lines.join('\n');
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as Record<string, unknown>)) deepFreeze(child);
  }
  return value;
}
