/**
 * What the synthetic generator's architecture modules share: the shape type, the tensor plan
 * entries, the interface each family implements, the general.* keys and the shape checks.
 */
import { POOLING_IDS, type Pooling } from '../../embedding.js';
import { GgmlType } from '../ggml-types.js';
import type { GgufValue } from '../reader.js';
import { gguf, type GgufWriter, type GgufWriterTensor } from '../writer.js';

/**
 * What general.architecture says. gemma2 is llama's attention and gated FFN plus post-norms, tied
 * output and sliding-window attention on every other layer (layers 0, 2, ...: its default pattern);
 * mamba is Mamba-1, no attention at all, with state that llama.cpp cannot roll back. bert and
 * nomic-bert are bidirectional encoders for embeddings; qwen3 is a decoder that, given a pooling,
 * is an embedding model (Qwen3-Embedding) or a reranker (Qwen3-Reranker).
 */
export type SyntheticArchitecture = 'llama' | 'gemma2' | 'mamba' | 'bert' | 'nomic-bert' | 'qwen3';

/**
 * How an embedding model pools its token states into one vector per sequence: `<arch>.pooling_type`,
 * llama.cpp's LLAMA_POOLING_TYPE_*. 'rank' scores a query and document pair through a ranking head.
 */
export type SyntheticPooling = Exclude<Pooling, 'none'>;

/** The values llama.cpp's enum llama_pooling_type gives each pooling (lib/embedding.ts holds the table). */
export const POOLING_TYPE_IDS: Readonly<Record<SyntheticPooling, number>> = POOLING_IDS;

export interface SyntheticModelShape {
  /** Default 'llama'. */
  architecture?: SyntheticArchitecture;
  nEmbd: number;
  /** 0 for mamba, which has no FFN (as converted Mamba models say). */
  nFf: number;
  nLayer: number;
  /** 0 for mamba, which has no attention. */
  nHead: number;
  /** 0 for mamba; equal to nHead for bert and nomic-bert, which have no grouped-query attention. */
  nHeadKv: number;
  contextLength: number;
  ropeFreqBase?: number;
  rmsEps?: number;
  /** gemma2 only, required there: the sliding-window layers' window, in tokens. */
  slidingWindow?: number;
  /** mamba only: ssm.state_size, default 16 (Mamba's own). The inner size is 2 × nEmbd, the only expansion llama.cpp supports. */
  ssmStateSize?: number;
  /**
   * bert, nomic-bert and qwen3 only: how the model pools (`<arch>.pooling_type`). Without it the
   * file has no pooling key, as a converted model without a sentence-transformers pooling module
   * (llama.cpp then pools none unless told), and qwen3 is a plain language model with its own
   * output head.
   */
  pooling?: SyntheticPooling;
  /** qwen3 only: the attention head size (key_length and value_length), default nEmbd / nHead. Qwen3 decouples them. */
  headDim?: number;
  /** bert and nomic-bert only: their LayerNorm epsilon, default 1e-12 (BERT's own). */
  layerNormEps?: number;
}

/** The shape fields that only some families read; the others refuse them. */
export type OptionalShapeField = 'slidingWindow' | 'ssmStateSize' | 'pooling' | 'headDim' | 'layerNormEps';
export const OPTIONAL_SHAPE_FIELDS: readonly OptionalShapeField[] = ['slidingWindow', 'ssmStateSize', 'pooling', 'headDim', 'layerNormEps'];

export interface PlannedTensor {
  name: string;
  dims: number[];
  type: number;
}

export const f16 = (name: string, dims: number[]): PlannedTensor => ({ name, dims, type: GgmlType.F16 });
export const f32 = (name: string, dims: number[]): PlannedTensor => ({ name, dims, type: GgmlType.F32 });

/** One architecture family's part of the generator; lib/gguf/synthetic-model.ts picks it by shape.architecture. */
export interface ArchitectureFamily {
  /** llama.cpp's vocabulary file (in its models/ folder) that a shape of this family is made with unless told otherwise. */
  readonly defaultVocab: string;
  /** The optional shape fields it reads; a shape that sets any other is refused. */
  readonly fields: readonly OptionalShapeField[];
  /** Throws a RangeError naming the field for a shape llama.cpp would refuse or that the family cannot write. */
  check(shape: SyntheticModelShape): void;
  /** The tensor set its load_arch_tensors in vendor/llama.cpp/src/models/ expects, dims ne0-first as GGUF stores them. */
  tensorPlan(shape: SyntheticModelShape, nVocab: number): PlannedTensor[];
  /** Its `<arch>.*` keys, written after the ones every family has (addCommonKvs). */
  addKvs(w: GgufWriter, shape: SyntheticModelShape): void;
  /**
   * Tokenizer keys that its converter writes over the vocabulary file's (those replace the file's
   * value in place) or beside them (those follow tokenizer.chat_template). Never
   * tokenizer.chat_template itself, which the caller chooses.
   */
  tokenizerKvs?(shape: SyntheticModelShape, vocab: ReadonlyMap<string, GgufValue>): Map<string, GgufValue>;
  /**
   * Sets an F32 tensor's values where the family's initialisation is not the default (random.ts
   * f32Values); returns false to leave the default. `base` is the name without its `blk.N.` prefix.
   */
  fillF32?(base: string, tensor: GgufWriterTensor, values: Float32Array, uniform: () => number): boolean;
}

/** LLAMA_FTYPE_MOSTLY_F16. */
const FILE_TYPE_F16 = 1;

/**
 * The general.* keys and the `<arch>.*` keys every family writes, in the order the generator has
 * always written them (the bytes of existing shapes depend on it).
 */
export function addCommonKvs(
  w: GgufWriter,
  arch: SyntheticArchitecture,
  shape: SyntheticModelShape,
  nVocab: number,
  name: string | undefined,
): void {
  w.addKv('general.architecture', arch)
    .addKv('general.name', name ?? `synthetic-${arch}-${shape.nLayer}l-${shape.nEmbd}d`)
    .addKv('general.file_type', gguf.u32(FILE_TYPE_F16))
    .addKv('general.alignment', gguf.u32(32))
    .addKv(`${arch}.vocab_size`, gguf.u32(nVocab))
    .addKv(`${arch}.context_length`, gguf.u32(shape.contextLength))
    .addKv(`${arch}.embedding_length`, gguf.u32(shape.nEmbd))
    .addKv(`${arch}.block_count`, gguf.u32(shape.nLayer))
    .addKv(`${arch}.feed_forward_length`, gguf.u32(shape.nFf))
    .addKv(`${arch}.attention.head_count`, gguf.u32(shape.nHead));
}

type PositiveField = 'nEmbd' | 'nFf' | 'nLayer' | 'nHead' | 'nHeadKv' | 'contextLength' | 'slidingWindow' | 'ssmStateSize' | 'headDim';

export function checkPositive(shape: SyntheticModelShape, ...fields: PositiveField[]): void {
  for (const k of fields) {
    if (!Number.isSafeInteger(shape[k]) || shape[k]! <= 0) throw new RangeError(`shape.${k} must be a positive integer, got ${shape[k]}`);
  }
}

/** Heads that divide the embedding and the KV heads, each of an even size for RoPE. */
export function checkHeads(shape: SyntheticModelShape): void {
  const { nEmbd, nHead, nHeadKv } = shape;
  if (nEmbd % nHead !== 0) throw new RangeError(`shape.nEmbd (${nEmbd}) must be a multiple of nHead (${nHead})`);
  if (nHead % nHeadKv !== 0) throw new RangeError(`shape.nHead (${nHead}) must be a multiple of nHeadKv (${nHeadKv})`);
  if ((nEmbd / nHead) % 2 !== 0) throw new RangeError('the head size (nEmbd / nHead) must be even for RoPE');
}

export function checkPooling(shape: SyntheticModelShape, arch: SyntheticArchitecture, allowed: readonly SyntheticPooling[]): void {
  if (shape.pooling !== undefined && !allowed.includes(shape.pooling)) {
    throw new RangeError(`shape.pooling for ${arch} must be one of ${allowed.join(', ')}, got '${shape.pooling}'`);
  }
}
