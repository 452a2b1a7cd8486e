export { Llama, type BuildReport } from './llama.js';
export {
  LlamaModel,
  type ModelInfo,
  type ContextInfo,
  type EngineStats,
  type ChatDelta,
  type ChatMessage,
  type ChatTemplateOptions,
  type ChatOptions,
  type ChatResult,
  type ChatStream,
  type TextStream,
} from './model.js';
export type {
  GenerateResult,
  GenerationTimings,
  StopReason,
  CacheMiss,
  CacheSource,
  BatchResult,
  BatchTimings,
  TextInfo,
} from './generation.js';
export type { ReasoningOptions, ResponseFormat, Tool, ToolCall, ToolChoice, ToolDefinition, ResultToolCall } from './chat.js';
export type { SamplingOptions, LogitBiasEntry } from './sampling.js';
export type { TokenLogprob, TokenAlternative } from './logprobs.js';
export type { JsonSchema } from './structured/json-schema.js';
export { LlamaSession } from './session.js';
export type { Pooling, EmbedOptions, EmbedResult, RerankOptions, RerankResult } from './embedding.js';
export type { LoadOptions, GenerateOptions, BatchGenerateOptions, GpuPolicy, FlashAttention, KvCacheType } from './options.js';
export type { LayerReport, DeviceUsage, GraphUsage } from './layer-report.js';
export type { LoadPlan, PlannedDevice, PlannedHost } from './plan.js';
export type { Logger, LogLevel } from './log.js';
export type { NativeDevice as Device, NativeBackend as Backend } from './binding/native.js';
export {
  CudaLlamaError,
  ModelFileError,
  NativeBindingError,
  ContextError,
  GpuError,
  GrammarError,
  JsonSchemaError,
  EmbeddingError,
  RpcError,
  DisposedError,
  ErrorCode,
} from './errors.js';
export { CPU_FALLBACK_WARNING } from './gpu/fallback.js';
export { BINARY_FALLBACK_WARNING } from './binding/load-native.js';
export type { PlacementProblem, CpuOpsOnGpuMemory } from './gpu/placement.js';
export type { GpuTelemetry, GpuReading, ThrottleReason } from './gpu/telemetry.js';
export type { TuneOptions, TuneResult, TuneCandidate, TunedLoadOptions } from './tools/tune.js';
export { createServer, type ServerOptions, type LlamaServer } from './server/server.js';
export { ReplicaPool, Replica, type ReplicaPoolOptions, type ReplicaState, type ReplicaHealth } from './server/replicas.js';
export type { OpenAiErrorBody } from './server/errors.js';
