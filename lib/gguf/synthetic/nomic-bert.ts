/**
 * nomic-bert (nomic-embed-text v1 and v1.5): llama_model_nomic_bert::load_arch_tensors in
 * vendor/llama.cpp/src/models/nomic-bert.cpp, run by the BERT graph (bert.cpp). BERT's
 * post-norm encoder with RoPE instead of position embeddings, one fused QKV projection, a SwiGLU
 * FFN (up and gate) and no biases, as the converter asserts for the non-MoE models.
 */
import { gguf } from '../writer.js';
import { checkHeads, f16, f32, type ArchitectureFamily, type PlannedTensor } from './common.js';
import { BERT_TOKEN_TYPES, addEncoderKvs, checkEncoderShape, embeddingNorm, encoderTokenizerKvs, layerNorm } from './bert.js';

export const nomicBert: ArchitectureFamily = {
  defaultVocab: 'ggml-vocab-bert-bge.gguf',
  fields: ['pooling', 'layerNormEps'],

  check(shape) {
    checkEncoderShape(shape, 'nomic-bert');
    checkHeads(shape);
  },

  tensorPlan(shape, nVocab) {
    const { nEmbd, nFf, nLayer } = shape;
    const plan: PlannedTensor[] = [
      f16('token_embd.weight', [nEmbd, nVocab]),
      f32('token_types.weight', [nEmbd, BERT_TOKEN_TYPES]),
      ...embeddingNorm(nEmbd),
    ];
    for (let i = 0; i < nLayer; i++) {
      plan.push(
        f16(`blk.${i}.attn_qkv.weight`, [nEmbd, 3 * nEmbd]),
        f16(`blk.${i}.attn_output.weight`, [nEmbd, nEmbd]),
        ...layerNorm(i, 'attn_output_norm', nEmbd),
        f16(`blk.${i}.ffn_up.weight`, [nEmbd, nFf]),
        f16(`blk.${i}.ffn_gate.weight`, [nEmbd, nFf]),
        f16(`blk.${i}.ffn_down.weight`, [nFf, nEmbd]),
        ...layerNorm(i, 'layer_output_norm', nEmbd),
      );
    }
    return plan;
  },

  /** BERT's keys plus the RoPE base (nomic's rotary_emb_base; 1000 in v1.5, set by the shape). */
  addKvs(w, shape) {
    addEncoderKvs(w, 'nomic-bert', shape);
    w.addKv('nomic-bert.rope.freq_base', gguf.f32(shape.ropeFreqBase ?? 10000));
  },

  tokenizerKvs: (_shape, vocab) => encoderTokenizerKvs(vocab),
};
