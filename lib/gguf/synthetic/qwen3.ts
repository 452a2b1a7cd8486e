/**
 * Qwen3: llama_model_qwen3::load_arch_tensors in vendor/llama.cpp/src/models/qwen3.cpp. Llama's
 * decoder plus RMS norms on Q and K per head, with a head size of its own (Qwen3-0.6B: 16 heads of
 * 128 in a 1024 embedding). The pooling says which model it is, as the converter writes it:
 *
 * - no pooling: a language model with its own output head (an untied Qwen3, as Qwen3-8B).
 * - mean, cls, last: an embedding model (Qwen3-Embedding pools the last token, the EOS it appends);
 *   its checkpoint has no LM head, so there is no output.weight and llama.cpp ties the output to
 *   token_embd.
 * - rank: a reranker (Qwen3-Reranker). The converter keeps the LM head's "yes" and "no" rows as
 *   the ranking head cls.output.weight, labels them, and writes the prompt that llama.cpp fills in
 *   with {query} and {document} as the "rerank" chat template. llama.cpp pools the last token
 *   through that head and a softmax (llama-graph.cpp build_pooling).
 */
import type { GgufValue } from '../reader.js';
import { gguf } from '../writer.js';
import {
  POOLING_TYPE_IDS,
  checkPooling,
  checkPositive,
  f16,
  f32,
  type ArchitectureFamily,
  type PlannedTensor,
  type SyntheticModelShape,
} from './common.js';

/** The ranking head's labels, in the order of its rows: the probability of "yes" is the score. */
export const QWEN3_RERANK_LABELS = ['yes', 'no'] as const;

/** The prompt Qwen3-Reranker GGUFs carry as tokenizer.chat_template.rerank (Qwen's documented reranker prompt). */
export const QWEN3_RERANK_TEMPLATE =
  '<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. ' +
  'Note that the answer can only be "yes" or "no".<|im_end|>\n' +
  '<|im_start|>user\n<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n' +
  '<Query>: {query}\n<Document>: {document}<|im_end|>\n' +
  '<|im_start|>assistant\n<think>\n\n</think>\n\n';

function headDim(shape: SyntheticModelShape): number {
  return shape.headDim ?? shape.nEmbd / shape.nHead;
}

export const qwen3: ArchitectureFamily = {
  defaultVocab: 'ggml-vocab-qwen2.gguf',
  fields: ['pooling', 'headDim'],

  check(shape) {
    checkPositive(shape, 'nEmbd', 'nFf', 'nLayer', 'nHead', 'nHeadKv', 'contextLength');
    if (shape.headDim !== undefined) checkPositive(shape, 'headDim');
    else if (shape.nEmbd % shape.nHead !== 0) {
      throw new RangeError(`shape.nEmbd (${shape.nEmbd}) must be a multiple of nHead (${shape.nHead}), or shape.headDim set`);
    }
    if (shape.nHead % shape.nHeadKv !== 0)
      throw new RangeError(`shape.nHead (${shape.nHead}) must be a multiple of nHeadKv (${shape.nHeadKv})`);
    if (headDim(shape) % 2 !== 0) throw new RangeError('the head size (headDim, or nEmbd / nHead) must be even for RoPE');
    checkPooling(shape, 'qwen3', ['mean', 'cls', 'last', 'rank']);
  },

  tensorPlan(shape, nVocab) {
    const { nEmbd, nFf, nLayer, nHead, nHeadKv } = shape;
    const dHead = headDim(shape);
    const plan: PlannedTensor[] = [f16('token_embd.weight', [nEmbd, nVocab])];
    for (let i = 0; i < nLayer; i++) {
      plan.push(
        f32(`blk.${i}.attn_norm.weight`, [nEmbd]),
        f16(`blk.${i}.attn_q.weight`, [nEmbd, dHead * nHead]),
        f16(`blk.${i}.attn_k.weight`, [nEmbd, dHead * nHeadKv]),
        f16(`blk.${i}.attn_v.weight`, [nEmbd, dHead * nHeadKv]),
        f16(`blk.${i}.attn_output.weight`, [dHead * nHead, nEmbd]),
        f32(`blk.${i}.attn_k_norm.weight`, [dHead]),
        f32(`blk.${i}.attn_q_norm.weight`, [dHead]),
        f32(`blk.${i}.ffn_norm.weight`, [nEmbd]),
        f16(`blk.${i}.ffn_gate.weight`, [nEmbd, nFf]),
        f16(`blk.${i}.ffn_down.weight`, [nFf, nEmbd]),
        f16(`blk.${i}.ffn_up.weight`, [nEmbd, nFf]),
      );
    }
    plan.push(f32('output_norm.weight', [nEmbd]));
    if (shape.pooling === undefined) plan.push(f16('output.weight', [nEmbd, nVocab]));
    else if (shape.pooling === 'rank') plan.push(f16('cls.output.weight', [nEmbd, QWEN3_RERANK_LABELS.length]));
    return plan;
  },

  /** Qwen configs name head_dim, so the converter writes key_length and value_length. */
  addKvs(w, shape) {
    const dHead = headDim(shape);
    w.addKv('qwen3.attention.head_count_kv', gguf.u32(shape.nHeadKv))
      .addKv('qwen3.rope.freq_base', gguf.f32(shape.ropeFreqBase ?? 10000))
      .addKv('qwen3.attention.layer_norm_rms_epsilon', gguf.f32(shape.rmsEps ?? 1e-5))
      .addKv('qwen3.attention.key_length', gguf.u32(dHead))
      .addKv('qwen3.attention.value_length', gguf.u32(dHead));
    if (shape.pooling !== undefined) w.addKv('qwen3.pooling_type', gguf.u32(POOLING_TYPE_IDS[shape.pooling]));
    if (shape.pooling === 'rank') w.addKv('qwen3.classifier.output_labels', gguf.array('string', QWEN3_RERANK_LABELS));
  },

  /**
   * Qwen's tokenizer adds no BOS. Qwen3-Embedding's appends its EOS (<|endoftext|>) to every
   * input, which is the token it pools; the reranker's prompt is the rerank template instead.
   */
  tokenizerKvs(shape) {
    const kvs = new Map<string, GgufValue>([['tokenizer.ggml.add_bos_token', gguf.bool(false)]]);
    if (shape.pooling === 'rank') {
      kvs.set('tokenizer.chat_templates', gguf.array('string', ['rerank']));
      kvs.set('tokenizer.chat_template.rerank', gguf.string(QWEN3_RERANK_TEMPLATE));
    } else if (shape.pooling !== undefined) {
      kvs.set('tokenizer.ggml.add_eos_token', gguf.bool(true));
    }
    return kvs;
  },
};
