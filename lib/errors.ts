/**
 * The one error hierarchy of cuda-llama. Every error a user can catch from this package is a
 * `CudaLlamaError` (or a plain `TypeError`/`RangeError` for invalid arguments, see validate.ts),
 * with a stable `code` to branch on and a `remedy` that says what to do.
 */

/** Every code this package throws. Stable across releases: add, never rename. */
export const ErrorCode = {
  /** No native binary could be loaded for this platform. */
  NO_BINARY: 'ERR_NO_BINARY',
  /** The model path does not exist. */
  MODEL_NOT_FOUND: 'ERR_MODEL_NOT_FOUND',
  /** The model path is not a regular file (a directory, a device). */
  MODEL_NOT_A_FILE: 'ERR_MODEL_NOT_A_FILE',
  /** The file is not a well-formed GGUF (empty, random bytes, truncated, corrupted tables). */
  MODEL_INVALID: 'ERR_MODEL_INVALID',
  /** The GGUF names an architecture this llama.cpp build does not implement. */
  UNSUPPORTED_ARCHITECTURE: 'ERR_UNSUPPORTED_ARCHITECTURE',
  /** llama.cpp refused the model for a reason our own checks did not catch. */
  MODEL_LOAD: 'ERR_MODEL_LOAD',
  /** llama.cpp could not create a context (usually out of memory). */
  CONTEXT_CREATE: 'ERR_CONTEXT_CREATE',
  /**
   * The load needs more RAM than is available, so it was refused before anything was allocated;
   * `details` has the sizes (`details.plan.host` for a load's plan).
   */
  INSUFFICIENT_MEMORY: 'ERR_INSUFFICIENT_MEMORY',
  /** The prompt does not fit in the context. */
  CONTEXT_FULL: 'ERR_CONTEXT_FULL',
  /** llama_decode failed, or the token pick right after it; `status` holds the failing call's return value. */
  DECODE: 'ERR_DECODE',
  /** The model has no chat template and none was given. */
  NO_CHAT_TEMPLATE: 'ERR_NO_CHAT_TEMPLATE',
  /** llama.cpp could not parse or render the chat template (the message has its reason). */
  CHAT_TEMPLATE: 'ERR_CHAT_TEMPLATE',
  /** The object was disposed; it cannot be used any more. */
  DISPOSED: 'ERR_DISPOSED',
  /** Quantizing a model file failed. */
  QUANTIZE: 'ERR_QUANTIZE',
  /** gpu: 'cuda' was asked for and no usable CUDA device exists (module missing, unloadable, no device). */
  CUDA_UNAVAILABLE: 'ERR_CUDA_UNAVAILABLE',
  /** The model loaded, but not where gpu: 'cuda' asked (layers, output or KV cache on the CPU). */
  GPU_PLACEMENT: 'ERR_GPU_PLACEMENT',
  /**
   * A fatal llama_decode error (a status below -1: llama.h's "error while decoding") left the context
   * unusable. Every request on it, running or waiting, and every later one fails with this code;
   * `details.started` is false for a request that never ran, which can be sent elsewhere unchanged.
   */
  CONTEXT_FAILED: 'ERR_CONTEXT_FAILED',
  /** Another generation already runs on this native context (lib/ queues, so this is a bug guard). */
  BUSY: 'ERR_BUSY',
  /** Llama.tune() could measure none of its configurations; `details.candidates` has each one's error. */
  TUNE: 'ERR_TUNE',
  /**
   * A grammar was refused before generation (llama.cpp's parser, or a guard against input that
   * would crash it), or left no token to choose during generation (the request ended there).
   */
  GRAMMAR: 'ERR_GRAMMAR',
  /** A JSON Schema uses what llama.cpp's grammar cannot enforce, cannot be satisfied, or is not a schema. */
  JSON_SCHEMA: 'ERR_JSON_SCHEMA',
  /** generate(), stream(), chat() or a session on an embedding model, which has no text to generate. */
  EMBEDDINGS_ONLY: 'ERR_EMBEDDINGS_ONLY',
  /** embed() or rerank() on a model loaded without embeddings (LoadOptions.embeddings). */
  NO_EMBEDDINGS: 'ERR_NO_EMBEDDINGS',
  /** A text is longer than an embedding batch holds; `details` has its index and token count. */
  TEXT_TOO_LONG: 'ERR_TEXT_TOO_LONG',
  /** rerank(), or pooling: 'rank', on a model without a ranking head. */
  NO_RANKING_HEAD: 'ERR_NO_RANKING_HEAD',
  /** An RPC endpoint is not 'host:port' as ggml parses it (IPv6 addresses included: ggml cannot take them). */
  RPC_ENDPOINT: 'ERR_RPC_ENDPOINT',
  /** No rpc-server answers at an endpoint: connection refused, unknown host, or the connection was reset. */
  RPC_UNREACHABLE: 'ERR_RPC_UNREACHABLE',
  /** An rpc-server speaks another version of ggml's RPC protocol than this build. */
  RPC_VERSION: 'ERR_RPC_VERSION',
  /** An rpc-server accepted the connection but did not answer the handshake in time (it serves one client at a time). */
  RPC_BUSY: 'ERR_RPC_BUSY',
  /** `cuda-llama rpc-server` cannot serve: the port is in use, or the host is not this machine's. */
  RPC_LISTEN: 'ERR_RPC_LISTEN',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface CudaLlamaErrorOptions {
  /** What to do about it, in words a user can act on. */
  remedy?: string;
  /** The upstream numeric status (e.g. llama_decode's return value), when there is one. */
  status?: number;
  cause?: unknown;
  /** Structured facts for programs (paths, sizes, the plan that did not fit). */
  details?: Record<string, unknown>;
}

export class CudaLlamaError extends Error {
  override name = 'CudaLlamaError';
  readonly code: ErrorCode;
  readonly remedy: string | undefined;
  readonly status: number | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: CudaLlamaErrorOptions = {}) {
    super(options.remedy ? `${message}\nRemedy: ${options.remedy}` : message, { cause: options.cause });
    this.code = code;
    this.remedy = options.remedy;
    this.status = options.status;
    this.details = options.details;
  }
}

/** The model file could not be used: missing, not a file, not a GGUF, unsupported. */
export class ModelFileError extends CudaLlamaError {
  override name = 'ModelFileError';
}

/** Loading the native binary failed; the message lists every candidate tried. */
export class NativeBindingError extends CudaLlamaError {
  override name = 'NativeBindingError';
}

/** Context creation, decoding or a full context. */
export class ContextError extends CudaLlamaError {
  override name = 'ContextError';
}

/** The GPU was asked for and cannot be had, or the model did not land on it. */
export class GpuError extends CudaLlamaError {
  override name = 'GpuError';
}

/**
 * A grammar refused before generation (our guards or llama.cpp's parser), or one that left no
 * token to choose during generation.
 */
export class GrammarError extends CudaLlamaError {
  override name = 'GrammarError';
}

/** A JSON Schema llama.cpp's grammar would not hold the output to, that cannot be satisfied, or that is not a schema. */
export class JsonSchemaError extends CudaLlamaError {
  override name = 'JsonSchemaError';
}

/** Embeddings asked of a model that cannot give them, or generation of one that only embeds, or a text too long to embed. */
export class EmbeddingError extends CudaLlamaError {
  override name = 'EmbeddingError';
}

/** An RPC endpoint (a remote ggml rpc-server) that cannot be used; the message names the endpoint. */
export class RpcError extends CudaLlamaError {
  override name = 'RpcError';
}

/** Use of a disposed model or context. */
export class DisposedError extends CudaLlamaError {
  override name = 'DisposedError';
  constructor(what: string) {
    super(ErrorCode.DISPOSED, `${what} has been disposed`, {
      remedy: `load a new model (or create a new context) instead of reusing a disposed one`,
    });
  }
}

const errorClassByCode: Partial<Record<ErrorCode, typeof CudaLlamaError>> = {
  [ErrorCode.NO_BINARY]: NativeBindingError,
  [ErrorCode.MODEL_NOT_FOUND]: ModelFileError,
  [ErrorCode.MODEL_NOT_A_FILE]: ModelFileError,
  [ErrorCode.MODEL_INVALID]: ModelFileError,
  [ErrorCode.UNSUPPORTED_ARCHITECTURE]: ModelFileError,
  [ErrorCode.MODEL_LOAD]: ModelFileError,
  [ErrorCode.CONTEXT_CREATE]: ContextError,
  [ErrorCode.CONTEXT_FULL]: ContextError,
  [ErrorCode.DECODE]: ContextError,
  [ErrorCode.CONTEXT_FAILED]: ContextError,
  [ErrorCode.BUSY]: ContextError,
  [ErrorCode.CUDA_UNAVAILABLE]: GpuError,
  [ErrorCode.GPU_PLACEMENT]: GpuError,
  [ErrorCode.GRAMMAR]: GrammarError,
  [ErrorCode.JSON_SCHEMA]: JsonSchemaError,
  [ErrorCode.EMBEDDINGS_ONLY]: EmbeddingError,
  [ErrorCode.NO_EMBEDDINGS]: EmbeddingError,
  [ErrorCode.TEXT_TOO_LONG]: EmbeddingError,
  [ErrorCode.NO_RANKING_HEAD]: EmbeddingError,
  [ErrorCode.RPC_ENDPOINT]: RpcError,
  [ErrorCode.RPC_UNREACHABLE]: RpcError,
  [ErrorCode.RPC_VERSION]: RpcError,
  [ErrorCode.RPC_BUSY]: RpcError,
  [ErrorCode.RPC_LISTEN]: RpcError,
};

/** Builds the right subclass for a code. */
export function makeError(code: ErrorCode, message: string, options: CudaLlamaErrorOptions = {}): CudaLlamaError {
  if (code === ErrorCode.DISPOSED) {
    const disposed = new DisposedError(message.replace(/ has been disposed$/, ''));
    return disposed;
  }
  const ErrorClass = errorClassByCode[code] ?? CudaLlamaError;
  return new ErrorClass(code, message, options);
}

/** Remedies for the codes the native layer reports (native errors carry code + message + status). */
const nativeRemedies: Partial<Record<ErrorCode, string>> = {
  [ErrorCode.MODEL_LOAD]:
    "check that the file is a complete GGUF for a supported architecture; enable logs with NODE_DEBUG=cuda-llama to see llama.cpp's reason",
  [ErrorCode.CONTEXT_CREATE]: 'lower contextSize or batchSize, or free memory; the layer report and Llama.devices() show what is in use',
  [ErrorCode.DECODE]:
    'lower batchSize or contextSize; status 1 means no KV-cache slot was free, negative values are errors inside llama.cpp',
  [ErrorCode.CHAT_TEMPLATE]:
    "fix the template (llama.cpp's reason is in the message), or pass options.template: Jinja text or a llama.cpp built-in name such as 'chatml'",
  [ErrorCode.CONTEXT_FAILED]:
    'dispose the model and load it again (a replica pool does this itself); NODE_DEBUG=cuda-llama shows what llama.cpp logged before the failure',
  [ErrorCode.QUANTIZE]: 'check that the input is an F32/F16 GGUF and that the output folder is writable',
  [ErrorCode.GRAMMAR]:
    'a grammar that can dead-end (allow no token) ends its request here: make every path of the grammar complete, or remove a logitBias of -Infinity on the tokens it needs',
  [ErrorCode.JSON_SCHEMA]: "fix the schema; llama.cpp's reason is in the message",
  [ErrorCode.CUDA_UNAVAILABLE]:
    'a CUDA device went away after the GPU decision: check `nvidia-smi`; Llama.devices() lists what ggml sees now',
};

/**
 * Turns an error thrown or rejected by the addon into a CudaLlamaError. The addon sets `code`
 * (one of ErrorCode) and, where llama.cpp returned one, a numeric `status`. The JS call-site
 * stack is re-attached because errors made on worker threads have none of it.
 */
export function fromNativeError(error: unknown, callSite?: Error): unknown {
  if (!(error instanceof Error) || error instanceof CudaLlamaError) return error;
  const { code, status, started } = error as Error & { code?: string; status?: number; started?: boolean };
  if (!code || !(Object.values(ErrorCode) as string[]).includes(code)) return error;
  const wrapped = makeError(code as ErrorCode, error.message, {
    remedy: nativeRemedies[code as ErrorCode],
    status,
    cause: error,
    ...(started !== undefined ? { details: { started } } : {}),
  });
  if (callSite?.stack) wrapped.stack = `${wrapped.name}: ${wrapped.message}\n${callSite.stack.split('\n').slice(1).join('\n')}`;
  return wrapped;
}
