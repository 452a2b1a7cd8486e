/**
 * Public option types, their validation, and their translation into native parameters. Defaults
 * that are ours (not llama.cpp's) live here and only here, each documented on its option.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { NativeContextParams } from './binding/native.js';
import { POOLINGS, type Pooling } from './embedding.js';
import type { TextInfo } from './generation.js';
import { samplingHints, samplingKeys, validateSamplingOptions, type SamplingOptions } from './sampling.js';
import type { JsonSchema } from './structured/json-schema.js';
import { GgmlType } from './gguf/ggml-types.js';
import { parseRpcEndpoint, RPC_MAX_SERVERS } from './gpu/rpc.js';
import {
  expectObject,
  expectString,
  optionalBoolean,
  optionalEnum,
  optionalFunction,
  optionalInteger,
  optionalNumber,
  optionalSignal,
  rangeError,
  rejectUnknownKeys,
  typeError,
} from './validate.js';

export type GpuPolicy = 'auto' | 'cuda' | 'cpu';
export type FlashAttention = 'auto' | 'on' | 'off';
export type KvCacheType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1';

export interface LoadOptions {
  /**
   * Where to run. 'cuda': the GPU or a typed error, never a silent CPU run. 'auto' (default): CUDA
   * when a CUDA device is usable, else the CPU with a `CUDA_LLAMA_CPU_FALLBACK` process warning
   * from Llama.load (Llama.plan, a dry run, decides the same and does not warn) and `fallback` set
   * in the layer report. 'cpu': the CPU only.
   */
  gpu?: GpuPolicy;
  /**
   * Repeating layers to put on the GPU: a count (llama.cpp offloads the output layer first, so
   * any count above 0 puts it on the GPU too), 'max' (default: all, the output layer too), or
   * 'auto': as many as fit in free VRAM (1 GiB kept free per device), decided by llama.cpp's own
   * fitter (common_fit_params) from a no-alloc projection.
   */
  gpuLayers?: number | 'max' | 'auto';
  /** Index of the GPU used when the model is not split. Default 0. */
  mainGpu?: number;
  /** How to split across several GPUs. Default: llama.cpp's ('layer'). */
  splitMode?: 'none' | 'layer' | 'row';
  /** Share of the model per GPU, e.g. [3, 1]. Default: by free memory (llama.cpp). */
  tensorSplit?: number[];
  /**
   * Remote devices: endpoints ('host:port', IPv4 or a host name) of ggml rpc-servers
   * (`cuda-llama rpc-server`, or llama.cpp's rpc-server of the same llama.cpp). Each is probed first
   * (ERR_RPC_UNREACHABLE, ERR_RPC_VERSION, ERR_RPC_BUSY) and its devices (RPC0, RPC1, ...) take part in
   * placement like local GPUs, placed first as llama.cpp does: the device order is these servers' devices
   * in the order given, then the local CUDA GPUs. gpu 'auto' offloads to them (and to local CUDA GPUs,
   * if any) without a CPU-fallback warning; 'cuda' still needs a local CUDA GPU; 'cpu' refuses them.
   * gpuLayers, tensorSplit (one share per device in that order) and splitMode apply across them, and
   * the fit check uses the memory each server reports. Default: none.
   */
  rpcServers?: string[];
  /**
   * Context window in tokens (a prompt and its output), per sequence. Default: 4096, or the model's
   * training context when smaller. A bigger window costs KV-cache memory on every device that holds
   * layers; ask for what you use. llama.cpp rounds it up to a multiple of 256 (contextInfo says).
   */
  contextSize?: number;
  /**
   * Requests that run at once (generate, stream, chat and generateBatch's prompts alike), each in
   * its own sequence with its own `contextSize` window; more wait in a queue, first come first
   * served. The KV cache holds contextSize × sequences tokens whether or not they are busy (each
   * sequence's window is its own, so no request can run out of room because of another). Default 1.
   */
  sequences?: number;
  /**
   * Host memory (bytes) for parked sessions: when a request takes the sequence an idle session
   * keeps (more sessions than sequences), that session's KV state is copied here first
   * (llama_state_seq_get_data) and copied back when the session is used again, instead of its
   * conversation being evaluated again; least recently used states are evicted to stay within it.
   * Allocated as sessions are parked, not up front. 0: nothing is parked. Default 256 MiB.
   */
  parkedSessionBytes?: number;
  /** Logical batch: most prompt tokens handed to one llama_decode. Default: llama.cpp's (2048). */
  batchSize?: number;
  /** Physical batch: most tokens computed at once. Default: llama.cpp's (512). */
  ubatchSize?: number;
  /** CPU threads for generation. Default: physical cores (as llama.cpp's tools), else os.availableParallelism(). */
  threads?: number;
  /** CPU threads for prompt processing. Default: same as `threads`. */
  threadsBatch?: number;
  /** Flash attention. Default: llama.cpp's ('auto'). */
  flashAttention?: FlashAttention;
  /** KV-cache element type for K and V. Default: llama.cpp's ('f16'). */
  kvCacheType?: KvCacheType;
  /** Keep the KV cache and attention on the GPU. Default: llama.cpp's (true). */
  offloadKvCache?: boolean;
  /** Memory-map the file (default: llama.cpp's choice) or read it. */
  mmap?: boolean;
  /**
   * Run one throwaway decode before load() returns (default true, as llama.cpp's own tools do), so
   * the first request does not pay the cold start: weights paged in, compute buffers touched, GPU
   * kernels and cuBLAS initialized. `false` makes load() faster and the first request slower.
   */
  warmup?: boolean;
  /**
   * Embeddings (model.embed, model.rerank). Default: true for an embedding model (an encoder such
   * as BERT, or a file that declares a pooling type, as embedding models and rerankers do), which
   * then only embeds; false for a generative model, where true adds a second, embeddings context
   * of `contextSize` tokens beside the one that generates (its KV cache and compute buffers cost
   * memory of their own, which Llama.plan() and the layer report do not count yet).
   */
  embeddings?: boolean;
  /**
   * How embed() pools a text's token vectors (llama.cpp's pooling type). Default: the model's own;
   * for a model that declares none, 'last' when its attention is causal (decoder embedding
   * models), else 'mean'. 'rank' applies a reranker's ranking head (rerank()); 'none' gives one
   * vector per token.
   */
  pooling?: Pooling;
  /** Load progress from 0 to 1. */
  onProgress?: (fraction: number) => void;
  /** Aborts the load; the promise rejects with `signal.reason` and nothing stays allocated. */
  signal?: AbortSignal;
}

/** generate() options for several prompts; onText also gets the prompt's index. */
export interface BatchGenerateOptions extends Omit<GenerateOptions, 'onText' | 'n'> {
  /** Called with each piece of text as it is produced and the index of the prompt it belongs to. */
  onText?: (text: string, index: number, info: TextInfo) => void;
}

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate. Default: until end-of-generation or the context is full. */
  maxTokens?: number;
  /** End-of-generation tokens are not allowed before this many tokens are generated (a grammar that can only end still ends). Default 0. */
  minTokens?: number;
  /**
   * Never end at an end-of-generation token: generate exactly `maxTokens` (needs it), as serving
   * benchmarks fix the output length. A grammar that can only end still ends. Default false.
   */
  ignoreEos?: boolean;
  /** Stop before any of these strings; the stop string is not part of the result (see includeStopString). */
  stop?: string | string[];
  /** The stop string that ended the output is kept at the end of `text`. Default false. */
  includeStopString?: boolean;
  /** Special (control) tokens the model writes are left out of the text. false: written out. Default true. */
  skipSpecialTokens?: boolean;
  /**
   * GBNF text (llama.cpp's grammar format, starting at rule `root`): the output must match it.
   * Checked before anything is decoded (ERR_GRAMMAR names the problem); a grammar that leaves no
   * token to choose during generation ends the request with ERR_GRAMMAR. Not with jsonSchema.
   */
  grammar?: string;
  /**
   * A JSON Schema the output must match (llama.cpp's json_schema_to_grammar). Keywords it cannot
   * enforce are refused with ERR_JSON_SCHEMA naming them (docs/structured-output.md lists what is
   * supported); the result's `parsed` holds the value. Not with grammar.
   */
  jsonSchema?: JsonSchema;
  /**
   * Completions of the prompt: the prompt is evaluated once and its KV cache copied to the other
   * sequences, each continuing with its own seed (seed + i). The result is the first; `choices`
   * has all n. At most the load's `sequences`; not with stream() (use onText's `choice`). Default 1.
   */
  n?: number;
  /** Cancels the generation: rejects with `signal.reason`, or resolves with the text so far when stopOnAbort. */
  signal?: AbortSignal;
  /** With `signal`: resolve with what was generated instead of rejecting. Default false. */
  stopOnAbort?: boolean;
  /**
   * Called with each piece of text as it is produced (the same pieces `stream` yields), the
   * completion it belongs to (0 unless n > 1), and how many tokens made it (with `logprobs`, the
   * tokens themselves).
   */
  onText?: (text: string, choice: number, info: TextInfo) => void;
  /**
   * Reuse the longest prefix of the prompt that an idle sequence still holds in its KV cache (an
   * earlier request's prompt and output), evaluating only the rest; the result's `cachedTokens`
   * says how many were reused. Greedy output is the same either way. false: evaluate every prompt
   * token (to measure prompt processing). Default true.
   */
  cachePrompt?: boolean;
  /**
   * What a full window does. Off (default): the generation ends with stopReason 'contextFull'.
   * On (`true`, or `{ keep }`): the first `keep` tokens (default 1, the BOS of most models) stay,
   * the older half of the rest is dropped and generation goes on (where the model's memory can
   * shift positions; otherwise it ends with 'contextFull' as without it); the result's
   * `droppedTokens` says how many went. Needs `maxTokens`, since a shifting window never fills.
   */
  contextShift?: boolean | { keep?: number };
}

export const loadKeys = [
  'gpu',
  'gpuLayers',
  'mainGpu',
  'splitMode',
  'tensorSplit',
  'rpcServers',
  'contextSize',
  'sequences',
  'parkedSessionBytes',
  'batchSize',
  'ubatchSize',
  'threads',
  'threadsBatch',
  'flashAttention',
  'kvCacheType',
  'offloadKvCache',
  'mmap',
  'warmup',
  'embeddings',
  'pooling',
  'onProgress',
  'signal',
] as const;
const generateKeys = [
  ...samplingKeys,
  'maxTokens',
  'minTokens',
  'ignoreEos',
  'stop',
  'includeStopString',
  'skipSpecialTokens',
  'grammar',
  'jsonSchema',
  'n',
  'signal',
  'stopOnAbort',
  'onText',
  'cachePrompt',
  'contextShift',
] as const;

export const DEFAULT_CONTEXT_SIZE = 4096;
/** LoadOptions.parkedSessionBytes: a few conversations of a mid-size model (Llama 3 8B: 128 KiB per token, f16). */
export const DEFAULT_PARKED_SESSION_BYTES = 256 * 2 ** 20;
const MAX_TOKENS_LIMIT = 2 ** 31 - 1;

/** ggml_type ids for the KV-cache types we accept (each option name is ggml_type_name's). */
export const ggmlTypeIds: Record<KvCacheType, number> = {
  f32: GgmlType.F32,
  f16: GgmlType.F16,
  q4_0: GgmlType.Q4_0,
  q4_1: GgmlType.Q4_1,
  q5_0: GgmlType.Q5_0,
  q5_1: GgmlType.Q5_1,
  q8_0: GgmlType.Q8_0,
  bf16: GgmlType.BF16,
};
const flashAttnIds: Record<FlashAttention, number> = { auto: -1, off: 0, on: 1 };

export type ValidLoadOptions = LoadOptions & { gpu: GpuPolicy };

export function validateLoadOptions(input: unknown): ValidLoadOptions {
  const options = expectObject('options', input);
  rejectUnknownKeys('options', options, loadKeys, {
    nGpuLayers: 'use gpuLayers',
    gpuLayer: 'use gpuLayers',
    contextLength: 'use contextSize',
    nCtx: 'use contextSize',
    flashAttn: 'use flashAttention',
    parallel: 'use sequences',
    nSeqMax: 'use sequences',
  });
  const gpu = optionalEnum('options.gpu', options.gpu, ['auto', 'cuda', 'cpu'] as const) ?? 'auto';
  const { gpuLayers } = options;
  if (gpuLayers !== undefined && gpuLayers !== 'max' && gpuLayers !== 'auto') {
    optionalInteger('options.gpuLayers', gpuLayers, 0, 100_000, "or 'max' / 'auto'");
  }
  optionalInteger('options.mainGpu', options.mainGpu, 0, 255);
  optionalEnum('options.splitMode', options.splitMode, ['none', 'layer', 'row'] as const);
  if (options.tensorSplit !== undefined) {
    if (!Array.isArray(options.tensorSplit)) throw typeError('options.tensorSplit', 'an array of numbers', options.tensorSplit);
    options.tensorSplit.forEach((share, i) => optionalNumber(`options.tensorSplit[${i}]`, share, 0, 1e9));
  }
  if (options.rpcServers !== undefined) {
    if (!Array.isArray(options.rpcServers)) throw typeError('options.rpcServers', "an array of 'host:port' strings", options.rpcServers);
    options.rpcServers.forEach((endpoint, i) => parseRpcEndpoint(endpoint, `options.rpcServers[${i}]`));
    if (new Set(options.rpcServers).size !== options.rpcServers.length) {
      throw rangeError('options.rpcServers', 'distinct endpoints', options.rpcServers);
    }
    if (options.rpcServers.length > RPC_MAX_SERVERS) {
      throw rangeError('options.rpcServers', `at most ${RPC_MAX_SERVERS} endpoints (GGML_RPC_MAX_SERVERS)`, options.rpcServers);
    }
    if (gpu === 'cpu' && options.rpcServers.length > 0) {
      throw rangeError(
        'options.rpcServers',
        "empty with gpu: 'cpu'",
        options.rpcServers,
        "remote devices are offload devices; use gpu: 'auto' to place layers on them",
      );
    }
  }
  optionalInteger('options.contextSize', options.contextSize, 1, 16_777_216);
  // llama.cpp's LLAMA_MAX_SEQ; every sequence's next token goes into one batch.
  const sequences = optionalInteger('options.sequences', options.sequences, 1, 256);
  optionalInteger('options.parkedSessionBytes', options.parkedSessionBytes, 0, Number.MAX_SAFE_INTEGER);
  optionalInteger('options.batchSize', options.batchSize, 1, 1_048_576);
  if (sequences !== undefined && options.batchSize !== undefined && (options.batchSize as number) < sequences) {
    throw rangeError(
      'options.batchSize',
      `at least options.sequences (${sequences}): one step decodes a token of every sequence`,
      options.batchSize,
    );
  }
  // llama.cpp's n_ctx, contextSize × sequences padded up to a multiple of 256, is a uint32_t.
  if (sequences !== undefined && options.contextSize !== undefined && (options.contextSize as number) * sequences > 2 ** 32 - 256) {
    throw rangeError(
      'options.contextSize',
      `at most ${Math.floor((2 ** 32 - 256) / sequences)} with sequences: ${sequences}`,
      options.contextSize,
      'llama.cpp counts contextSize × sequences KV cells in 32 bits',
    );
  }
  optionalInteger('options.ubatchSize', options.ubatchSize, 1, 1_048_576);
  if (
    options.batchSize !== undefined &&
    options.ubatchSize !== undefined &&
    (options.ubatchSize as number) > (options.batchSize as number)
  ) {
    throw rangeError('options.ubatchSize', `at most options.batchSize (${options.batchSize})`, options.ubatchSize);
  }
  optionalInteger('options.threads', options.threads, 1, 1024);
  optionalInteger('options.threadsBatch', options.threadsBatch, 1, 1024);
  optionalEnum('options.flashAttention', options.flashAttention, ['auto', 'on', 'off'] as const);
  optionalEnum('options.kvCacheType', options.kvCacheType, Object.keys(ggmlTypeIds) as KvCacheType[]);
  optionalBoolean('options.offloadKvCache', options.offloadKvCache);
  optionalBoolean('options.mmap', options.mmap);
  optionalBoolean('options.warmup', options.warmup);
  optionalBoolean('options.embeddings', options.embeddings);
  optionalEnum('options.pooling', options.pooling, POOLINGS);
  optionalFunction('options.onProgress', options.onProgress);
  optionalSignal('options.signal', options.signal);
  return { ...(options as LoadOptions), gpu };
}

/** The context size we ask for, checked against what the model was trained for. */
export function resolveContextSize(requested: number | undefined, trainingContextSize: number): number {
  const training = trainingContextSize > 0 ? trainingContextSize : DEFAULT_CONTEXT_SIZE;
  if (requested === undefined) return Math.min(DEFAULT_CONTEXT_SIZE, training);
  if (requested > training) {
    throw rangeError(
      'options.contextSize',
      `at most the model's training context (${training})`,
      requested,
      'a longer window needs RoPE scaling this package does not configure yet',
    );
  }
  return requested;
}

let physicalCores: number | undefined;

/**
 * Physical cores, like llama.cpp's own default: SMT siblings share one core's vector units, so
 * a thread per logical CPU usually makes matrix work slower, not faster.
 */
export function defaultThreadCount(cpuinfo?: string): number {
  if (cpuinfo === undefined && physicalCores !== undefined) return physicalCores;
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      text = ''; // not Linux: fall back to the logical count below
    }
  }
  const cores = new Set<string>();
  for (const block of text.split(/\n\s*\n/)) {
    const physical = block.match(/^physical id\s*:\s*(\d+)/m)?.[1];
    const core = block.match(/^core id\s*:\s*(\d+)/m)?.[1];
    if (physical !== undefined && core !== undefined) cores.add(`${physical}:${core}`);
  }
  const count = Math.min(cores.size || availableParallelism(), availableParallelism());
  if (cpuinfo === undefined) physicalCores = count;
  return count;
}

/** What every context of a load shares: threads, flash attention and the KV cache's type and place. */
function computeParams(options: LoadOptions): NativeContextParams {
  const threads = options.threads ?? defaultThreadCount();
  return {
    nThreads: threads,
    nThreadsBatch: options.threadsBatch ?? threads,
    flashAttnType: options.flashAttention === undefined ? undefined : flashAttnIds[options.flashAttention],
    typeK: options.kvCacheType === undefined ? undefined : ggmlTypeIds[options.kvCacheType],
    typeV: options.kvCacheType === undefined ? undefined : ggmlTypeIds[options.kvCacheType],
    offloadKqv: options.offloadKvCache,
  };
}

/** `contextSize` is one sequence's window; llama.cpp's n_ctx is the whole cache, split per sequence. */
export function contextParams(options: LoadOptions, contextSize: number): NativeContextParams {
  const sequences = options.sequences ?? 1;
  return {
    ...computeParams(options),
    nCtx: contextSize * sequences,
    nSeqMax: options.sequences,
    nBatch: options.batchSize === undefined ? undefined : Math.min(options.batchSize, contextSize * sequences),
    nUbatch: options.ubatchSize,
    parkedSessionBytes: options.parkedSessionBytes ?? DEFAULT_PARKED_SESSION_BYTES,
  };
}

/**
 * The embeddings context: one window of `contextSize` tokens that every text of a call shares
 * (a unified KV cache, up to llama.cpp's 256 sequences per batch), and a batch equal to its
 * ubatch, so that each text is computed whole in one ubatch: an encoder must see all of a text
 * at once, and a pooled mean over a text split across ubatches would be wrong. `pooling`: the
 * llama.h id, or undefined for the model's own.
 */
export function embeddingContextParams(options: LoadOptions, contextSize: number, pooling: number | undefined): NativeContextParams {
  const batch = Math.min(options.batchSize ?? contextSize, contextSize);
  return {
    ...computeParams(options),
    nCtx: contextSize,
    nSeqMax: EMBEDDING_SEQUENCES,
    kvUnified: true,
    nBatch: batch,
    nUbatch: batch,
    embeddings: true,
    poolingType: pooling,
    parkedSessionBytes: 0,
  };
}

/** Texts one embedding decode may hold: llama.cpp's LLAMA_MAX_SEQ. */
export const EMBEDDING_SEQUENCES = 256;

export interface ValidGenerateOptions extends GenerateOptions {
  stopSequences: string[];
}

export function validateGenerateOptions(input: unknown): ValidGenerateOptions {
  const options = expectObject('options', input);
  rejectUnknownKeys('options', options, generateKeys, {
    ...samplingHints,
    nPredict: 'use maxTokens',
    maxNewTokens: 'use maxTokens',
    onToken: 'use onText, or iterate model.stream()',
    stopSequences: 'use stop',
    ignoreEOS: 'use ignoreEos',
    json_schema: 'use jsonSchema',
    responseFormat: "responseFormat is chat()'s; generate() takes jsonSchema",
  });
  validateSamplingOptions(options);
  optionalInteger('options.maxTokens', options.maxTokens, 1, Number.MAX_SAFE_INTEGER);
  const minTokens = optionalInteger('options.minTokens', options.minTokens, 0, MAX_TOKENS_LIMIT);
  if (minTokens !== undefined && options.maxTokens !== undefined && minTokens > (options.maxTokens as number)) {
    throw rangeError('options.minTokens', `at most options.maxTokens (${options.maxTokens as number})`, minTokens);
  }
  if (optionalBoolean('options.ignoreEos', options.ignoreEos) === true && options.maxTokens === undefined) {
    throw rangeError('options.maxTokens', 'set with ignoreEos (nothing else ends the generation)', undefined);
  }
  optionalBoolean('options.includeStopString', options.includeStopString);
  optionalBoolean('options.skipSpecialTokens', options.skipSpecialTokens);
  if (options.grammar !== undefined) expectString('options.grammar', options.grammar, { allowEmpty: false });
  const schema = options.jsonSchema;
  if (schema !== undefined && (schema === null || typeof schema !== 'object' || Array.isArray(schema))) {
    throw typeError('options.jsonSchema', 'a JSON Schema object', schema);
  }
  if (options.grammar !== undefined && schema !== undefined) {
    throw rangeError('options.grammar', 'not set together with jsonSchema (one constrains the output)', 'both');
  }
  optionalInteger('options.n', options.n, 1, 256);
  optionalSignal('options.signal', options.signal);
  optionalBoolean('options.stopOnAbort', options.stopOnAbort);
  optionalFunction('options.onText', options.onText);
  optionalBoolean('options.cachePrompt', options.cachePrompt);
  const shift = options.contextShift;
  if (shift !== undefined && typeof shift !== 'boolean') {
    if (shift === null || typeof shift !== 'object' || Array.isArray(shift))
      throw typeError('options.contextShift', 'a boolean or { keep }', shift);
    rejectUnknownKeys('options.contextShift', shift as Record<string, unknown>, ['keep']);
    optionalInteger('options.contextShift.keep', (shift as { keep?: unknown }).keep, 0, 16_777_216);
  }
  if (shift !== undefined && shift !== false && options.maxTokens === undefined) {
    throw rangeError(
      'options.maxTokens',
      'set with contextShift (a shifting window never fills, so nothing else ends the generation)',
      undefined,
    );
  }
  let stopSequences: string[] = [];
  if (options.stop !== undefined) {
    stopSequences = typeof options.stop === 'string' ? [options.stop] : (options.stop as string[]);
    if (!Array.isArray(stopSequences)) throw typeError('options.stop', 'a string or an array of strings', options.stop);
    stopSequences.forEach((s, i) => {
      if (typeof s !== 'string' || s.length === 0) throw typeError(`options.stop[${i}]`, 'a non-empty string', s);
    });
  }
  return { ...(options as GenerateOptions), stopSequences };
}

/** minTokens as the native layer takes it: ignoreEos is "never before maxTokens". */
export function resolveMinTokens(options: GenerateOptions): number {
  return options.ignoreEos === true ? MAX_TOKENS_LIMIT : (options.minTokens ?? 0);
}

/** The tokens a context shift keeps, or -1 when it is off (the native layer's encoding). */
export function contextShiftKeep(shift: GenerateOptions['contextShift']): number {
  if (shift === undefined || shift === false) return -1;
  return shift === true ? 1 : (shift.keep ?? 1);
}

/** maxTokens as the native layer takes it: bounded by the room left in the context. */
export function resolveMaxTokens(maxTokens: number | undefined, contextSize: number, promptTokens: number): number {
  const room = contextSize - promptTokens;
  return Math.min(maxTokens ?? MAX_TOKENS_LIMIT, room, MAX_TOKENS_LIMIT);
}
