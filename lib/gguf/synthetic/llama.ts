/** Llama: llama_model_llama::load_arch_tensors in vendor/llama.cpp/src/models/llama.cpp. */
import { gguf, type GgufWriter } from '../writer.js';
import { checkHeads, checkPositive, f16, f32, type ArchitectureFamily, type PlannedTensor, type SyntheticModelShape } from './common.js';

/** Layer i's attention block, which llama and gemma2 share: its norm and the Q, K, V and output projections. */
export function attentionTensors(shape: SyntheticModelShape, i: number): PlannedTensor[] {
  const { nEmbd, nHead, nHeadKv } = shape;
  const nEmbdKv = (nEmbd / nHead) * nHeadKv;
  return [
    f32(`blk.${i}.attn_norm.weight`, [nEmbd]),
    f16(`blk.${i}.attn_q.weight`, [nEmbd, nEmbd]),
    f16(`blk.${i}.attn_k.weight`, [nEmbd, nEmbdKv]),
    f16(`blk.${i}.attn_v.weight`, [nEmbd, nEmbdKv]),
    f16(`blk.${i}.attn_output.weight`, [nEmbd, nEmbd]),
  ];
}

/** The sizes llama and gemma2 both need: every size positive, heads that divide evenly. */
export function checkAttentionShape(shape: SyntheticModelShape): void {
  checkPositive(shape, 'nEmbd', 'nFf', 'nLayer', 'nHead', 'nHeadKv', 'contextLength');
  checkHeads(shape);
}

export const llama: ArchitectureFamily = {
  defaultVocab: 'ggml-vocab-llama-spm.gguf',
  fields: [],
  check: checkAttentionShape,

  tensorPlan(shape, nVocab) {
    const { nEmbd, nFf, nLayer } = shape;
    const plan: PlannedTensor[] = [f16('token_embd.weight', [nEmbd, nVocab])];
    for (let i = 0; i < nLayer; i++) {
      plan.push(
        ...attentionTensors(shape, i),
        f32(`blk.${i}.ffn_norm.weight`, [nEmbd]),
        f16(`blk.${i}.ffn_gate.weight`, [nEmbd, nFf]),
        f16(`blk.${i}.ffn_down.weight`, [nFf, nEmbd]),
        f16(`blk.${i}.ffn_up.weight`, [nEmbd, nFf]),
      );
    }
    plan.push(f32('output_norm.weight', [nEmbd]), f16('output.weight', [nEmbd, nVocab]));
    return plan;
  },

  addKvs(w: GgufWriter, shape) {
    w.addKv('llama.attention.head_count_kv', gguf.u32(shape.nHeadKv))
      .addKv('llama.rope.dimension_count', gguf.u32(shape.nEmbd / shape.nHead))
      .addKv('llama.rope.freq_base', gguf.f32(shape.ropeFreqBase ?? 10000))
      .addKv('llama.attention.layer_norm_rms_epsilon', gguf.f32(shape.rmsEps ?? 1e-5));
  },
};
