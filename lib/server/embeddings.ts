/**
 * POST /v1/embeddings (OpenAI's shape) and POST /v1/rerank, /rerank (the shape llama-server, Jina
 * and Cohere clients use), on the model's embeddings context (model.embed, model.rerank). Requests
 * run one at a time in arrival order, since the model has one embeddings context and packs each
 * request's texts into as few decodes as it holds; up to maxQueue more wait, and a request that
 * is aborted (client gone, deadline, shutdown) while it waits never reaches the model.
 */
import type { FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { CudaLlamaError, ErrorCode } from '../errors.js';
import type { LlamaModel } from '../model.js';
import { abortAnswer, watchRequest, type GenerationHost } from './completions.js';
import { HttpError } from './errors.js';

const tokenIds = { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } } as const;

export const embeddingsSchema = {
  type: 'object',
  required: ['model', 'input'],
  additionalProperties: false,
  properties: {
    model: { type: 'string' },
    // A string, strings, one text's token ids, or texts' token ids (and, as llama-server, strings and token ids mixed).
    input: {
      anyOf: [
        { type: 'string', minLength: 1 },
        tokenIds,
        { type: 'array', minItems: 1, items: { anyOf: [{ type: 'string', minLength: 1 }, tokenIds] } },
      ],
    },
    encoding_format: { type: ['string', 'null'], enum: ['float', 'base64', null] },
    dimensions: { type: ['integer', 'null'], minimum: 1 },
    user: { type: ['string', 'null'] },
  },
} as const;

/**
 * Ajv's errors for a value that matches none of `input`'s shapes list every branch it tried; one
 * sentence says what `input` may be instead. Other fields' errors read as Fastify writes them.
 */
export function embeddingsSchemaErrors(errors: FastifySchemaValidationError[], dataVar: string): Error {
  if (errors.some((e) => e.instancePath === '/input' || e.instancePath.startsWith('/input/'))) {
    return new Error(
      'input must be a non-empty string, an array of non-empty strings, an array of token ids (one text), or an array of token-id arrays',
    );
  }
  return new Error(errors.map((e) => `${dataVar}${e.instancePath} ${e.message ?? ''}`).join(', '));
}

export const rerankSchema = {
  type: 'object',
  required: ['query', 'documents'],
  additionalProperties: false,
  properties: {
    model: { type: ['string', 'null'] },
    query: { type: 'string', minLength: 1 },
    documents: { type: 'array', minItems: 1, items: { type: 'string' } },
    top_n: { type: ['integer', 'null'], minimum: 1 },
    return_documents: { type: ['boolean', 'null'] },
  },
} as const;

export interface EmbeddingsBody {
  model: string;
  input: string | number[] | (string | number[])[];
  encoding_format?: 'float' | 'base64' | null;
  dimensions?: number | null;
  user?: string | null;
}

export interface RerankBody {
  model?: string | null;
  query: string;
  documents: string[];
  top_n?: number | null;
  return_documents?: boolean | null;
}

/** Embedding requests one after another, in arrival order; a request aborted while it waits is dropped. */
export class EmbeddingLine {
  /** Requests running or waiting. */
  inFlight = 0;
  #tail: Promise<void> = Promise.resolve();

  /**
   * Runs `work` once the requests before it are done. An abort answers at once; work already
   * running finishes first (an embeddings decode has no abort), and the next request waits for it.
   */
  async run<T>(signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise((resolve) => (release = resolve));
    this.inFlight++;
    try {
      try {
        await untilAborted(previous, signal);
      } catch (error) {
        void previous.then(release);
        throw error;
      }
      // A throw from work() rejects here instead of leaving the line held.
      const running = Promise.resolve().then(work);
      void running.then(release, release);
      return await untilAborted(running, signal);
    } finally {
      this.inFlight--;
    }
  }
}

/** `promise`, or a rejection with the signal's reason if it aborts first. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error as Error);
      },
    );
  });
}

function checkModelId(host: GenerationHost, given: string | null | undefined): void {
  if (given != null && given !== host.modelId) {
    throw new HttpError(404, `The model '${given}' does not exist; this server serves '${host.modelId}' (GET /v1/models)`, {
      param: 'model',
      code: 'model_not_found',
    });
  }
}

function admit(host: GenerationHost, line: EmbeddingLine): void {
  if (line.inFlight >= 1 + host.maxQueue) {
    throw new HttpError(503, `the embeddings queue is full: 1 request running and ${host.maxQueue} waiting`, {
      code: 'queue_full',
      headers: { 'retry-after': '1' },
    });
  }
}

/** The request's texts as model.embed() takes them: one text per string or token-id array. */
function inputTexts(input: EmbeddingsBody['input'], vocabSize: number): (string | number[])[] {
  // OpenAI's shapes: an array of numbers is one text's token ids.
  const oneText = typeof input === 'string' || input.every((x) => typeof x === 'number');
  const texts = (oneText ? [input] : input) as (string | number[])[];
  texts.forEach((text, i) => {
    if (typeof text === 'string') return;
    const bad = text.findIndex((id) => id >= vocabSize);
    if (bad < 0) return;
    const at = oneText ? `input[${bad}]` : `input[${i}][${bad}]`;
    throw new HttpError(400, `${at} is ${text[bad]}, not a token id of this model (0 to ${vocabSize - 1})`, {
      param: at,
      code: 'invalid_value',
    });
  });
  return texts;
}

/** ERR_TEXT_TOO_LONG and the library's argument checks, named by the request's field. */
function fieldError(error: unknown, field: 'input' | 'documents', libraryName: string): unknown {
  if (error instanceof CudaLlamaError && error.code === ErrorCode.TEXT_TOO_LONG) {
    const { index, tokens, maxTokens } = error.details as { index: number; tokens: number; maxTokens: number };
    const what = field === 'input' ? `input[${index}]` : `documents[${index}] with the query`;
    return new HttpError(
      400,
      `${what} has ${tokens} tokens; this model embeds at most ${maxTokens} at once: shorten or split it, or restart the server with a larger --context-size (and --batch-size, if it was given)`,
      { param: field, code: ErrorCode.TEXT_TOO_LONG },
    );
  }
  const code = (error as { code?: unknown } | null)?.code;
  if ((error instanceof TypeError || error instanceof RangeError) && (code === 'ERR_INVALID_ARG_TYPE' || code === 'ERR_OUT_OF_RANGE')) {
    const message = error.message.startsWith(libraryName) ? field + error.message.slice(libraryName.length) : error.message;
    return new HttpError(400, message, { param: /^[\w[\]]+/.exec(message)?.[0] ?? field, code: 'invalid_value' });
  }
  return error;
}

/** Runs one request's work in the line, under the request's deadline and abort. */
async function runInLine<T>(host: GenerationHost, line: EmbeddingLine, reply: FastifyReply, work: () => Promise<T>): Promise<T> {
  admit(host, line);
  const watch = watchRequest(host, reply);
  try {
    return await line.run(watch.signal, work).catch((error: unknown) => {
      throw abortAnswer(error);
    });
  } finally {
    watch.release();
  }
}

/** Refuses a model whose embeddings OpenAI's API cannot give: it gives one pooled vector per text. */
function checkEmbeddings(model: LlamaModel): void {
  const { pooling } = model.info;
  if (pooling === null) {
    throw new HttpError(400, "this server's model was loaded without embeddings: restart the server with --embeddings", {
      code: ErrorCode.NO_EMBEDDINGS,
    });
  }
  if (pooling === 'rank') {
    throw new HttpError(
      400,
      "this server's model is a reranker (pooling 'rank'): send its documents to POST /v1/rerank, or restart the server with --pooling mean, cls or last to embed",
      { code: ErrorCode.NO_EMBEDDINGS },
    );
  }
  if (pooling === 'none') {
    throw new HttpError(
      400,
      "this server's model was loaded with pooling 'none' (a vector per token), which the OpenAI embeddings API cannot carry: restart the server with --pooling mean, cls or last",
      { code: 'unsupported_pooling' },
    );
  }
}

/** Little-endian float32 bytes in base64, as OpenAI sends them (every platform we build for is little-endian). */
function base64Of(vector: Float32Array): string {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64');
}

export async function handleEmbeddings(host: GenerationHost, line: EmbeddingLine, request: FastifyRequest, reply: FastifyReply) {
  const body = request.body as EmbeddingsBody;
  const model = host.model();
  checkModelId(host, body.model);
  checkEmbeddings(model);
  const size = model.info.embeddingOutputSize;
  if (body.dimensions != null && body.dimensions !== size) {
    throw new HttpError(
      400,
      `dimensions ${body.dimensions}: this model does not declare Matryoshka dimensions, so its embeddings have only their own size, ${size}`,
      { param: 'dimensions', code: 'unsupported_value' },
    );
  }
  const texts = inputTexts(body.input, model.info.vocabSize);
  const result = await runInLine(host, line, reply, () =>
    model.embed(texts).catch((error: unknown) => {
      throw fieldError(error, 'input', 'texts');
    }),
  );
  const tokens = result.tokenCounts.reduce((a, b) => a + b, 0);
  host.metrics.observeEmbedding('embeddings', result.tokenCounts);
  host.record(request).promptTokens = tokens;
  const base64 = body.encoding_format === 'base64';
  return {
    object: 'list',
    data: result.embeddings.map((vector, index) => ({
      object: 'embedding',
      index,
      embedding: base64 ? base64Of(vector) : Array.from(vector),
    })),
    model: host.modelId,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

export async function handleRerank(host: GenerationHost, line: EmbeddingLine, request: FastifyRequest, reply: FastifyReply) {
  const body = request.body as RerankBody;
  const model = host.model();
  checkModelId(host, body.model);
  const { rankingHead, pooling } = model.info;
  if (!rankingHead) {
    throw new HttpError(
      400,
      "this server's model has no ranking head, so it cannot score documents: serve a reranker (a GGUF with a classifier head, such as bge-reranker or Qwen3-Reranker)",
      { code: ErrorCode.NO_RANKING_HEAD },
    );
  }
  if (pooling !== 'rank') {
    throw new HttpError(
      400,
      `this server's model was loaded with --pooling ${pooling ?? 'none'}, so its ranking head is not applied: restart the server without --pooling (or with --pooling rank)`,
      { code: ErrorCode.NO_RANKING_HEAD },
    );
  }
  const topN = body.top_n ?? undefined;
  const result = await runInLine(host, line, reply, () =>
    model.rerank(body.query, body.documents, topN === undefined ? {} : { topN }).catch((error: unknown) => {
      throw fieldError(error, 'documents', 'documents');
    }),
  );
  const tokens = result.tokenCounts.reduce((a, b) => a + b, 0);
  host.metrics.observeEmbedding('rerank', result.tokenCounts);
  host.record(request).promptTokens = tokens;
  return {
    model: host.modelId,
    object: 'list',
    usage: { prompt_tokens: tokens, total_tokens: tokens },
    results: result.ranking.map(({ index, score }) => ({
      index,
      relevance_score: score,
      ...(body.return_documents === true ? { document: { text: body.documents[index] } } : {}),
    })),
  };
}
