/**
 * Placement checks: after a CUDA load, whether llama.cpp put layers, the output layer, the KV cache
 * and the graph's ops where they were asked to go, judged from the layer report's API facts.
 */
import type { NativeCpuOpsOnGpuMemory } from '../binding/native.js';
import { nGpuLayers, offloads, repeatingLayersOffloaded, type GpuDecision } from './decision.js';
import { onGpu } from './devices.js';

/** Ops of one scheduled graph that run on the CPU although their weights or KV cache sit in GPU memory. */
export type CpuOpsOnGpuMemory = NativeCpuOpsOnGpuMemory;

/** What placement verification needs from a layer report. */
export interface PlacementFacts {
  layers: { index: number; device: string }[];
  output: string;
  kvCache: { devices: string[] };
  graph?: { tokenGeneration: { cpuOpsOnGpuMemory: CpuOpsOnGpuMemory }; promptProcessing: { cpuOpsOnGpuMemory: CpuOpsOnGpuMemory } };
}

/** Where a CUDA load differs from what was asked. `kind` picks the remedy. */
export interface PlacementProblem {
  kind: 'layers' | 'output' | 'kvCache' | 'ops';
  message: string;
}

/**
 * On CUDA, the model must sit where it was asked to: the requested number of layers on the GPU;
 * with every layer requested also the output layer and the whole KV cache; and no op that reads
 * GPU-resident weights or KV cache may run on the CPU (the GPU backend could not run it, so every
 * step would copy that data to the host; llama.cpp only warns, and only for fused ops). Empty when
 * placement is as asked. gpu: 'cuda' turns problems into ERR_GPU_PLACEMENT, gpu: 'auto' into a warning.
 */
export function placementProblems(decision: GpuDecision, facts: PlacementFacts, options: { offloadKvCache?: boolean }): PlacementProblem[] {
  if (!offloads(decision)) return [];
  const gpu = (device: string) => onGpu(decision.devices, device);
  const total = facts.layers.length;
  const offloaded = facts.layers.filter((l) => gpu(l.device)).length;
  const wanted = repeatingLayersOffloaded(nGpuLayers(decision), total);
  const problems: PlacementProblem[] = [];
  if (offloaded !== wanted) {
    const cpuLayers = facts.layers.filter((l) => !gpu(l.device)).map((l) => l.index);
    problems.push({
      kind: 'layers',
      message: `${offloaded} of ${total} layers are on the GPU, ${wanted} were requested (on the CPU: ${cpuLayers.join(', ')})`,
    });
  }
  if (wanted === total) {
    if (!gpu(facts.output)) problems.push({ kind: 'output', message: `the output layer is on ${facts.output}, not on the GPU` });
    if (options.offloadKvCache !== false) {
      const cpuKv = facts.kvCache.devices.filter((d) => !gpu(d));
      if (cpuKv.length > 0) problems.push({ kind: 'kvCache', message: `part of the KV cache is on ${cpuKv.join(', ')}, not on the GPU` });
    }
  }
  for (const [label, graph] of [
    ['generation step', facts.graph?.tokenGeneration],
    ['prompt batch', facts.graph?.promptProcessing],
  ] as const) {
    const ops = graph?.cpuOpsOnGpuMemory;
    if (!ops || ops.count === 0) continue;
    const shown = ops.examples.map((e) => `${e.op} ${e.node} reads ${e.tensor} on ${e.device}`).join(', ');
    problems.push({
      kind: 'ops',
      message:
        `${ops.count} op(s) of the ${label} graph run on ${ops.examples[0]?.backend ?? 'the CPU'} although they read weights or KV cache in GPU memory ` +
        `(the GPU backend cannot run them here): ${shown}${ops.count > ops.examples.length ? ', ...' : ''}`,
    });
  }
  return problems;
}

/** What to do about a set of placement problems, one remedy per kind present. */
export function placementRemedy(problems: readonly PlacementProblem[]): string {
  const remedies: string[] = [];
  if (problems.some((p) => p.kind !== 'ops')) remedies.push('free GPU memory or lower contextSize / gpuLayers');
  if (problems.some((p) => p.kind === 'ops')) {
    remedies.push(
      "for ops the GPU cannot run: flashAttention 'auto' (llama.cpp turns it off where the GPU lacks it) and kvCacheType 'f16' " +
        'have the widest GPU support; `cuda-llama doctor` shows the compiled CUDA architectures',
    );
  }
  remedies.push('the layer report in error.details shows where everything landed');
  return remedies.join('; ');
}
