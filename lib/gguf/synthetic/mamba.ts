/** Mamba-1: llama_model_mamba::load_arch_tensors in vendor/llama.cpp/src/models/mamba.cpp. No attention, no FFN. */
import { gguf } from '../writer.js';
import { checkPositive, f16, f32, type ArchitectureFamily, type PlannedTensor, type SyntheticModelShape } from './common.js';

/** Mamba-1's conv kernel (ssm.conv_kernel). */
const MAMBA_CONV_KERNEL = 4;

/** Mamba-1's sizes as llama.cpp reads them from ssm.*: inner 2 × nEmbd, dt rank ⌈nEmbd / 16⌉ (Mamba's own rule). */
function mambaSizes(shape: SyntheticModelShape): { dInner: number; dState: number; dtRank: number; dConv: number } {
  return { dInner: 2 * shape.nEmbd, dState: shape.ssmStateSize ?? 16, dtRank: Math.ceil(shape.nEmbd / 16), dConv: MAMBA_CONV_KERNEL };
}

export const mamba: ArchitectureFamily = {
  defaultVocab: 'ggml-vocab-llama-spm.gguf',
  fields: ['ssmStateSize'],

  check(shape) {
    checkPositive(shape, 'nEmbd', 'nLayer', 'contextLength');
    for (const k of ['nFf', 'nHead', 'nHeadKv'] as const) {
      if (shape[k] !== 0) throw new RangeError(`shape.${k} must be 0 for mamba (no attention or FFN), got ${shape[k]}`);
    }
    if (shape.ssmStateSize !== undefined) checkPositive(shape, 'ssmStateSize');
  },

  /** The conv, A, D and bias tensors are F32, as the converter writes them: ggml's ssm_conv and ssm_scan read them as floats. */
  tensorPlan(shape, nVocab) {
    const { nEmbd, nLayer } = shape;
    const { dInner, dState, dtRank, dConv } = mambaSizes(shape);
    const plan: PlannedTensor[] = [f16('token_embd.weight', [nEmbd, nVocab])];
    for (let i = 0; i < nLayer; i++) {
      plan.push(
        f32(`blk.${i}.attn_norm.weight`, [nEmbd]),
        f16(`blk.${i}.ssm_in.weight`, [nEmbd, 2 * dInner]),
        f32(`blk.${i}.ssm_conv1d.weight`, [dConv, dInner]),
        f32(`blk.${i}.ssm_conv1d.bias`, [dInner]),
        f16(`blk.${i}.ssm_x.weight`, [dInner, dtRank + 2 * dState]),
        f16(`blk.${i}.ssm_dt.weight`, [dtRank, dInner]),
        f32(`blk.${i}.ssm_dt.bias`, [dInner]),
        f32(`blk.${i}.ssm_a`, [dState, dInner]),
        f32(`blk.${i}.ssm_d`, [dInner]),
        f16(`blk.${i}.ssm_out.weight`, [dInner, nEmbd]),
      );
    }
    plan.push(f32('output_norm.weight', [nEmbd]), f16('output.weight', [nEmbd, nVocab]));
    return plan;
  },

  addKvs(w, shape) {
    const { dInner, dState, dtRank, dConv } = mambaSizes(shape);
    w.addKv('mamba.ssm.conv_kernel', gguf.u32(dConv))
      .addKv('mamba.ssm.inner_size', gguf.u32(dInner))
      .addKv('mamba.ssm.state_size', gguf.u32(dState))
      .addKv('mamba.ssm.time_step_rank', gguf.u32(dtRank))
      .addKv('mamba.attention.layer_norm_rms_epsilon', gguf.f32(shape.rmsEps ?? 1e-5));
  },

  /**
   * Mamba's own initialisation, so that the state carries the context forward instead of dying out
   * or blowing up: A = -(1..d_state) per channel (S4D-real, stored as -exp(A_log) like the
   * converter), dt's bias the inverse softplus of a step drawn log-uniformly from [0.001, 0.1],
   * conv weights and bias uniform in ±1/√d_conv. D keeps the default 1.
   */
  fillF32(base, tensor, values, uniform) {
    const n = values.length;
    if (base === 'ssm_a') {
      const dState = tensor.dims[0]!;
      for (let i = 0; i < n; i++) values[i] = -((i % dState) + 1);
    } else if (base === 'ssm_dt.bias') {
      for (let i = 0; i < n; i++) {
        const dt = Math.exp(Math.log(0.001) + uniform() * (Math.log(0.1) - Math.log(0.001)));
        values[i] = dt + Math.log(-Math.expm1(-dt));
      }
    } else if (base === 'ssm_conv1d.weight' || base === 'ssm_conv1d.bias') {
      const bound = 1 / Math.sqrt(MAMBA_CONV_KERNEL);
      for (let i = 0; i < n; i++) values[i] = (2 * uniform() - 1) * bound;
    } else {
      return false;
    }
    return true;
  },
};
