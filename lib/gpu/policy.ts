/**
 * The GPU policy: turns `gpu` / `gpuLayers` into native load parameters, and refuses, with the
 * exact cause, when the GPU was asked for and cannot be had. What it decides is recorded so the
 * layer report can show it; an 'auto' fallback to the CPU is loud (a process warning), never silent.
 */
import { ErrorCode, GpuError } from '../errors.js';
import { CUDA_MODULE_FILE, CUDA_PACKAGE, type LoadedBinary } from '../binding/load-native.js';
import type { NativeAddon, NativeContextParams, NativeCpuOpsOnGpuMemory, NativeModelParams } from '../binding/native.js';
import type { LoadOptions } from '../options.js';
import { cudaCodeVerdicts, readCudaModuleCode, type CudaModuleCode } from './fatbin.js';
import { archSupportsDevice, sampleGpus } from './telemetry.js';

export const CPU_FALLBACK_WARNING = 'CUDA_LLAMA_CPU_FALLBACK';

export interface GpuDecision {
  /** Where the model goes. */
  target: 'cuda' | 'cpu';
  /** What the caller asked for. */
  requested: NonNullable<LoadOptions['gpu']>;
  /** The CUDA device names used (empty for the CPU). */
  devices: string[];
  /** Layers asked for on the GPU: a count, or 'max' / 'auto'. */
  gpuLayers: number | 'max' | 'auto';
  /** Why an 'auto' request landed on the CPU; null when it did not. */
  fallback: { reason: string; remedy: string } | null;
  /** For gpuLayers 'auto': the layer count llama.cpp's fitter chose (-1: all). */
  fittedLayers?: number;
}

export interface CudaAvailability {
  available: boolean;
  devices: string[];
  reason?: string;
  remedy?: string;
  /** Per NVIDIA GPU (NVML order), what the driver runs of it: "SASS sm_90", or PTX it compiles at first use. */
  runsAs?: string[];
}

/** Why CUDA can or cannot be used with this binary, from the registry and the module file. */
export function cudaAvailability(binary: Pick<LoadedBinary, 'addon' | 'dir' | 'cudaModule'>): CudaAvailability {
  const { addon, dir, cudaModule } = binary;
  const registry = addon.listBackends().find((b) => b.name === 'CUDA');
  if (!registry) {
    if (!cudaModule) {
      return {
        available: false,
        devices: [],
        reason: `the loaded binary (${dir}) has no CUDA backend: ${CUDA_MODULE_FILE} is not there (CPU-only build) and ${CUDA_PACKAGE} is not installed`,
        remedy: `install the prebuilt CUDA module with \`npm install ${CUDA_PACKAGE}\`, or build the CUDA variant with \`npm run build:cuda\` (needs nvcc and cuBLAS, see README "GPU set-up"), or pass gpu: 'cpu'`,
      };
    }
    if (cudaModule.problem) return { available: false, devices: [], reason: cudaModule.problem, remedy: cudaModule.remedy };
    const loadError = addon.probeLibrary(cudaModule.path) ?? 'the module loaded but did not register a CUDA backend';
    return { available: false, devices: [], reason: `${cudaModule.path} failed to load: ${loadError}`, remedy: remedyForLoadError(loadError) };
  }
  const devices = addon.listDevices().filter((d) => d.backend === 'CUDA' && d.type === 'gpu').map((d) => d.name);
  if (devices.length === 0) {
    return {
      available: false,
      devices,
      reason: 'the CUDA backend loaded but found no CUDA device',
      remedy: 'check `nvidia-smi`, and that CUDA_VISIBLE_DEVICES does not hide every GPU',
    };
  }
  // A device the module has no usable code for would list fine and then abort the process at its
  // first kernel launch. The module's fatbin says exactly what it holds; ggml's ARCHS list (which
  // cannot tell SASS from PTX) is the fallback when the file has none this reader understands.
  const telemetry = sampleGpus(addon);
  if (!telemetry.available || telemetry.devices.length === 0) return { available: true, devices };
  const rebuild = (cc: string) => `rebuild the CUDA module for it: \`npm run build:cuda -- --arch ${cc.replace('.', '')}\``;
  // Refused only when no device can run it. With a mix, the ones that cannot are not left out of
  // placement: NVML numbers devices in PCI order, CUDA (and so ggml) fastest first, so an NVML
  // index does not name a CUDA device.
  const code = cudaModule ? cudaModuleCode(cudaModule.path) : null;
  if (code) {
    const { perGpu, noneRuns } = cudaCodeVerdicts(code, telemetry.devices, telemetry.cudaDriverVersion);
    const runsAs = perGpu.flatMap(({ gpu, verdict }) => (verdict.runs ? [`${gpu}: ${verdict.via}`] : []));
    const first = perGpu[0];
    // noneRuns means every GPU was judged and refused; the last two tests only narrow the types.
    if (!noneRuns || !first || first.verdict.runs) return { available: true, devices, runsAs };
    const { verdict } = first;
    return {
      available: false,
      devices,
      runsAs,
      reason: `${first.gpu} cannot run ${cudaModule!.path}: ${verdict.reason}`,
      remedy: verdict.fix === 'driver' ? `update the NVIDIA driver to one for CUDA ${verdict.driverCuda} or newer, or ${rebuild(first.computeCapability)}` : rebuild(first.computeCapability),
    };
  }
  const archs = registry.features.ARCHS;
  const tooOld = telemetry.devices.filter((d) => archSupportsDevice(archs, d.computeCapability) === false);
  const d = tooOld[0];
  if (!d || tooOld.length < telemetry.devices.length) return { available: true, devices };
  return {
    available: false,
    devices,
    reason: `${d.name ?? 'the GPU'} has compute capability ${d.computeCapability}, older than every architecture this CUDA build contains (${archs})`,
    remedy: rebuild(d.computeCapability!),
  };
}

/** The module's fatbin, read once per path (a few ms for a module with hundreds of code units); null when unreadable. */
const moduleCodeCache = new Map<string, CudaModuleCode | null>();
export function cudaModuleCode(path: string): CudaModuleCode | null {
  if (!moduleCodeCache.has(path)) {
    let code: CudaModuleCode | null = null;
    try {
      code = readCudaModuleCode(path);
    } catch {
      // Unreadable: nothing is known, and the ARCHS fallback decides, as before this check existed.
    }
    moduleCodeCache.set(path, code);
  }
  return moduleCodeCache.get(path)!;
}

/** The missing library named in a dlopen error, with the command that installs it. */
export function remedyForLoadError(loadError: string): string {
  if (/libcuda\.so/.test(loadError)) return 'libcuda.so.1 is the NVIDIA driver: install the NVIDIA driver (a CUDA 13 capable one), or pass gpu: \'cpu\'';
  if (/libcublas/.test(loadError)) return 'cuBLAS is missing: `pip install "nvidia-cublas==13.0.*"` (or the CUDA toolkit) and put its lib folder on LD_LIBRARY_PATH';
  if (/libcudart/.test(loadError)) return 'the CUDA runtime is missing: `pip install "nvidia-cuda-runtime==13.0.*"` (or the CUDA toolkit) and put its lib folder on LD_LIBRARY_PATH';
  return 'rebuild the CUDA variant (`npm run build:cuda`), or pass gpu: \'cpu\'';
}

export function decideGpu(options: LoadOptions & { gpu: NonNullable<LoadOptions['gpu']> }, binary: Pick<LoadedBinary, 'addon' | 'dir' | 'cudaModule'>): GpuDecision {
  const gpuLayers = options.gpuLayers ?? 'max';
  if (options.gpu === 'cpu') return { target: 'cpu', requested: 'cpu', devices: [], gpuLayers: 0, fallback: null };
  const cuda = cudaAvailability(binary);
  if (cuda.available) {
    return { target: 'cuda', requested: options.gpu, devices: cuda.devices, gpuLayers, fallback: null };
  }
  if (options.gpu === 'cuda') {
    throw new GpuError(ErrorCode.CUDA_UNAVAILABLE, `gpu: 'cuda' was requested, but ${cuda.reason}`, {
      remedy: cuda.remedy,
      details: { reason: cuda.reason },
    });
  }
  return fallBackToCpu(cuda.reason ?? 'no CUDA device', cuda.remedy ?? '');
}

/**
 * gpu: 'auto' settling on the CPU: allowed, never silent. The one place that says so: a process
 * warning with its code now, and `policy.fallback` in the layer report later.
 */
export function fallBackToCpu(reason: string, remedy: string): GpuDecision {
  process.emitWarning(`gpu: 'auto' is running on the CPU because ${reason}.${remedy ? ` ${remedy}` : ''}`, {
    type: 'CudaLlamaWarning',
    code: CPU_FALLBACK_WARNING,
  });
  return { target: 'cpu', requested: 'auto', devices: [], gpuLayers: 0, fallback: { reason, remedy } };
}

/**
 * llama.cpp's n_gpu_layers for a decision. llama.cpp counts the output layer as one more layer
 * and offloads it first: n_gpu_layers N puts the last N − 1 repeating layers and the output
 * layer on the GPU (seen on an H100, 2026-11-22). Our gpuLayers counts repeating layers, as the
 * layer report does, so N of them is N + 1 for llama.cpp. Negative: every layer and the output.
 * The fitter's answer (fittedLayers) is already in llama.cpp's count.
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
  if (decision.target !== 'cuda') return [];
  const onGpu = (device: string) => decision.devices.includes(device);
  const total = facts.layers.length;
  const offloaded = facts.layers.filter((l) => onGpu(l.device)).length;
  const wanted = repeatingLayersOffloaded(nGpuLayers(decision), total);
  const problems: PlacementProblem[] = [];
  if (offloaded !== wanted) {
    const cpuLayers = facts.layers.filter((l) => !onGpu(l.device)).map((l) => l.index);
    problems.push({ kind: 'layers', message: `${offloaded} of ${total} layers are on the GPU, ${wanted} were requested (on the CPU: ${cpuLayers.join(', ')})` });
  }
  if (wanted === total) {
    if (!onGpu(facts.output)) problems.push({ kind: 'output', message: `the output layer is on ${facts.output}, not on the GPU` });
    if (options.offloadKvCache !== false) {
      const cpuKv = facts.kvCache.devices.filter((d) => !onGpu(d));
      if (cpuKv.length > 0) problems.push({ kind: 'kvCache', message: `part of the KV cache is on ${cpuKv.join(', ')}, not on the GPU` });
    }
  }
  for (const [label, graph] of [['generation step', facts.graph?.tokenGeneration], ['prompt batch', facts.graph?.promptProcessing]] as const) {
    const ops = graph?.cpuOpsOnGpuMemory;
    if (!ops || ops.count === 0) continue;
    const shown = ops.examples.map((e) => `${e.op} ${e.node} reads ${e.tensor} on ${e.device}`).join(', ');
    problems.push({
      kind: 'ops',
      message: `${ops.count} op(s) of the ${label} graph run on ${ops.examples[0]?.backend ?? 'the CPU'} although they read weights or KV cache in GPU memory ` +
        `(the GPU backend cannot run them here): ${shown}${ops.count > ops.examples.length ? ', ...' : ''}`,
    });
  }
  return problems;
}

/** What to do about a set of placement problems, one remedy per kind present. */
export function placementRemedy(problems: PlacementProblem[]): string {
  const remedies: string[] = [];
  if (problems.some((p) => p.kind !== 'ops')) remedies.push('free GPU memory or lower contextSize / gpuLayers');
  if (problems.some((p) => p.kind === 'ops')) {
    remedies.push("for ops the GPU cannot run: flashAttention 'auto' (llama.cpp turns it off where the GPU lacks it) and kvCacheType 'f16' " +
      'have the widest GPU support; `cuda-llama doctor` shows the compiled CUDA architectures');
  }
  remedies.push('the layer report in error.details shows where everything landed');
  return remedies.join('; ');
}

/** llama.cpp's own default margin for its fitter (common_params::fit_params_target): 1 GiB per device. */
export const FIT_MARGIN_BYTES = 1024 ** 3;

/**
 * gpuLayers: 'auto' on CUDA: asks llama.cpp's fitter how many layers fit, and records it in the
 * decision. When nothing fits, gpu: 'cuda' is refused; gpu: 'auto' falls back to the CPU, loudly.
 */
export async function fitLayers(addon: NativeAddon, path: string, decision: GpuDecision, context: NativeContextParams): Promise<GpuDecision> {
  if (decision.target !== 'cuda' || decision.gpuLayers !== 'auto') return decision;
  const fit = await addon.fitParams(path, { ...context, devices: decision.devices }, FIT_MARGIN_BYTES);
  if (fit.status === 'success' && fit.tensorOverrides === 0) return { ...decision, fittedLayers: fit.nGpuLayers };
  const reason = fit.tensorOverrides > 0
    ? 'llama.cpp\'s fitter needs tensor overrides (MoE experts on the host), which this version does not apply'
    : `llama.cpp's fitter found no placement that fits free GPU memory (status: ${fit.status})`;
  if (decision.requested === 'cuda') {
    throw new GpuError(ErrorCode.GPU_PLACEMENT, `gpu: 'cuda' with gpuLayers: 'auto' was requested, but ${reason}`, {
      remedy: 'lower contextSize or use a smaller quantization; or pass a gpuLayers count for a deliberate partial offload',
      details: { fit },
    });
  }
  return fallBackToCpu(reason, 'lower contextSize, or pass a gpuLayers count');
}
