/**
 * GGUF models with seeded random F16 weights, for tests and benchmarks that need a real model
 * shape (up to TinyLlama-1.1B) without downloading one. The output is byte-identical for the same
 * shape, seed, vocab and GENERATOR_VERSION. Llama by default; a shape may instead ask for gemma2
 * (sliding-window attention), mamba (recurrent state), or an embedding model: bert, nomic-bert, or
 * qwen3 as an embedding model or a reranker. Each family lives in its own module under synthetic/,
 * with the tensor names and shapes its load_arch_tensors in vendor/llama.cpp/src/models/ expects;
 * this file picks the family and owns the writing, the cache and the public names.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ErrorCode, ModelFileError } from '../errors.js';
import { GgmlType } from './ggml-types.js';
import { readGguf, type GgufValue } from './reader.js';
import { bert } from './synthetic/bert.js';
import {
  OPTIONAL_SHAPE_FIELDS,
  addCommonKvs,
  type ArchitectureFamily,
  type PlannedTensor,
  type SyntheticArchitecture,
  type SyntheticModelShape,
} from './synthetic/common.js';
import { gemma2 } from './synthetic/gemma2.js';
import { llama } from './synthetic/llama.js';
import { mamba } from './synthetic/mamba.js';
import { nomicBert } from './synthetic/nomic-bert.js';
import { qwen3 } from './synthetic/qwen3.js';
import { CHUNK_BYTES, HalfStream, f32Values, writeRandomF16 } from './synthetic/random.js';
import { GgufWriter, gguf } from './writer.js';

export type { PlannedTensor, SyntheticArchitecture, SyntheticModelShape, SyntheticPooling } from './synthetic/common.js';
export { floatToHalfBits } from './synthetic/random.js';

/** Bump whenever the bytes written for a given shape and seed change, so caches regenerate. */
export const GENERATOR_VERSION = 1;

export const shapes = {
  tiny: { nEmbd: 64, nFf: 128, nLayer: 4, nHead: 4, nHeadKv: 2, contextLength: 2048 },
  small: { nEmbd: 256, nFf: 768, nLayer: 6, nHead: 8, nHeadKv: 4, contextLength: 2048 },
  /** The TinyLlama-1.1B shape. */
  tinyllama1b: { nEmbd: 2048, nFf: 5632, nLayer: 22, nHead: 32, nHeadKv: 4, contextLength: 2048 },
  /** tiny as gemma2, with a window shorter than a typical test prompt. */
  tinySwa: { architecture: 'gemma2', nEmbd: 64, nFf: 128, nLayer: 4, nHead: 4, nHeadKv: 2, contextLength: 2048, slidingWindow: 8 },
  tinyMamba: { architecture: 'mamba', nEmbd: 64, nFf: 0, nLayer: 2, nHead: 0, nHeadKv: 0, contextLength: 2048 },
  /** A BGE-style BERT embedding model: CLS pooling, BERT's 512-token context, FFN 4 × nEmbd. */
  tinyBert: { architecture: 'bert', pooling: 'cls', nEmbd: 64, nFf: 256, nLayer: 2, nHead: 4, nHeadKv: 4, contextLength: 512 },
  /** nomic-embed-text v1.5's kind: mean pooling, RoPE base 1000, its 2048-token context. */
  tinyNomicBert: {
    architecture: 'nomic-bert',
    pooling: 'mean',
    nEmbd: 64,
    nFf: 256,
    nLayer: 2,
    nHead: 4,
    nHeadKv: 4,
    contextLength: 2048,
    ropeFreqBase: 1000,
  },
  /**
   * Qwen3-Embedding's kind: last-token pooling, heads wider than nEmbd / nHead (as Qwen3-0.6B's
   * 16 × 128 in 1024), grouped-query attention, Qwen3's RoPE base and norm epsilon.
   */
  tinyQwen3Embedding: {
    architecture: 'qwen3',
    pooling: 'last',
    nEmbd: 64,
    nFf: 192,
    nLayer: 2,
    nHead: 4,
    nHeadKv: 2,
    headDim: 32,
    contextLength: 2048,
    ropeFreqBase: 1000000,
    rmsEps: 1e-6,
  },
  /** tinyQwen3Embedding as Qwen3-Reranker: rank pooling through the yes/no head, with the rerank prompt. */
  tinyQwen3Reranker: {
    architecture: 'qwen3',
    pooling: 'rank',
    nEmbd: 64,
    nFf: 192,
    nLayer: 2,
    nHead: 4,
    nHeadKv: 2,
    headDim: 32,
    contextLength: 2048,
    ropeFreqBase: 1000000,
    rmsEps: 1e-6,
  },
  /** A BERT a quarter of BGE-small's compute per token: the embeddings benchmark's model on a 2-core CPU. */
  smallBert: { architecture: 'bert', pooling: 'cls', nEmbd: 256, nFf: 1024, nLayer: 6, nHead: 4, nHeadKv: 4, contextLength: 512 },
  /** The BGE-small shape (bge-small-en-v1.5: 384 wide, 12 layers, 12 heads): the embeddings benchmark's model. */
  bgeSmall: { architecture: 'bert', pooling: 'cls', nEmbd: 384, nFf: 1536, nLayer: 12, nHead: 12, nHeadKv: 12, contextLength: 512 },
  /** A reranker of Qwen3-Reranker's kind sized for a 2-core CPU run of the rerank benchmark. */
  smallQwen3Reranker: {
    architecture: 'qwen3',
    pooling: 'rank',
    nEmbd: 256,
    nFf: 768,
    nLayer: 6,
    nHead: 8,
    nHeadKv: 4,
    headDim: 32,
    contextLength: 2048,
    ropeFreqBase: 1000000,
    rmsEps: 1e-6,
  },
} as const satisfies Record<string, SyntheticModelShape>;

export type SyntheticShapeName = keyof typeof shapes;

const FAMILIES: Readonly<Record<SyntheticArchitecture, ArchitectureFamily>> = {
  llama,
  gemma2,
  mamba,
  bert,
  'nomic-bert': nomicBert,
  qwen3,
};
const ARCHITECTURES = Object.keys(FAMILIES) as SyntheticArchitecture[];

function familyOf(shape: SyntheticModelShape): ArchitectureFamily {
  const arch = shape.architecture ?? 'llama';
  if (!ARCHITECTURES.includes(arch)) throw new RangeError(`shape.architecture must be one of ${ARCHITECTURES.join(', ')}, got '${arch}'`);
  return FAMILIES[arch];
}

function checkShape(shape: SyntheticModelShape): void {
  const family = familyOf(shape);
  for (const field of OPTIONAL_SHAPE_FIELDS) {
    if (shape[field] === undefined || family.fields.includes(field)) continue;
    const readers = ARCHITECTURES.filter((a) => FAMILIES[a].fields.includes(field));
    throw new RangeError(`shape.${field} is for ${readers.join(', ')} only`);
  }
  family.check(shape);
}

/** The architecture's tensor set, dims ne0-first as GGUF stores them. */
export function syntheticTensorPlan(shape: SyntheticModelShape, nVocab: number): PlannedTensor[] {
  return familyOf(shape).tensorPlan(shape, nVocab);
}

/**
 * The llama.cpp vocabulary file (in vendor/llama.cpp/models/) that a shape is meant to be made
 * with: its family's real tokenizer kind (WordPiece for the BERT family, Qwen's BPE for qwen3,
 * SentencePiece for the rest).
 */
export function syntheticVocabFile(shape: SyntheticShapeName | SyntheticModelShape): string {
  return familyOf(typeof shape === 'string' ? shapes[shape] : shape).defaultVocab;
}

export interface WriteSyntheticModelOptions {
  path: string;
  shape: SyntheticModelShape;
  /** A GGUF holding a tokenizer (e.g. vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf). */
  vocabPath: string;
  seed?: number;
  name?: string;
  /** A llama.cpp built-in template name or a Jinja template; defaults to 'chatml'. */
  chatTemplate?: string;
  /**
   * Texts added to the vocabulary as single tokens (user-defined, as a model's added tokens such
   * as `<tool_call>` or `<think>` are), unless it has them already.
   */
  addedTokens?: readonly string[];
}

export async function writeSyntheticModel(opts: WriteSyntheticModelOptions): Promise<void> {
  const { shape } = opts;
  checkShape(shape);
  const seed = (opts.seed ?? 1) >>> 0;
  const vocab = await readGguf(opts.vocabPath);
  const tokens = vocab.metadata.get('tokenizer.ggml.tokens');
  if (tokens?.type !== 'array' || tokens.itemType !== 'string' || tokens.value.length === 0) {
    throw new ModelFileError(ErrorCode.MODEL_INVALID, `${opts.vocabPath}: no tokenizer.ggml.tokens string array`, {
      remedy: 'pass a vocab GGUF such as vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf',
      details: { path: opts.vocabPath, reason: 'no-vocab' },
    });
  }
  const known = new Set(tokens.value);
  const added = [...new Set(opts.addedTokens ?? [])].filter((t) => t !== '' && !known.has(t));
  const nVocab = tokens.value.length + added.length;

  const family = familyOf(shape);
  const w = new GgufWriter();
  addCommonKvs(w, shape.architecture ?? 'llama', shape, nVocab, opts.name);
  family.addKvs(w, shape);
  // The family's tokenizer keys replace the vocabulary's in place; the rest follow the template.
  const tokenizerKvs = family.tokenizerKvs?.(shape, vocab.metadata) ?? new Map<string, GgufValue>();
  for (const [key, value] of vocab.metadata) {
    if (!key.startsWith('tokenizer.') || key === 'tokenizer.chat_template') continue;
    w.addKv(key, withAddedTokens(key, tokenizerKvs.get(key) ?? value, added));
    tokenizerKvs.delete(key);
  }
  w.addKv('tokenizer.chat_template', opts.chatTemplate ?? 'chatml');
  for (const [key, value] of tokenizerKvs) w.addKv(key, value);

  for (const t of syntheticTensorPlan(shape, nVocab)) w.addTensor(t.name, t.dims, t.type);

  const buffers = [new Uint32Array(CHUNK_BYTES / 4), new Uint32Array(CHUNK_BYTES / 4)];
  await w.write(opts.path, async (index, tensor, out) => {
    if (tensor.type === GgmlType.F32) {
      await out.write(new Uint8Array(f32Values(family, tensor, seed).buffer));
      return;
    }
    await writeRandomF16(out, tensor.byteSize, new HalfStream(seed, index), buffers);
  });
}

/** LLAMA_TOKEN_TYPE_USER_DEFINED: written as its text, matched whole when special tokens are parsed. */
const TOKEN_TYPE_USER_DEFINED = 4;

/** A tokenizer array with the added tokens appended (tokens, their type, a zero score); other keys as they are. */
function withAddedTokens(key: string, value: GgufValue, added: string[]): GgufValue {
  if (added.length === 0 || value.type !== 'array') return value;
  if (key === 'tokenizer.ggml.tokens' && value.itemType === 'string') return gguf.array('string', [...value.value, ...added]);
  if (key === 'tokenizer.ggml.token_type' && value.itemType === 'i32')
    return gguf.array('i32', [...Array.from(value.value), ...added.map(() => TOKEN_TYPE_USER_DEFINED)]);
  if (key === 'tokenizer.ggml.scores' && value.itemType === 'f32')
    return gguf.array('f32', [...Array.from(value.value), ...added.map(() => 0)]);
  return value;
}

export interface EnsureSyntheticModelOptions {
  cacheDir: string;
  shape: SyntheticShapeName | SyntheticModelShape;
  vocabPath: string;
  seed?: number;
  chatTemplate?: string;
  /** Texts added to the vocabulary as single tokens (WriteSyntheticModelOptions.addedTokens). */
  addedTokens?: readonly string[];
  /** File-name prefix for a custom shape (default: the shape's name, or 'custom'). */
  label?: string;
}

const inFlight = new Map<string, Promise<string>>();

/**
 * Returns the path of a cached synthetic model, generating it only when missing. The file name
 * carries a hash of everything that shapes the bytes (shape, vocab, template, GENERATOR_VERSION).
 */
export async function ensureSyntheticModel(opts: EnsureSyntheticModelOptions): Promise<string> {
  const shape: SyntheticModelShape = typeof opts.shape === 'string' ? shapes[opts.shape] : opts.shape;
  if (!shape) throw new RangeError(`unknown synthetic shape '${String(opts.shape)}'; known: ${Object.keys(shapes).join(', ')}`);
  checkShape(shape);
  const seed = (opts.seed ?? 1) >>> 0;
  const vocabSize = (await stat(opts.vocabPath)).size;
  const key = createHash('sha256')
    .update(
      JSON.stringify({
        generator: GENERATOR_VERSION,
        shape: { ...hashedShape(shape), ropeFreqBase: shape.ropeFreqBase ?? 10000, rmsEps: shape.rmsEps ?? 1e-5 },
        vocab: [basename(opts.vocabPath), vocabSize],
        chatTemplate: opts.chatTemplate ?? 'chatml',
        ...(opts.addedTokens && opts.addedTokens.length > 0 ? { addedTokens: opts.addedTokens } : {}),
      }),
    )
    .digest('hex')
    .slice(0, 10);
  const label = opts.label ?? (typeof opts.shape === 'string' ? opts.shape : 'custom');
  if (!/^[\w.-]+$/.test(label)) throw new RangeError(`label must be a plain file-name part, got '${label}'`);
  const name = `${label}-${key}`;
  const path = join(opts.cacheDir, `${name}-s${seed}-f16.gguf`);

  const running = inFlight.get(path);
  if (running) return running;
  const job = (async () => {
    if (await exists(path)) return path;
    await mkdir(opts.cacheDir, { recursive: true });
    await removeStalePartials(opts.cacheDir, basename(path));
    const writeOpts: WriteSyntheticModelOptions = { path, shape, vocabPath: opts.vocabPath, seed, name: `synthetic-${name}` };
    if (opts.chatTemplate !== undefined) writeOpts.chatTemplate = opts.chatTemplate;
    if (opts.addedTokens !== undefined) writeOpts.addedTokens = opts.addedTokens;
    await writeSyntheticModel(writeOpts);
    return path;
  })();
  inFlight.set(path, job);
  try {
    return await job;
  } finally {
    inFlight.delete(path);
  }
}

/** A llama shape hashes without its architecture, as every llama shape did before there was a choice. */
function hashedShape(shape: SyntheticModelShape): SyntheticModelShape {
  if (shape.architecture !== 'llama') return shape;
  const { architecture: _llama, ...rest } = shape;
  return rest;
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Deletes temporaries left by killed runs (the writer names them `<file>.<pid>-<rand>.partial`). */
async function removeStalePartials(dir: string, file: string): Promise<void> {
  for (const entry of await readdir(dir)) {
    const m = entry.startsWith(`${file}.`) ? /\.(\d+)-[0-9a-f]+\.partial$/.exec(entry) : null;
    if (!m || isAlive(Number(m[1]))) continue;
    await unlink(join(dir, entry)).catch(() => {});
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
