/**
 * Embeddings and reranking through an embeddings context (LoadOptions.embeddings). Here: the
 * input checks, tokenization, each text's length against the batch, normalization, the rerank
 * prompt and the ranking. Native (native/embedding.h): packing the texts into as few
 * llama_decode calls as the context allows, and reading the pooled vectors back.
 */
import { EmbeddingError, ErrorCode } from './errors.js';
import type { NativeEmbedResult } from './binding/native.js';
import { expectObject, optionalBoolean, optionalInteger, rangeError, rejectUnknownKeys, typeError } from './validate.js';

/**
 * How a text's token vectors become one vector (llama.h's llama_pooling_type): their mean, the
 * first token's (BERT's [CLS]), the last token's (decoder embedding models), a ranking head's
 * scores, or none (one vector per token).
 */
export type Pooling = 'none' | 'mean' | 'cls' | 'last' | 'rank';

/** llama.h's enum values; the one table between our names and llama.cpp's numbers. */
export const POOLING_IDS: Readonly<Record<Pooling, number>> = { none: 0, mean: 1, cls: 2, last: 3, rank: 4 };
export const POOLINGS = Object.keys(POOLING_IDS) as Pooling[];

export function poolingName(id: number): Pooling {
  const name = POOLINGS.find((p) => POOLING_IDS[p] === id);
  if (name === undefined) throw new RangeError(`unknown llama.cpp pooling type ${id}`);
  return name;
}

export interface EmbedOptions {
  /** Scale each pooled vector to length 1 (Euclidean), as llama.cpp's tools and OpenAI do. Default true. Not with pooling 'none' or 'rank'. */
  normalize?: boolean;
  /**
   * Cut a text longer than the model can embed at once (contextInfo.batchSize tokens) to that
   * length, and list it in `truncated`. Default false: such a text is ERR_TEXT_TOO_LONG.
   */
  truncate?: boolean;
}

export interface EmbedResult {
  /** How the vectors were pooled (the load's `pooling`, else the model's own). */
  pooling: Pooling;
  /** Floats per vector. */
  dimensions: number;
  /** One per text, in order. Empty with pooling 'none' (see tokenEmbeddings). */
  embeddings: Float32Array[];
  /** Pooling 'none' only: each text's vectors, one per token. */
  tokenEmbeddings: Float32Array[][] | null;
  /** Tokens of each text as embedded (after truncation). */
  tokenCounts: number[];
  /** Indices of the texts cut to fit (truncate: true); empty otherwise. */
  truncated: number[];
  /** llama_decode calls it took: texts are packed together up to the batch size. */
  decodes: number;
}

export interface RerankOptions {
  /** Return only the best N in `ranking`. Default: all. */
  topN?: number;
  /** As EmbedOptions.truncate, for each query–document prompt. */
  truncate?: boolean;
}

export interface RerankResult {
  /** The ranking head's score of each document, in the documents' order (higher: more relevant). */
  scores: number[];
  /** Documents by score, best first (topN of them): their index and score. */
  ranking: { index: number; score: number }[];
  /** Tokens of each query–document prompt as scored. */
  tokenCounts: number[];
  /** Indices of the documents whose prompt was cut to fit (truncate: true). */
  truncated: number[];
  decodes: number;
}

/** What the model gives embed() and rerank(). */
export interface EmbeddingHost {
  pooling: Pooling;
  /** The most tokens one text may have: the embeddings context's batch (its ubatch is the same). */
  maxTokens: number;
  vocabSize: number;
  rankingHead: boolean;
  /** The file's rerank prompt, with {query} and {document}; null when it has none. */
  rerankTemplate: string | null;
  /** What llama.cpp's tools put between a query and a document without a rerank prompt. */
  pairSeparator: string;
  tokenize(text: string): number[];
  /** One call at a time (the model queues them). */
  embed(tokens: Int32Array, lengths: Uint32Array): Promise<NativeEmbedResult>;
}

type TextInput = string | ArrayLike<number>;

const embedKeys = ['normalize', 'truncate'];
const rerankKeys = ['topN', 'truncate'];

/** Texts as embed() takes them: a string, or an array of strings or token-id arrays. */
export function validateTexts(name: string, input: unknown): TextInput[] {
  const texts = typeof input === 'string' ? [input] : input;
  if (!Array.isArray(texts)) throw typeError(name, 'a string or an array of strings (or of token-id arrays)', input);
  if (texts.length === 0) throw rangeError(name, 'at least one text', 'an empty array');
  texts.forEach((text, i) => {
    if (typeof text === 'string') {
      if (text.length === 0) throw rangeError(`${name}[${i}]`, 'a non-empty string', 'an empty string');
      return;
    }
    if (!Array.isArray(text) && !ArrayBuffer.isView(text)) throw typeError(`${name}[${i}]`, 'a string or an array of token ids', text);
  });
  return texts as TextInput[];
}

function tokenIdsOf(name: string, text: ArrayLike<number>, vocabSize: number): number[] {
  const ids = Array.from(text);
  if (ids.length === 0) throw rangeError(name, 'at least one token id', 'an empty array');
  ids.forEach((id, j) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw rangeError(`${name}[${j}]`, `a token id from 0 to ${vocabSize - 1}`, String(id));
    }
  });
  return ids;
}

interface Tokenized {
  tokens: number[][];
  truncated: number[];
}

/** Tokenizes, and holds each text to maxTokens: cut (truncate) or ERR_TEXT_TOO_LONG naming it. */
function tokenizeAll(host: EmbeddingHost, name: string, texts: TextInput[], truncate: boolean): Tokenized {
  const truncated: number[] = [];
  const tokens = texts.map((text, i) => {
    const ids = typeof text === 'string' ? host.tokenize(text) : tokenIdsOf(`${name}[${i}]`, text, host.vocabSize);
    if (ids.length === 0) throw rangeError(`${name}[${i}]`, 'a text that has at least one token', 'none');
    if (ids.length <= host.maxTokens) return ids;
    if (truncate) {
      truncated.push(i);
      return ids.slice(0, host.maxTokens);
    }
    throw new EmbeddingError(
      ErrorCode.TEXT_TOO_LONG,
      `${name}[${i}] has ${ids.length} tokens; this model embeds at most ${host.maxTokens} at once`,
      {
        remedy: `shorten or split it, load with a larger contextSize (the embedding batch is the context), or pass truncate: true to cut it to ${host.maxTokens} tokens`,
        details: { index: i, tokens: ids.length, maxTokens: host.maxTokens },
      },
    );
  });
  return { tokens, truncated };
}

async function runPacked(host: EmbeddingHost, tokens: number[][]): Promise<NativeEmbedResult> {
  const lengths = Uint32Array.from(tokens, (t) => t.length);
  const flat = new Int32Array(lengths.reduce((a, b) => a + b, 0));
  let at = 0;
  for (const t of tokens) {
    flat.set(t, at);
    at += t.length;
  }
  return host.embed(flat, lengths);
}

/** Euclidean normalization as llama.cpp's common_embd_normalize(…, 2): the sum in double precision. */
export function normalizeInPlace(vector: Float32Array): void {
  let sum = 0;
  for (let i = 0; i < vector.length; i++) sum += vector[i]! * vector[i]!;
  const scale = sum > 0 ? 1 / Math.sqrt(sum) : 0;
  for (let i = 0; i < vector.length; i++) vector[i] = vector[i]! * scale;
}

export async function embedTexts(host: EmbeddingHost, input: unknown, optionsInput: unknown = {}): Promise<EmbedResult> {
  const texts = validateTexts('texts', input);
  const options = expectObject('options', optionsInput);
  rejectUnknownKeys('options', options, embedKeys);
  const normalize = optionalBoolean('options.normalize', options.normalize) ?? true;
  const truncate = optionalBoolean('options.truncate', options.truncate) ?? false;
  if (host.pooling === 'rank') {
    throw new EmbeddingError(
      ErrorCode.NO_EMBEDDINGS,
      'this model was loaded with rank pooling: it scores query–document pairs, use rerank()',
      {
        remedy: "call model.rerank(query, documents), or load with pooling: 'mean' (or another) to embed",
      },
    );
  }
  const { tokens, truncated } = tokenizeAll(host, 'texts', texts, truncate);
  const native = await runPacked(host, tokens);
  const { width } = native;
  // Views into the one array the addon filled for this call: each text's rows are its own, so
  // normalizing them in place touches nothing else, and no vector is copied again.
  const tokenCounts = tokens.map((t) => t.length);
  if (host.pooling === 'none') {
    let row = 0;
    const tokenEmbeddings = tokenCounts.map((count) =>
      Array.from({ length: count }, () => {
        const vector = native.vectors.subarray(row * width, (row + 1) * width);
        row++;
        if (normalize) normalizeInPlace(vector);
        return vector;
      }),
    );
    return { pooling: 'none', dimensions: width, embeddings: [], tokenEmbeddings, tokenCounts, truncated, decodes: native.decodes };
  }
  const embeddings = texts.map((_, i) => {
    const vector = native.vectors.subarray(i * width, (i + 1) * width);
    if (normalize) normalizeInPlace(vector);
    return vector;
  });
  return { pooling: host.pooling, dimensions: width, embeddings, tokenEmbeddings: null, tokenCounts, truncated, decodes: native.decodes };
}

/**
 * The prompt llama.cpp's tools score a pair with: the file's rerank template with {query} and
 * {document} replaced, or the query, the end-of-sequence and separator texts the vocabulary adds,
 * and the document (llama-embedding's and llama-server's format).
 */
export function rerankPrompt(host: Pick<EmbeddingHost, 'rerankTemplate' | 'pairSeparator'>, query: string, document: string): string {
  if (host.rerankTemplate !== null) {
    return host.rerankTemplate.replaceAll('{query}', () => query).replaceAll('{document}', () => document);
  }
  return query + host.pairSeparator + document;
}

export async function rerankDocuments(
  host: EmbeddingHost,
  query: unknown,
  documents: unknown,
  optionsInput: unknown = {},
): Promise<RerankResult> {
  if (typeof query !== 'string') throw typeError('query', 'a string', query);
  if (query.length === 0) throw rangeError('query', 'a non-empty string', 'an empty string');
  if (!Array.isArray(documents)) throw typeError('documents', 'an array of strings', documents);
  if (documents.length === 0) throw rangeError('documents', 'at least one document', 'an empty array');
  documents.forEach((d, i) => {
    if (typeof d !== 'string') throw typeError(`documents[${i}]`, 'a string', d);
  });
  const options = expectObject('options', optionsInput);
  rejectUnknownKeys('options', options, rerankKeys);
  const topN = optionalInteger('options.topN', options.topN, 1, Number.MAX_SAFE_INTEGER) ?? documents.length;
  const truncate = optionalBoolean('options.truncate', options.truncate) ?? false;
  if (!host.rankingHead) {
    throw new EmbeddingError(ErrorCode.NO_RANKING_HEAD, 'this model has no ranking head: it cannot score documents', {
      remedy:
        'load a reranker (a GGUF with a classifier head, such as bge-reranker or Qwen3-Reranker), or compare embeddings from embed() instead',
    });
  }
  if (host.pooling !== 'rank') {
    throw new EmbeddingError(
      ErrorCode.NO_RANKING_HEAD,
      `this model was loaded with pooling '${host.pooling}', so its ranking head is not applied`,
      {
        remedy: "load it with pooling: 'rank' (or without pooling, which takes the file's)",
      },
    );
  }
  const prompts = (documents as string[]).map((document) => rerankPrompt(host, query, document));
  const { tokens, truncated } = tokenizeAll(host, 'documents', prompts, truncate);
  const native = await runPacked(host, tokens);
  const scores = prompts.map((_, i) => native.vectors[i * native.width]!);
  const ranking = scores
    .map((score, index) => ({ index, score }))
    .sort((a, b) => b.score - a.score || a.index - b.index)
    .slice(0, topN);
  return { scores, ranking, tokenCounts: tokens.map((t) => t.length), truncated, decodes: native.decodes };
}
