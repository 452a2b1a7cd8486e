/**
 * Gemma 2: llama_model_gemma2::load_arch_tensors in vendor/llama.cpp/src/models/gemma2.cpp.
 * llama's set plus two post-norms a layer, output tied to token_embd.
 */
import { gguf } from '../writer.js';
import { checkPositive, f16, f32, type ArchitectureFamily, type PlannedTensor } from './common.js';
import { attentionTensors, checkAttentionShape } from './llama.js';

export const gemma2: ArchitectureFamily = {
  defaultVocab: 'ggml-vocab-llama-spm.gguf',
  fields: ['slidingWindow'],

  check(shape) {
    checkPositive(shape, 'nEmbd', 'nFf', 'nLayer', 'nHead', 'nHeadKv', 'contextLength', 'slidingWindow');
    checkAttentionShape(shape);
  },

  tensorPlan(shape, nVocab) {
    const { nEmbd, nFf, nLayer } = shape;
    const plan: PlannedTensor[] = [f16('token_embd.weight', [nEmbd, nVocab])];
    for (let i = 0; i < nLayer; i++) {
      plan.push(
        ...attentionTensors(shape, i),
        f32(`blk.${i}.post_attention_norm.weight`, [nEmbd]),
        f32(`blk.${i}.ffn_norm.weight`, [nEmbd]),
        f16(`blk.${i}.ffn_gate.weight`, [nEmbd, nFf]),
        f16(`blk.${i}.ffn_up.weight`, [nEmbd, nFf]),
        f16(`blk.${i}.ffn_down.weight`, [nFf, nEmbd]),
        f32(`blk.${i}.post_ffw_norm.weight`, [nEmbd]),
      );
    }
    plan.push(f32('output_norm.weight', [nEmbd]));
    return plan;
  },

  /**
   * What its converter writes and load_arch_hparams reads: the window and gemma2's own soft-capping
   * values (50 and 30); the sliding-window pattern is left to llama.cpp's gemma2 default (every other layer).
   */
  addKvs(w, shape) {
    const headSize = shape.nEmbd / shape.nHead;
    w.addKv('gemma2.attention.head_count_kv', gguf.u32(shape.nHeadKv))
      .addKv('gemma2.attention.key_length', gguf.u32(headSize))
      .addKv('gemma2.attention.value_length', gguf.u32(headSize))
      .addKv('gemma2.rope.freq_base', gguf.f32(shape.ropeFreqBase ?? 10000))
      .addKv('gemma2.attention.layer_norm_rms_epsilon', gguf.f32(shape.rmsEps ?? 1e-5))
      .addKv('gemma2.attention.sliding_window', gguf.u32(shape.slidingWindow!))
      .addKv('gemma2.attn_logit_softcapping', gguf.f32(50))
      .addKv('gemma2.final_logit_softcapping', gguf.f32(30));
  },
};
