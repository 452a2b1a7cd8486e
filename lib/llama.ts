/**
 * Llama: the entry point. Loads models under the GPU policy, lists devices, reports the build.
 */
import { stat } from 'node:fs/promises';
import { describeCudaCode } from './gpu/fatbin.js';
import { EmbeddingError, ErrorCode, GpuError, ModelFileError, fromNativeError } from './errors.js';
import { POOLING_IDS, poolingName, type Pooling } from './embedding.js';
import { ggufNumber, ggufString, readGguf } from './gguf/reader.js';
import { checkLoaderGuards } from './gguf/loader-guards.js';
import { cudaAvailability, cudaModuleCode, type CudaAvailability } from './gpu/availability.js';
import { cpuFallback, decideGpu, fitLayers, modelParams, offloads, type GpuDecision } from './gpu/decision.js';
import { addRpcServers, listDevices, parseRpcEndpoint, useRpcServers } from './gpu/rpc.js';
import { CPU_FALLBACK_WARNING, cpuFallbackMessage } from './gpu/fallback.js';
import { placementRemedy, type PlacementProblem } from './gpu/placement.js';
import { nativeBinary, type BuildMetadata, type LoadedBinary } from './binding/load-native.js';
import { installLogger, type Logger, type LogLevel } from './log.js';
import { LlamaModel, SharedWeights } from './model.js';
import { dryRun, formatPlan, gpuFits, insufficientMemoryError, refuseCellsBeyondRam, type LoadPlan } from './plan.js';
import { safeCallback } from './safe-callback.js';
import { sampleGpus, type GpuTelemetry } from './gpu/telemetry.js';
import {
  LlamaFileType,
  type NativeBackend,
  type NativeContext,
  type NativeDevice,
  type NativeEmbeddingTraits,
  type NativeModel,
} from './binding/native.js';
import {
  contextParams,
  defaultThreadCount,
  embeddingContextParams,
  resolveContextSize,
  validateLoadOptions,
  type LoadOptions,
} from './options.js';
import { tune, type TuneOptions, type TuneResult } from './tools/tune.js';
import { expectString, optionalEnum, rangeError, typeError } from './validate.js';

export interface BuildReport {
  /** The .node file that was loaded. */
  path: string;
  /** Where it was found: CUDA_LLAMA_BINARY_DIR, the local build, or a prebuild. */
  source: LoadedBinary['source'];
  /** What the build recorded about itself (null for a build without metadata). */
  metadata: BuildMetadata | null;
  llamaCppCommit: string;
  backends: NativeBackend[];
  cuda: CudaAvailability;
  /** The CUDA backend module: beside the addon or from the optional CUDA package (with its metadata); null when none is installed. */
  cudaModule: LoadedBinary['cudaModule'];
  /**
   * The GPU code in that module, from its fatbin: "SASS sm_86, sm_89, sm_90; PTX compute_75, ...
   * (PTX ISA 9.0: CUDA 13.0 drivers and newer)". Null without a module, or when it cannot be read.
   * `cuda.runsAs` says what each GPU runs of it.
   */
  cudaModuleCode: string | null;
  /** CUDA runtime libraries the loader had to find and preload, and where it looked. */
  cudaRuntime: LoadedBinary['cudaRuntime'];
  systemInfo: string;
}

let loggerInstalled = false;

function moduleCode(module: LoadedBinary['cudaModule']): string | null {
  const code = module ? cudaModuleCode(module.path) : null;
  return code ? describeCudaCode(code) : null;
}

function binary(): LoadedBinary {
  const loaded = nativeBinary();
  if (!loggerInstalled) {
    installLogger(loaded.addon, null);
    loggerInstalled = true;
  }
  return loaded;
}

/** Checks the file before llama.cpp sees it: llama.cpp asserts abort the process, our errors don't. */
async function inspectModelFile(path: string): Promise<ModelFileFacts> {
  let info;
  try {
    info = await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ModelFileError(ErrorCode.MODEL_NOT_FOUND, `model file not found: ${path}`, {
        remedy: 'check the path (relative paths resolve from process.cwd())',
        cause: error,
      });
    }
    throw new ModelFileError(ErrorCode.MODEL_NOT_FOUND, `cannot read ${path}: ${(error as Error).message}`, {
      remedy: 'check the path and its permissions',
      cause: error,
    });
  }
  if (!info.isFile()) {
    throw new ModelFileError(ErrorCode.MODEL_NOT_A_FILE, `${path} is not a regular file`, {
      remedy: 'pass the path of a .gguf file, not a folder',
    });
  }
  const gguf = await readGguf(path);
  const architecture = ggufString(gguf, 'general.architecture');
  if (!architecture) {
    throw new ModelFileError(ErrorCode.MODEL_INVALID, `${path} has no general.architecture key`, {
      remedy: "re-convert the model with llama.cpp's convert_hf_to_gguf.py",
    });
  }
  if (!binary().addon.architectureSupported(architecture)) {
    throw new ModelFileError(
      ErrorCode.UNSUPPORTED_ARCHITECTURE,
      `${path}: architecture '${architecture}' is not supported by the bundled llama.cpp (${binary().addon.buildInfo().llamaCppCommit.slice(0, 12)})`,
      {
        remedy: 'use a model of a supported architecture, or a cuda-llama release whose llama.cpp supports it',
        details: { architecture },
      },
    );
  }
  checkLoaderGuards(gguf, architecture);
  // As llama.cpp reads them: a u32 (checkLoaderGuards has refused one above llama.h's range; another
  // type is llama.cpp's own "wrong type" refusal at load) and a bool.
  const pooling = gguf.metadata.get(`${architecture}.pooling_type`);
  const causal = gguf.metadata.get(`${architecture}.attention.causal`);
  return {
    fileSizeBytes: info.size,
    trainingContextSize: ggufNumber(gguf, `${architecture}.context_length`) ?? 0,
    // llama.cpp reads the same two keys (llama_model::load_hparams): a pooling type, or attention
    // that is not causal (an encoder), makes an embedding model.
    pooling: pooling?.type === 'u32' && pooling.value > 0 ? poolingName(pooling.value) : null,
    causalAttention: causal?.type !== 'bool' || causal.value !== false,
  };
}

interface ModelFileFacts {
  fileSizeBytes: number;
  trainingContextSize: number;
  /** The pooling type the file declares; null when it declares none. */
  pooling: Pooling | null;
  causalAttention: boolean;
}

/** What the load makes of embeddings: which contexts, and how embed() pools. */
interface EmbeddingDecision {
  embeddingModel: boolean;
  /** Null: no embeddings context. */
  pooling: Pooling | null;
}

function decideEmbeddings(path: string, valid: LoadOptions, file: ModelFileFacts): EmbeddingDecision {
  const embeddingModel = file.pooling !== null || !file.causalAttention;
  if (embeddingModel && valid.embeddings === false) {
    throw new EmbeddingError(ErrorCode.EMBEDDINGS_ONLY, `${path} is an embedding model: it cannot be loaded without embeddings`, {
      remedy: 'leave out embeddings: false and call model.embed() (or rerank()); load a generative model to generate',
    });
  }
  if (!embeddingModel && valid.embeddings !== true) {
    if (valid.pooling !== undefined) {
      throw rangeError(
        'options.pooling',
        'given with embeddings: true on a generative model',
        valid.pooling,
        'add embeddings: true: pooling is how embed() pools, and a generative model embeds only when asked to',
      );
    }
    return { embeddingModel, pooling: null };
  }
  return { embeddingModel, pooling: valid.pooling ?? file.pooling ?? (file.causalAttention ? 'last' : 'mean') };
}

/**
 * Asking for the GPU never silently yields the CPU: check where llama.cpp actually put things.
 * gpu: 'cuda' refuses a placement other than asked; gpu: 'auto' keeps the model, and the problems
 * go into the load's fallback warning.
 */
async function verifyPlacement(model: LlamaModel, decision: GpuDecision): Promise<PlacementProblem[]> {
  const report = await model.layerReport();
  const { problems } = report;
  if (problems.length === 0 || decision.requested === 'auto') return [...problems];
  // The caller (finishLoad) disposes the model when this throws.
  const messages = problems.map((p) => p.message).join('; ');
  throw new GpuError(ErrorCode.GPU_PLACEMENT, `gpu: 'cuda' was requested, but llama.cpp placed the model otherwise: ${messages}`, {
    remedy: placementRemedy(problems),
    details: { problems, report: JSON.parse(JSON.stringify(report)) },
  });
}

type Prepared = Awaited<ReturnType<typeof prepare>>;

/** Validation, file checks and the GPU decision shared by load() and plan(). Decides only: it never warns. */
async function prepare(path: string, options: LoadOptions) {
  expectString('path', path, { allowEmpty: false });
  const valid = validateLoadOptions(options);
  valid.signal?.throwIfAborted();
  const file = await inspectModelFile(path);
  const contextSize = resolveContextSize(valid.contextSize, file.trainingContextSize);
  const loaded = binary();
  const embedding = decideEmbeddings(path, valid, file);
  const embeddingContext = embedding.pooling === null ? null : embeddingContextParams(valid, contextSize, POOLING_IDS[embedding.pooling]);
  // An embedding model has its embeddings context only; that is the context the plan and the fit count.
  const context = embedding.embeddingModel ? embeddingContext! : contextParams(valid, contextSize);
  // Probed first (a typed error instead of ggml's abort), then registered with ggml.
  const remoteDevices = await addRpcServers(loaded.addon, valid.rpcServers ?? []);
  let decision = decideGpu(valid, loaded, remoteDevices);
  try {
    decision = await fitLayers(loaded.addon, path, decision, context);
  } catch (error) {
    throw fromNativeError(error);
  }
  return {
    valid,
    file,
    loaded,
    decision,
    embedding,
    modelParams: modelParams(decision, valid),
    contextParams: context,
    embeddingContextParams: embeddingContext,
  };
}

/**
 * Every decision checked against llama.cpp's dry run before anything is allocated. VRAM for a CUDA
 * decision: no partial spill, no out-of-memory abort; gpu: 'cuda' is refused, gpu: 'auto' becomes
 * a CPU decision. RAM for every decision, so a context beyond the machine's memory is
 * ERR_INSUFFICIENT_MEMORY with the sizes, not the kernel's OOM killer.
 */
async function fitOrFallBack(path: string, prepared: Prepared): Promise<GpuDecision> {
  const { addon } = prepared.loaded;
  // The dry run allocates the KV cells' bookkeeping for real: a context too big for even that stops here.
  refuseCellsBeyondRam(prepared.contextParams);
  const plan = async (decision: GpuDecision): Promise<LoadPlan> => {
    try {
      return await dryRun(addon, path, decision, modelParams(decision, prepared.valid), prepared.contextParams);
    } catch (error) {
      throw fromNativeError(error);
    }
  };
  let { decision } = prepared;
  let planned = await plan(decision);
  if (offloads(decision) && !gpuFits(planned, listDevices(addon))) {
    if (decision.requested === 'cuda') {
      throw new GpuError(ErrorCode.GPU_PLACEMENT, `gpu: 'cuda' was requested, but the model does not fit: ${formatPlan(planned)}`, {
        remedy: 'lower contextSize, use a smaller quantization, offload fewer layers (gpuLayers), or free GPU memory',
        details: { plan: planned },
      });
    }
    decision = cpuFallback(
      `the model does not fit on the GPU: ${formatPlan(planned)}`,
      "gpuLayers: 'auto' offloads as many layers as fit; or lower contextSize",
    );
    planned = await plan(decision);
  }
  if (!planned.host.fits) throw insufficientMemoryError(planned);
  return decision;
}

/** What llama.cpp made of the model, against what the load decided from the file's keys. */
function checkEmbeddingTraits(path: string, embedding: EmbeddingDecision, traits: NativeEmbeddingTraits): void {
  if (!embedding.embeddingModel && !traits.languageModelHead) {
    throw new EmbeddingError(ErrorCode.EMBEDDINGS_ONLY, `${path} has no output head: it cannot generate`, {
      remedy: 'load it with { embeddings: true } to embed with it',
    });
  }
  if (embedding.pooling === 'rank' && !traits.rankingHead) {
    throw new EmbeddingError(ErrorCode.NO_RANKING_HEAD, `pooling: 'rank' needs a ranking head, and ${path} has none`, {
      remedy: "load a reranker for rerank(), or choose another pooling ('mean', 'cls', 'last') to embed",
    });
  }
}

/**
 * The native load and context creation, cancellable through the signal and reporting progress.
 * On any failure nothing stays allocated, and the error is the progress callback's, the signal's
 * reason, or the native one with the caller's stack.
 */
async function loadNative(path: string, prepared: Prepared, decision: GpuDecision, callSite: Error): Promise<LlamaModel> {
  const { valid, loaded, file } = prepared;
  const { signal } = valid;
  const { addon } = loaded;
  const cancel = new addon.CancelFlag();
  const onAbort = () => cancel.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  // A throwing progress callback stops the load and becomes its error (never reaches native code).
  const progress = valid.onProgress && safeCallback(valid.onProgress, () => cancel.cancel());
  const { embedding } = prepared;
  let native: NativeModel | undefined;
  let context: NativeContext | undefined;
  let embeddingContext: NativeContext | undefined;
  // While the model lives it holds each rpc-server's one connection (see addRpcServers).
  const releaseRpc = useRpcServers(decision.target === 'cpu' ? [] : (valid.rpcServers ?? []));
  try {
    // From the decision as it stands now: an 'auto' load that did not fit has become a CPU one.
    native = await addon.Model.load(path, modelParams(decision, valid), progress?.call, cancel);
    progress?.rethrow();
    signal?.throwIfAborted();
    const traits = addon.embeddingTraits(native);
    checkEmbeddingTraits(path, embedding, traits);
    context = await addon.Context.create(native, prepared.contextParams);
    signal?.throwIfAborted();
    if (embedding.embeddingModel) embeddingContext = context;
    else if (prepared.embeddingContextParams !== null) {
      embeddingContext = await addon.Context.create(native, prepared.embeddingContextParams);
      signal?.throwIfAborted();
    }
    return new LlamaModel({
      binary: loaded,
      // While the weights live (this model and its forks) they hold the rpc-servers.
      weights: new SharedWeights(native, releaseRpc),
      context,
      embeddingContext: embeddingContext ?? null,
      contextParams: Object.freeze({ ...prepared.contextParams }),
      embeddingContextParams:
        embeddingContext === undefined || embeddingContext === context ? null : Object.freeze({ ...prepared.embeddingContextParams! }),
      embedding: { ...embedding, rankingHead: traits.rankingHead },
      decision,
      offloadKvCache: valid.offloadKvCache !== false,
      path,
      fileSizeBytes: file.fileSizeBytes,
    });
  } catch (error) {
    if (embeddingContext !== context) embeddingContext?.dispose();
    context?.dispose();
    native?.dispose();
    releaseRpc();
    progress?.rethrow();
    if (signal?.aborted) throw signal.reason;
    throw fromNativeError(error, callSite);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Placement verification and the warm-up of a loaded model; it is disposed when either fails. */
async function finishLoad(
  model: LlamaModel,
  decision: GpuDecision,
  valid: Prepared['valid'],
  callSite: Error,
): Promise<PlacementProblem[]> {
  try {
    const problems = offloads(decision) ? await verifyPlacement(model, decision) : [];
    if (valid.warmup !== false) await model.warmUp();
    valid.signal?.throwIfAborted();
    return problems;
  } catch (error) {
    await model.dispose();
    if (valid.signal?.aborted) throw valid.signal.reason;
    throw fromNativeError(error, callSite);
  }
}

/**
 * The one place the CPU-fallback warning is emitted: once, for a gpu: 'auto' model handed back
 * wholly or partly on the CPU. Dry runs (Llama.plan) decide the same way and never warn.
 */
function warnCpuFallback(decision: GpuDecision, problems: PlacementProblem[]): void {
  const message = cpuFallbackMessage(decision, problems);
  if (message !== null) process.emitWarning(message, { type: 'CudaLlamaWarning', code: CPU_FALLBACK_WARNING });
}

export class Llama {
  private constructor() {}

  /** Loads a GGUF model and creates its context. See LoadOptions for the GPU policy. */
  static async load(path: string, options: LoadOptions = {}): Promise<LlamaModel> {
    const callSite = new Error();
    const prepared = await prepare(path, options);
    const decision = await fitOrFallBack(path, prepared);
    const model = await loadNative(path, prepared, decision, callSite);
    const problems = await finishLoad(model, decision, prepared.valid, callSite);
    warnCpuFallback(decision, problems);
    return model;
  }

  /**
   * What a load with these options would need, per device, without allocating it: llama.cpp's
   * no-alloc load. `fits` says whether every device has the room.
   */
  static async plan(path: string, options: LoadOptions = {}): Promise<LoadPlan> {
    const { loaded, decision, modelParams, contextParams } = await prepare(path, options);
    refuseCellsBeyondRam(contextParams);
    try {
      return await dryRun(loaded.addon, path, decision, modelParams, contextParams);
    } catch (error) {
      throw fromNativeError(error);
    }
  }

  /**
   * Backends and their devices, with free and total memory. Remote (RPC) devices appear once their
   * servers were added (addRpcServers, or a load or plan with rpcServers), with the memory their
   * server reported then.
   */
  static devices(): NativeDevice[] {
    return listDevices(binary().addon);
  }

  /**
   * Probes ggml rpc-servers ('host:port') and registers their devices (RPC0, RPC1, ...), which
   * Llama.devices() then lists; returns those devices, with the memory each server reports now.
   * Refuses with ERR_RPC_ENDPOINT, ERR_RPC_UNREACHABLE, ERR_RPC_VERSION or ERR_RPC_BUSY, naming the
   * endpoint. `options.timeoutMs`: how long to wait for a connection and the handshake (default 5000).
   */
  static async addRpcServers(endpoints: string[], options: { timeoutMs?: number } = {}): Promise<NativeDevice[]> {
    if (!Array.isArray(endpoints)) throw typeError('endpoints', "an array of 'host:port' strings", endpoints);
    endpoints.forEach((endpoint, i) => parseRpcEndpoint(endpoint, `endpoints[${i}]`));
    const { addon } = binary();
    const names = await addRpcServers(addon, endpoints, options);
    return listDevices(addon).filter((d) => names.includes(d.name));
  }

  /** Which binary is loaded, what it was built with, and whether CUDA is usable (and why not). */
  static build(): BuildReport {
    const loaded = binary();
    const { addon } = loaded;
    return {
      path: loaded.path,
      source: loaded.source,
      metadata: loaded.metadata,
      llamaCppCommit: addon.buildInfo().llamaCppCommit,
      backends: addon.listBackends(),
      cuda: cudaAvailability(loaded),
      cudaModule: loaded.cudaModule,
      cudaModuleCode: moduleCode(loaded.cudaModule),
      cudaRuntime: loaded.cudaRuntime,
      systemInfo: addon.systemInfo(),
    };
  }

  /** NVML readings per NVIDIA GPU: clocks, power and limit, temperature, utilization, throttle reasons. */
  static telemetry(): GpuTelemetry {
    return sampleGpus(binary().addon);
  }

  /**
   * Sends llama.cpp's log lines to `logger` (null: back to NODE_DEBUG=cuda-llama only). Per thread:
   * a worker_threads Worker's logger gets the lines of its own loads and generations.
   */
  static setLogger(logger: Logger | null, minLevel: LogLevel = 'info'): void {
    if (logger !== null && typeof logger !== 'function') throw typeError('logger', 'a function or null', logger);
    installLogger(binary().addon, logger, optionalEnum('minLevel', minLevel, ['debug', 'info', 'warn', 'error'] as const));
    loggerInstalled = true;
  }

  /**
   * Measures a few load configurations (CPU, full offload, llama.cpp's fit, flash attention off
   * and on, the context the workload needs against the default one) for one workload on this
   * machine, and recommends the fastest with the reasons in words and options to paste.
   */
  static async tune(path: string, options: TuneOptions = {}): Promise<TuneResult> {
    expectString('path', path, { allowEmpty: false });
    return tune(
      {
        load: (p, o) => Llama.load(p, o),
        cudaUsable: () => {
          const cuda = cudaAvailability(binary());
          return cuda.available
            ? { usable: true, devices: cuda.devices }
            : { usable: false, reason: cuda.reason ?? 'unknown reason', devices: [] };
        },
        defaultContextSize: async (p) => resolveContextSize(undefined, (await inspectModelFile(p)).trainingContextSize),
      },
      path,
      options,
    );
  }

  /**
   * Quantizes an F32/F16 GGUF with llama.cpp (used to make Q8_0 / Q4_0 test models).
   * `options.threads`: CPU threads; default the same as a load's `threads` (physical cores).
   */
  static async quantize(input: string, output: string, type: 'Q8_0' | 'Q4_0' | 'F16', options: { threads?: number } = {}): Promise<void> {
    expectString('input', input, { allowEmpty: false });
    expectString('output', output, { allowEmpty: false });
    const ftype = LlamaFileType[optionalEnum('type', type, ['Q8_0', 'Q4_0', 'F16'] as const) ?? 'Q8_0'];
    await inspectModelFile(input);
    try {
      await binary().addon.quantize(input, output, ftype, options.threads ?? defaultThreadCount());
    } catch (error) {
      throw fromNativeError(error);
    }
  }
}
