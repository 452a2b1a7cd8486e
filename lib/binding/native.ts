/**
 * The contract between lib/ and native/: every export of the addon, typed, with the llama.cpp /
 * ggml function it wraps. scripts/check-exports.mjs compares `nativeExportNames`, and each class's
 * interface, with what the addon registers. Nothing here has behaviour; lib/ builds the user-facing
 * API on top.
 */

export interface NativeDevice {
  index: number;
  name: string;
  description: string;
  type: 'cpu' | 'gpu' | 'igpu' | 'accel' | 'meta' | 'unknown';
  backend: string;
  memoryFree: number;
  memoryTotal: number;
  deviceId: string | null;
}

export interface NativeBackend {
  name: string;
  deviceCount: number;
  /** ggml_backend_get_features: build facts the backend publishes (CUDA: ARCHS, ...). */
  features: Record<string, string>;
}

/** llama_model_params fields lib/ may set; undefined keeps llama_model_default_params(). */
export interface NativeModelParams {
  nGpuLayers?: number;
  splitMode?: number;
  mainGpu?: number;
  loadMode?: number;
  vocabOnly?: boolean;
  checkTensors?: boolean;
  noAlloc?: boolean;
  /** Device names; [] means CPU only (llama_model_params.devices, NULL-terminated). */
  devices?: string[];
  tensorSplit?: number[];
}

/** llama_context_params fields lib/ may set; undefined keeps llama_context_default_params(). */
export interface NativeContextParams {
  nCtx?: number;
  nBatch?: number;
  nUbatch?: number;
  nSeqMax?: number;
  nThreads?: number;
  nThreadsBatch?: number;
  flashAttnType?: number;
  typeK?: number;
  typeV?: number;
  offloadKqv?: boolean;
  opOffload?: boolean;
  kvUnified?: boolean;
  /** llama_context_params.embeddings: an embeddings context, which embeds and has no engine. */
  embeddings?: boolean;
  /** llama_context_params.pooling_type (llama.h's enum; -1 the model's own). */
  poolingType?: number;
  /** Not llama.cpp's: the engine's host-memory budget for parked session states (0: none). */
  parkedSessionBytes?: number;
}

export interface NativeModelInfo {
  description: string;
  architecture: string;
  name: string;
  parameters: number;
  sizeBytes: number;
  layerCount: number;
  trainingContextSize: number;
  embeddingSize: number;
  headCount: number;
  headCountKv: number;
  vocabSize: number;
  fileType: number;
  fileTypeName: string;
  chatTemplate: string | null;
  bosToken: number;
  eosToken: number;
  addBos: boolean;
  hasEncoder: boolean;
  hasDecoder: boolean;
  /** llama_model_n_embd_out: the size of a pooled embedding. */
  embeddingOutputSize: number;
  /** llama_model_n_cls_out: the ranking head's outputs (1 when the file says nothing). */
  classifierOutputs: number;
  /** llama_model_cls_label for each output; null where the file names none. */
  classifierLabels: (string | null)[];
  /** llama_model_chat_template(model, "rerank"): the file's rerank prompt with {query} and {document}. */
  rerankTemplate: string | null;
  /** llama_vocab_sep, llama_vocab_get_add_sep, llama_vocab_get_add_eos */
  sepToken: number;
  addSep: boolean;
  addEos: boolean;
}

/** What embeddings need to know about a model that llama.h does not say (native/llama_adapter.h). */
export interface NativeEmbeddingTraits {
  /** The file's pooling type (llama.h's enum: 0 none, 1 mean, 2 cls, 3 last, 4 rank). */
  poolingType: number;
  /** False for BERT-style encoders, which see a whole text at once. */
  causalAttention: boolean;
  /** An output projection to the vocabulary: the model can generate. */
  languageModelHead: boolean;
  /** A classifier head that RANK pooling applies. */
  rankingHead: boolean;
}

export interface NativeEmbedResult {
  /** Rows of `width` floats: one per text (pooled) or one per token (pooling none), in order. */
  vectors: Float32Array;
  width: number;
  /** llama_decode calls it took. */
  decodes: number;
}

export interface NativeContextInfo {
  /** llama_n_ctx_seq: the window of one sequence (a prompt and its output). */
  contextSize: number;
  /** llama_n_ctx: KV-cache cells of the whole context (contextSize × sequences). */
  totalContextSize: number;
  batchSize: number;
  ubatchSize: number;
  sequences: number;
  threads: number;
  threadsBatch: number;
  /** A persistent ggml threadpool is attached (llama_attach_threadpool). */
  threadpool: boolean;
  /**
   * Greedy generation of several sequences picks each step's tokens on the threadpool's threads,
   * not one after another on the context thread (native/argmax.h). False with one thread.
   */
  threadpoolArgmax: boolean;
}

export type NativeStopReason = 'eog' | 'maxTokens' | 'aborted' | 'contextFull';

/** Why a cached prefix could not be reused (cachedTokens is then 0). */
export type NativeCacheMiss = 'recurrentMemory' | 'slidingWindow' | 'trimFailed' | 'restoreFailed';

/** Where cachedTokens came from: the sequence as it was, a parked session state restored into it, another completion of the same request (n), or nowhere (0). */
export type NativeCacheSource = 'resident' | 'restored' | 'shared' | 'evaluated';

/** What the engine published after its last step (atomic reads; not one snapshot). */
export interface NativeEngineStats {
  usedCells: number;
  totalCells: number;
  parkedSessions: number;
  parkedBytes: number;
  steps: number;
  decodeMs: number;
  hostMs: number;
}

/** Only what lib/ cannot know itself: token counts and times come from its prompts and the onToken events. */
export interface NativeRequestResult {
  stopReason: NativeStopReason;
  /** Prompt tokens found in the sequence's KV cache and not evaluated again. */
  cachedTokens: number;
  cacheMiss: NativeCacheMiss | null;
  cacheSource: NativeCacheSource;
  /** When the request got a sequence, on the engine's clock (ms, the clock of onToken's atMs). */
  admittedAtMs: number;
  /** When its last prompt token was decoded (-1 if it never was). */
  promptDoneAtMs: number;
  /** Times it was preempted (its cells freed for the others) and evaluated again. */
  preemptions: number;
  /** Tokens a context shift dropped from the window. */
  droppedTokens: number;
  /** A follower of an n-completion group that got its leader's prompt evaluation (a copy of its KV cache). */
  sharedPrompt: boolean;
}

/** A grammar for the sampler (common_params_sampling.grammar and friends). */
export interface NativeGrammar {
  text: string;
  /** 'user': the caller's GBNF; 'output': from a JSON schema; 'toolCalls': a chat template's tool-call grammar. The last two are fed `generationPrompt` first. */
  kind: 'user' | 'output' | 'toolCalls';
  /** Applied only once a trigger appears in the output (common_grammar_trigger). */
  lazy: boolean;
  triggers: NativeGrammarTrigger[];
  /** The text the prompt ends with that the grammar also starts with ('' for none). */
  generationPrompt: string;
}

export interface NativeGrammarTrigger {
  type: 'token' | 'word' | 'pattern' | 'patternFull';
  value: string;
  /** For 'token': the token id. */
  token?: number;
}

/** common_params_sampling as lib/ resolves it: every field is set (lib/sampling.ts samplerParams owns the defaults). */
export interface NativeSamplerParams {
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  typicalP: number;
  topNSigma: number;
  xtcProbability: number;
  xtcThreshold: number;
  repeatPenalty: number;
  repeatLastN: number;
  frequencyPenalty: number;
  presencePenalty: number;
  dryMultiplier: number;
  dryBase: number;
  dryAllowedLength: number;
  dryPenaltyLastN: number;
  drySequenceBreakers: string[];
  /** 0 off, 1 or 2: the mirostat version. */
  mirostat: number;
  mirostatTau: number;
  mirostatEta: number;
  seed: number;
  /** -1: no log probabilities; 0-20: the chosen token's and that many alternatives'. */
  logprobs: number;
  logitBias?: { tokens: Int32Array; biases: Float32Array };
  grammar?: NativeGrammar;
  /** common's reasoning budget sampler: after `tokens` tokens of reasoning, `message` and the first end tag are forced. */
  reasoningBudget?: { tokens: number; startTag: string; endTags: string[]; message: string };
}

/** One message as common_chat_msg takes it. */
export interface NativeChatMessage {
  role: string;
  content: string;
  reasoning?: string;
  toolCalls?: { id: string; name: string; arguments: string }[];
  toolCallId?: string;
  toolName?: string;
}

/** common_chat_templates_inputs fields lib/ may set; undefined keeps common's default. */
export interface NativeChatOptions {
  addGenerationPrompt?: boolean;
  enableThinking?: boolean;
  /** chat_template_kwargs: each value is JSON text. */
  variables?: Record<string, string>;
  /** common_chat_tool: parameters as JSON text. */
  tools?: { name: string; description: string; parameters: string }[];
  toolChoice?: 'auto' | 'none' | 'required';
  parallelToolCalls?: boolean;
  /** A named tool_choice: with toolChoice 'required', the grammar and parser allow this tool only (the prompt lists all). */
  onlyTool?: string;
  /** A JSON schema (JSON text) the reply must match (response_format). */
  jsonSchema?: string;
}

/** common_chat_params: the rendered prompt, the grammar for the reply and what common's chat parser needs. */
export interface NativeChatPrompt {
  prompt: string;
  /** common_chat_format, and its common_chat_format_name */
  format: number;
  formatName: string;
  /** The text the prompt ends with that opens the assistant's turn (the parser starts from it). */
  generationPrompt: string;
  /** The serialized PEG parser for the reply ('' for content only). */
  parser: string;
  supportsThinking: boolean;
  thinkingStartTag: string;
  thinkingEndTags: string[];
  additionalStops: string[];
  /** false: a built-in name, rendered by llama_chat_apply_template. */
  jinja: boolean;
  /** The reply's grammar ('' for none): tool calls, or the JSON schema; with tool_choice 'required' rebuilt without free content (native/chat_templates.cc). */
  grammar: string;
  grammarLazy: boolean;
  grammarTriggers: NativeGrammarTrigger[];
  /** Texts the template's format relies on; the single-token ones are rendered in the reply text. */
  preservedTokens: string[];
  /** With tools (not 'none'): the template has a tool-call format llama.cpp can constrain. */
  toolFormat: boolean;
}

/** common_chat_parse's message: the answer, the reasoning, and the tool calls (arguments as the text the model wrote). */
export interface NativeParsedReply {
  content: string;
  reasoning: string;
  toolCalls: { name: string; arguments: string; id: string }[];
}

export interface NativeModel {
  /** llama_model_meta_*, llama_model_n_*, llama_model_desc, llama_model_chat_template, llama_vocab_* */
  info(): NativeModelInfo;
  /** llama_tokenize */
  tokenize(text: string, addSpecial: boolean, parseSpecial: boolean): Int32Array;
  /** llama_detokenize (UTF-8 bytes) */
  detokenize(tokens: Int32Array, removeSpecial: boolean, unparseSpecial: boolean): Buffer;
  /** llama_token_to_piece for each token: its own text, as the engine streams it (UTF-8 bytes, possibly part of a character). */
  tokenPieces(tokens: Int32Array, special: boolean): Buffer[];
  /**
   * common_chat_templates_init + common_chat_templates_apply (llama-common; Jinja, or
   * llama_chat_apply_template for a built-in name). null: no template given and the model has none.
   * Throws ERR_CHAT_TEMPLATE with llama.cpp's reason when the template cannot be parsed or rendered.
   */
  applyChatTemplate(template: string | null, messages: NativeChatMessage[], options: NativeChatOptions): NativeChatPrompt | null;
  /**
   * common_chat_parse with the parser applyChatTemplate returned (tool calls read when `toolCalls`);
   * throws ERR_CHAT_TEMPLATE when the text does not fit it.
   */
  parseChatOutput(
    text: string,
    prompt: Pick<NativeChatPrompt, 'format' | 'generationPrompt' | 'parser'>,
    partial: boolean,
    toolCalls?: boolean,
  ): NativeParsedReply;
  /** llama_model_free (contexts first) */
  dispose(): void;
  readonly disposed: boolean;
}

export interface NativeContext {
  /** llama_n_ctx_seq, llama_n_ctx, llama_n_batch, llama_n_ubatch, llama_n_seq_max, llama_n_threads(_batch) */
  info(): NativeContextInfo;
  /**
   * Queues one request on the context's engine (native/engine.h): llama_decode +
   * llama_sampler_sample on the context's own thread, in a sequence of its own beside the other
   * requests, reusing the longest cached prefix (llama_memory_seq_rm). Waiting requests are
   * admitted first come, first served. `cancel` ends it (waiting or running) within a step.
   */
  submit(
    prompt: Int32Array,
    sampler: NativeSampler,
    cancel: NativeCancelFlag,
    /**
     * Called in order for every token; `atMs` is when the engine produced it, on its clock. With a
     * sampler that asked for log probabilities, also the token's and the best alternatives'.
     */
    onToken: (token: number, piece: Buffer, atMs: number, logprob?: number, topTokens?: Int32Array, topLogprobs?: Float32Array) => void,
    options: NativeSubmitOptions,
  ): Promise<NativeRequestResult>;
  /** The session's sequence is no longer kept for it (no llama.cpp call: the engine's own bookkeeping). */
  endSession(id: number): void;
  /** llama_memory_seq_cp (whole sequence) of the parent session's idle sequence into a free one kept for the child, at the next step; skipped when none is free. */
  forkSession(parent: number, child: number): void;
  /** The engine's KV-cache, parking and step-time figures (no llama.cpp call: atomics it publishes after each step). */
  engineStats(): NativeEngineStats;
  /**
   * Test hook, not public API (lib/internal/fault.ts): the engine's next step returns `rc` in place
   * of calling llama_decode. rc < -1 is llama.h's fatal error: the context is marked failed and every
   * request, running, waiting or later, rejects with ERR_CONTEXT_FAILED (`started` says which had run).
   */
  injectDecodeFault(rc: number): void;
  /**
   * Embeddings contexts only: the texts (lengths[i] tokens each, end to end in `tokens`) packed
   * into as few llama_decode calls as the batch size and sequence count allow, then
   * llama_get_embeddings_seq per text (or llama_get_embeddings_ith per token with pooling none).
   * One call at a time (ERR_BUSY otherwise); a generation context throws ERR_EMBEDDINGS_ONLY.
   */
  embed(tokens: Int32Array, lengths: Uint32Array): Promise<NativeEmbedResult>;
  /** llama_free + ggml_threadpool_free */
  dispose(): void;
  readonly disposed: boolean;
}

/** submit()'s per-request settings. */
export interface NativeSubmitOptions {
  /** Tokens to generate at most (1 to 2^31-1). */
  maxTokens: number;
  /**
   * true: onToken runs as tokens come (streaming, stop sequences). false: only the first token
   * comes at once (time to first token); the rest ride along with later wake-ups or the end, so
   * the event loop does not wake, and take a core from the decode, once per token.
   */
  everyToken: boolean;
  /** false: evaluate the whole prompt even where a sequence holds a prefix of it. */
  reusePrefix: boolean;
  /** End-of-generation tokens are masked until this many tokens are generated (2^31-1: never end before maxTokens). Default 0. */
  minTokens?: number;
  /** Special tokens are left out of the text (default), except those in renderSpecial. */
  skipSpecial?: boolean;
  renderSpecial?: Int32Array;
  /** A session id (lib/session.ts), 0 or absent for none: its requests go back to the sequence its last one used. */
  session?: number;
  /** Tokens to keep when the window is full and the rest is shifted (llama_memory_seq_rm + llama_memory_seq_add); -1 or absent: no shift. */
  contextShiftKeep?: number;
  /** n completions: requests with one group id (and groupSize) share one evaluation of their prompt (llama_memory_seq_cp). */
  group?: number;
  groupSize?: number;
}

/** common_sampler (llama-common) from the resolved options, or greedy alone (argmax in the engine). */
export interface NativeSampler {
  dispose(): void;
}

export interface NativeCancelFlag {
  cancel(): void;
  readonly cancelled: boolean;
}

export interface NativeMemoryEntry {
  bufferType: string;
  device: string | null;
  deviceType: string | null;
  isHost: boolean;
  model: number;
  context: number;
  compute: number;
}

export interface NativeLayerPlacement {
  layers: (string | null)[];
  output: string | null;
  input: string | null;
  outputTensor: string | null;
  /** False for a model without an output projection (an encoder such as BERT): outputTensor then means nothing. */
  hasOutputTensor: boolean;
}

export interface NativeGraphPlacement {
  splits: number;
  nodes: number;
  nodesByBackend: Record<string, number>;
  cpuOpsOnGpuMemory: NativeCpuOpsOnGpuMemory;
}

/** Ops scheduled on a host backend (CPU) that read weights or KV cache held in a GPU's own memory. */
export interface NativeCpuOpsOnGpuMemory {
  count: number;
  /** The first 8: the op, its graph node, the backend it runs on, and the GPU-resident tensor it reads. */
  examples: { op: string; node: string; backend: string; tensor: string; device: string }[];
}

export interface NativeNvmlDevice {
  index: number;
  name: string | null;
  /** "9.0" for an H100. */
  computeCapability: string | null;
  smClockMHz: number | null;
  memoryClockMHz: number | null;
  maxSmClockMHz: number | null;
  powerW: number | null;
  powerLimitW: number | null;
  temperatureC: number | null;
  utilizationGpu: number | null;
  utilizationMemory: number | null;
  /** nvmlClocksEventReasons bit mask; lib/telemetry.ts names the bits. */
  throttleReasons: number | null;
  memoryTotal: number | null;
  memoryFree: number | null;
  /** 'dddd:bb:dd.0' in lower-case hex (nvmlDeviceGetPciInfo), as ggml's CUDA devices give their deviceId; null when NVML cannot say. */
  pciBusId: string | null;
}

export type NativeNvmlSample =
  | { available: false; reason: string }
  | { available: true; driverVersion: string | null; cudaDriverVersion: number | null; devices: NativeNvmlDevice[] };

export interface NativeFitResult {
  status: 'success' | 'failure' | 'error';
  nGpuLayers: number;
  tensorSplit: number[];
  /** Tensor-level overrides the fit asked for (MoE experts on the host); not applied by lib/ yet. */
  tensorOverrides: number;
}

export interface NativeGgmlType {
  id: number;
  /** ggml_type_name: lower case with a capital K ("q4_K"). */
  name: string;
  blockSize: number;
  typeSize: number;
  quantized: boolean;
}

export interface NativeAddon {
  Model: {
    /** llama_model_load_from_file (progress_callback carries progress and cancellation) */
    load(path: string, params: NativeModelParams, onProgress?: (fraction: number) => void, cancel?: NativeCancelFlag): Promise<NativeModel>;
  };
  Context: {
    /** llama_init_from_model + ggml_threadpool_new + llama_attach_threadpool */
    create(model: NativeModel, params: NativeContextParams): Promise<NativeContext>;
  };
  Sampler: new (model: NativeModel, params: NativeSamplerParams) => NativeSampler;
  CancelFlag: new () => NativeCancelFlag;
  /** ggml_backend_load_all_from_path */
  loadBackendsFromDir(dir: string): void;
  /** dlopen + dlerror, to explain a backend module that did not load */
  probeLibrary(path: string): string | null;
  /** dlopen(RTLD_GLOBAL), kept: satisfies a backend module's DT_NEEDED by soname (CUDA runtime from wheels) */
  preloadLibrary(path: string): string | null;
  /** ggml_backend_reg_* + ggml_backend_get_features */
  listBackends(): NativeBackend[];
  /**
   * ggml_backend_dev_get_props; for a remote device of the RPC backend only its name, description
   * (the endpoint) and type, with memory 0: its props would be a network round trip, and ggml aborts
   * when its server has gone away. lib/gpu/rpc.ts fills in the memory its own probe read.
   */
  listDevices(): NativeDevice[];
  /**
   * adapter: ggml_backend_rpc_add_server (the RPC module's proc address) + ggml_backend_device_register
   * for each of its devices not yet registered; returns their names (RPC0, ...). Idempotent per endpoint.
   * ggml aborts the process when the server cannot be reached: lib/gpu/rpc.ts probes it first.
   * Synchronous on purpose, though it is a network round trip (the handshake and the device count, once
   * per endpoint and process): it appends to ggml's device registry, which has no lock and which the JS
   * thread reads (listDevices, placement), so it runs where those reads do rather than on a pool thread.
   */
  rpcAddServer(endpoint: string): string[];
  /**
   * adapter: ggml_backend_rpc_start_server on a thread of its own, serving `device` ('' for the CPU) with
   * its memory reports capped at memoryCapBytes (0: no cap). Resolves, with why, only if the server stops
   * (it could not bind, or accept failed); otherwise it serves until the process ends.
   */
  rpcServe(endpoint: string, device: string, cacheDir: string, threads: number, memoryCapBytes: number): Promise<string>;
  /** llama_log_set (installed once; this only changes where lines go) */
  setLogger(logger: ((level: number, text: string) => void) | null, minLevel: number): void;
  /** llama_model_quantize */
  quantize(input: string, output: string, ftype: number, threads: number): Promise<void>;
  /** adapter: llm_arch_from_string */
  architectureSupported(name: string): boolean;
  /** adapter: llama_model::dev_layer / dev_output / tensor buffers */
  layerPlacement(model: NativeModel): NativeLayerPlacement;
  embeddingTraits(model: NativeModel): NativeEmbeddingTraits;
  /** adapter: llama_get_memory_breakdown (src/llama-ext.h) */
  memoryBreakdown(context: NativeContext): NativeMemoryEntry[];
  /** common_fit_params (llama.cpp's common/fit.h): layers that fit free device memory, no_alloc projection */
  fitParams(path: string, params: NativeContextParams & { devices: string[] }, marginBytes: number): Promise<NativeFitResult>;
  /** adapter: llama_graph_reserve (n_seqs = llama_n_seq_max; llama.cpp rounds nTokens up to a multiple) + ggml_backend_sched_get_tensor_backend */
  graphPlacement(context: NativeContext, nTokens: number): NativeGraphPlacement;
  /** NVML via dlopen(libnvidia-ml.so.1): driver, clocks, power, temperature, throttle reasons */
  nvmlSample(): NativeNvmlSample;
  /**
   * ggml_type_name, ggml_blck_size, ggml_type_size, ggml_is_quantized for every type ggml has (ids
   * below GGML_TYPE_COUNT; removed ids are left out). Only test/native/ggml-types.test.ts calls it:
   * it checks lib/gguf/ggml-types.ts, which must work without the addon, against ggml.
   */
  ggmlTypes(): NativeGgmlType[];
  /** llama_ftype_name ("Q8_0", "all F32"); test/native/ggml-types.test.ts checks LlamaFileType with it. */
  fileTypeName(ftype: number): string;
  /** adapter: llama_grammar_parser (src/llama-grammar.h) with llama_grammar_init_impl's checks: what llama.cpp refuses in a GBNF text, or null. */
  grammarProblem(model: NativeModel, text: string, root: string): string | null;
  /** json_schema_to_grammar (common/json-schema-to-grammar.h); throws ERR_JSON_SCHEMA with common's reason. */
  jsonSchemaToGrammar(schemaJson: string): string;
  buildInfo(): { llamaCppCommit: string; napiVersion: number; supportsGpuOffload: boolean; maxDevices: number };
  /** llama_print_system_info */
  systemInfo(): string;
}

/** The export names, in the order addon.cc registers them. */
export const nativeExportNames = [
  'Model',
  'Context',
  'Sampler',
  'CancelFlag',
  'loadBackendsFromDir',
  'probeLibrary',
  'preloadLibrary',
  'listBackends',
  'listDevices',
  'rpcAddServer',
  'rpcServe',
  'setLogger',
  'quantize',
  'architectureSupported',
  'layerPlacement',
  'embeddingTraits',
  'memoryBreakdown',
  'fitParams',
  'graphPlacement',
  'nvmlSample',
  'ggmlTypes',
  'fileTypeName',
  'grammarProblem',
  'jsonSchemaToGrammar',
  'buildInfo',
  'systemInfo',
] as const satisfies readonly (keyof NativeAddon)[];

/** llama_ftype values used by quantize (include/llama.h); test/native/ggml-types.test.ts checks them with llama_ftype_name. */
export const LlamaFileType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 7 } as const;

/** ggml_log_level values (ggml/include/ggml.h). */
export const GgmlLogLevel = { NONE: 0, DEBUG: 1, INFO: 2, WARN: 3, ERROR: 4, CONT: 5 } as const;
