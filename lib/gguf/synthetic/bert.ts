/**
 * BERT (BAAI/bge-small-en-v1.5 and kin): llama_model_bert::load_arch_tensors in
 * vendor/llama.cpp/src/models/bert.cpp. A bidirectional encoder with learned position and
 * token-type embeddings, LayerNorm (weight and bias) after attention and after the FFN, biases on
 * every projection and a GELU FFN; no output head, since llama.cpp uses BERT for embeddings only.
 */
import type { GgufValue } from '../reader.js';
import { gguf, type GgufWriter } from '../writer.js';
import {
  POOLING_TYPE_IDS,
  checkPooling,
  checkPositive,
  f16,
  f32,
  type ArchitectureFamily,
  type PlannedTensor,
  type SyntheticArchitecture,
  type SyntheticModelShape,
} from './common.js';

/** BERT's type_vocab_size: sentence A and sentence B. llama.cpp sizes token_types by tokenizer.ggml.token_type_count. */
export const BERT_TOKEN_TYPES = 2;

/** What bert and nomic-bert both require: sizes, plain multi-head attention (no GQA in either) and a pooling they support. */
export function checkEncoderShape(shape: SyntheticModelShape, arch: SyntheticArchitecture): void {
  checkPositive(shape, 'nEmbd', 'nFf', 'nLayer', 'nHead', 'nHeadKv', 'contextLength');
  if (shape.nHeadKv !== shape.nHead)
    throw new RangeError(`shape.nHeadKv must equal nHead (${shape.nHead}) for ${arch}, got ${shape.nHeadKv}`);
  if (shape.nEmbd % shape.nHead !== 0) throw new RangeError(`shape.nEmbd (${shape.nEmbd}) must be a multiple of nHead (${shape.nHead})`);
  checkPooling(shape, arch, ['mean', 'cls']);
  const eps = shape.layerNormEps;
  if (eps !== undefined && !(Number.isFinite(eps) && eps > 0))
    throw new RangeError(`shape.layerNormEps must be a positive number, got ${eps}`);
}

/**
 * The keys the converter's BertModel writes beyond the common ones: LayerNorm epsilon,
 * bidirectional attention, and the pooling its sentence-transformers module names. No
 * head_count_kv: BERT configs have none, and llama.cpp then takes head_count.
 */
export function addEncoderKvs(w: GgufWriter, arch: SyntheticArchitecture, shape: SyntheticModelShape): void {
  w.addKv(`${arch}.attention.layer_norm_epsilon`, gguf.f32(shape.layerNormEps ?? 1e-12)).addKv(`${arch}.attention.causal`, false);
  if (shape.pooling !== undefined) w.addKv(`${arch}.pooling_type`, gguf.u32(POOLING_TYPE_IDS[shape.pooling]));
}

function vocabId(vocab: ReadonlyMap<string, GgufValue>, key: string): number | undefined {
  const v = vocab.get(key);
  return v?.type === 'u32' ? v.value : undefined;
}

/**
 * The token-type count llama.cpp requires of both encoders, and, for a WordPiece vocabulary, the
 * special-token keys the converter derives from a BERT tokenizer (gguf-py SpecialVocab reading its
 * `[CLS] $A [SEP]` post-processor): [CLS] as BOS, [SEP] as EOS, both added, no extra separator, and
 * the uncased normaliser. llama.cpp's WordPiece tokenizer adds [CLS] and [SEP] whatever these say;
 * they matter to code that asks the vocabulary, as llama-embedding and llama-server do.
 */
export function encoderTokenizerKvs(vocab: ReadonlyMap<string, GgufValue>): Map<string, GgufValue> {
  const kvs = new Map<string, GgufValue>([['tokenizer.ggml.token_type_count', gguf.u32(BERT_TOKEN_TYPES)]]);
  const model = vocab.get('tokenizer.ggml.model');
  if (model?.type !== 'string' || model.value !== 'bert') return kvs;
  const cls = vocabId(vocab, 'tokenizer.ggml.cls_token_id');
  const sep = vocabId(vocab, 'tokenizer.ggml.seperator_token_id');
  if (cls !== undefined) kvs.set('tokenizer.ggml.bos_token_id', gguf.u32(cls));
  if (sep !== undefined) kvs.set('tokenizer.ggml.eos_token_id', gguf.u32(sep));
  kvs.set('tokenizer.ggml.add_bos_token', gguf.bool(true));
  kvs.set('tokenizer.ggml.add_eos_token', gguf.bool(true));
  kvs.set('tokenizer.ggml.add_sep_token', gguf.bool(false));
  kvs.set('tokenizer.ggml.normalizer.lowercase', gguf.bool(true));
  return kvs;
}

/** The embedding LayerNorm both encoders start with. */
export function embeddingNorm(nEmbd: number): PlannedTensor[] {
  return [f32('token_embd_norm.weight', [nEmbd]), f32('token_embd_norm.bias', [nEmbd])];
}

/** The LayerNorm (weight and bias) named `blk.i.<name>`. */
export function layerNorm(i: number, name: string, nEmbd: number): PlannedTensor[] {
  return [f32(`blk.${i}.${name}.weight`, [nEmbd]), f32(`blk.${i}.${name}.bias`, [nEmbd])];
}

export const bert: ArchitectureFamily = {
  defaultVocab: 'ggml-vocab-bert-bge.gguf',
  fields: ['pooling', 'layerNormEps'],
  check: (shape) => checkEncoderShape(shape, 'bert'),

  /** Position and token-type embeddings are F32, as the converter keeps them; so are biases and norms. */
  tensorPlan(shape, nVocab) {
    const { nEmbd, nFf, nLayer, contextLength } = shape;
    const plan: PlannedTensor[] = [
      f16('token_embd.weight', [nEmbd, nVocab]),
      f32('token_types.weight', [nEmbd, BERT_TOKEN_TYPES]),
      f32('position_embd.weight', [nEmbd, contextLength]),
      ...embeddingNorm(nEmbd),
    ];
    for (let i = 0; i < nLayer; i++) {
      for (const proj of ['attn_q', 'attn_k', 'attn_v', 'attn_output']) {
        plan.push(f16(`blk.${i}.${proj}.weight`, [nEmbd, nEmbd]), f32(`blk.${i}.${proj}.bias`, [nEmbd]));
      }
      plan.push(
        ...layerNorm(i, 'attn_output_norm', nEmbd),
        f16(`blk.${i}.ffn_up.weight`, [nEmbd, nFf]),
        f32(`blk.${i}.ffn_up.bias`, [nFf]),
        f16(`blk.${i}.ffn_down.weight`, [nFf, nEmbd]),
        f32(`blk.${i}.ffn_down.bias`, [nEmbd]),
        ...layerNorm(i, 'layer_output_norm', nEmbd),
      );
    }
    return plan;
  },

  addKvs: (w, shape) => addEncoderKvs(w, 'bert', shape),
  tokenizerKvs: (_shape, vocab) => encoderTokenizerKvs(vocab),
};
