/**
 * The GPU decision: turns `gpu` / `gpuLayers` into native load parameters, and refuses, with the
 * exact cause, when the GPU was asked for and cannot be had. Pure: an 'auto' request that lands on
 * the CPU comes back with `fallback` set, and Llama.load (the only place a load really happens)
 * warns about it; a dry run such as Llama.plan() decides the same way and says nothing.
 */
import { ErrorCode, GpuError } from '../errors.js';
import type { LoadedBinary } from '../binding/load-native.js';
import type { NativeAddon, NativeContextParams, NativeModelParams } from '../binding/native.js';
import type { LoadOptions } from '../options.js';
import { cudaAvailability } from './availability.js';

export interface GpuDecision {
  /** Where the model goes: local CUDA GPUs (and remote devices, if any), remote devices only, or the CPU. */
  target: 'cuda' | 'rpc' | 'cpu';
  /** What the caller asked for. */
  requested: NonNullable<LoadOptions['gpu']>;
  /** The offload devices used, in llama.cpp's order: remote (RPC) devices first, then CUDA GPUs. Empty for the CPU. */
  devices: string[];
  /** Layers asked for on the GPU: a count, or 'max' / 'auto'. */
  gpuLayers: number | 'max' | 'auto';
  /** Why an 'auto' request landed on the CPU; null when it did not. */
  fallback: { reason: string; remedy: string } | null;
  /** For gpuLayers 'auto': the layer count llama.cpp's fitter chose (-1: all). */
  fittedLayers?: number;
}

/** Whether a decision offloads anything: to CUDA GPUs, remote devices, or both. */
export function offloads(decision: Pick<GpuDecision, 'target'>): boolean {
  return decision.target !== 'cpu';
}

/**
 * `remoteDevices`: the RPC devices of options.rpcServers, registered and probed (lib/gpu/rpc.ts).
 * They come first in the device list, as llama.cpp orders them (fewer network transfers).
 */
export function decideGpu(
  options: LoadOptions & { gpu: NonNullable<LoadOptions['gpu']> },
  binary: Pick<LoadedBinary, 'addon' | 'dir' | 'cudaModule'>,
  remoteDevices: readonly string[] = [],
): GpuDecision {
  const gpuLayers = options.gpuLayers ?? 'max';
  if (options.gpu === 'cpu') return { target: 'cpu', requested: 'cpu', devices: [], gpuLayers: 0, fallback: null };
  const cuda = cudaAvailability(binary);
  if (cuda.available) {
    return { target: 'cuda', requested: options.gpu, devices: [...remoteDevices, ...cuda.devices], gpuLayers, fallback: null };
  }
  if (options.gpu === 'auto' && remoteDevices.length > 0) {
    return { target: 'rpc', requested: 'auto', devices: [...remoteDevices], gpuLayers, fallback: null };
  }
  if (options.gpu === 'cuda') {
    throw new GpuError(ErrorCode.CUDA_UNAVAILABLE, `gpu: 'cuda' was requested, but ${cuda.reason}`, {
      remedy: cuda.remedy,
      details: { reason: cuda.reason },
    });
  }
  return cpuFallback(cuda.reason ?? 'no CUDA device', cuda.remedy ?? '');
}

/**
 * gpu: 'auto' settling on the CPU: allowed, never silent. The decision carries why, for the
 * CUDA_LLAMA_CPU_FALLBACK warning of the load and `policy.fallback` in its layer report.
 */
export function cpuFallback(reason: string, remedy: string): GpuDecision {
  return { target: 'cpu', requested: 'auto', devices: [], gpuLayers: 0, fallback: { reason, remedy } };
}

/**
 * llama.cpp's n_gpu_layers for a decision. llama.cpp counts the output layer as one more layer
 * and offloads it first: n_gpu_layers N puts the last N − 1 repeating layers and the output
 * layer on the GPU. Our gpuLayers counts repeating layers, as the layer report does, so N of them
 * is N + 1 for llama.cpp. Negative: every layer and the output. The fitter's answer
 * (fittedLayers) is already in llama.cpp's count.
 */
export function nGpuLayers(decision: GpuDecision): number {
  if (decision.target === 'cpu') return 0;
  if (typeof decision.gpuLayers === 'number') return decision.gpuLayers === 0 ? 0 : decision.gpuLayers + 1;
  return decision.fittedLayers ?? -1;
}

/** How many repeating layers llama.cpp puts on the GPU for an n_gpu_layers value, out of `total`. */
export function repeatingLayersOffloaded(nGpu: number, total: number): number {
  return nGpu < 0 ? total : Math.min(Math.max(nGpu - 1, 0), total);
}

/** Native load parameters for a decision. */
export function modelParams(decision: GpuDecision, options: LoadOptions): NativeModelParams {
  return {
    // An empty device list keeps llama.cpp from placing anything (weights, KV, ops) on a GPU.
    devices: decision.devices,
    nGpuLayers: nGpuLayers(decision),
    mainGpu: options.mainGpu,
    splitMode: options.splitMode === undefined ? undefined : { none: 0, layer: 1, row: 2 }[options.splitMode],
    tensorSplit: options.tensorSplit,
    loadMode: options.mmap === undefined ? undefined : options.mmap ? 1 : 0,
  };
}

/** llama.cpp's own default margin for its fitter (common_params::fit_params_target): 1 GiB per device. */
export const FIT_MARGIN_BYTES = 1024 ** 3;

/**
 * gpuLayers: 'auto' on CUDA: asks llama.cpp's fitter how many layers fit, and records it in the
 * decision. When nothing fits, gpu: 'cuda' is refused; gpu: 'auto' gets a CPU fallback decision.
 */
export async function fitLayers(
  addon: NativeAddon,
  path: string,
  decision: GpuDecision,
  context: NativeContextParams,
): Promise<GpuDecision> {
  if (!offloads(decision) || decision.gpuLayers !== 'auto') return decision;
  const fit = await addon.fitParams(path, { ...context, devices: decision.devices }, FIT_MARGIN_BYTES);
  if (fit.status === 'success' && fit.tensorOverrides === 0) return { ...decision, fittedLayers: fit.nGpuLayers };
  const reason =
    fit.tensorOverrides > 0
      ? "llama.cpp's fitter needs tensor overrides (MoE experts on the host), which this version does not apply"
      : `llama.cpp's fitter found no placement that fits free GPU memory (status: ${fit.status})`;
  if (decision.requested === 'cuda') {
    throw new GpuError(ErrorCode.GPU_PLACEMENT, `gpu: 'cuda' with gpuLayers: 'auto' was requested, but ${reason}`, {
      remedy: 'lower contextSize or use a smaller quantization; or pass a gpuLayers count for a deliberate partial offload',
      details: { fit },
    });
  }
  return cpuFallback(reason, 'lower contextSize, or pass a gpuLayers count');
}
