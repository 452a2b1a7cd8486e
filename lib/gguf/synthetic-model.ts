/**
 * GGUF models with seeded random F16 weights, for tests and benchmarks that need a real model
 * shape (up to TinyLlama-1.1B) without downloading one. The output is byte-identical for the same
 * shape, seed, vocab and GENERATOR_VERSION. Llama by default; a shape may instead ask for gemma2
 * (sliding-window attention) or mamba (recurrent state), with the tensor names and shapes their
 * load_arch_tensors in vendor/llama.cpp/src/models/ expects.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ErrorCode, ModelFileError } from '../errors.js';
import { GgmlType } from './ggml-types.js';
import { readGguf, type GgufValue } from './reader.js';
import { GgufWriter, gguf, type GgufChunkWriter, type GgufWriterTensor } from './writer.js';

/** Bump whenever the bytes written for a given shape and seed change, so caches regenerate. */
export const GENERATOR_VERSION = 1;

/**
 * What general.architecture says. gemma2 is llama's attention and gated FFN plus post-norms, tied
 * output and sliding-window attention on every other layer (layers 0, 2, ...: its default pattern);
 * mamba is Mamba-1, no attention at all, with state that llama.cpp cannot roll back.
 */
export type SyntheticArchitecture = 'llama' | 'gemma2' | 'mamba';

export interface SyntheticModelShape {
  /** Default 'llama'. */
  architecture?: SyntheticArchitecture;
  nEmbd: number;
  /** 0 for mamba, which has no FFN (as converted Mamba models say). */
  nFf: number;
  nLayer: number;
  /** 0 for mamba, which has no attention. */
  nHead: number;
  /** 0 for mamba. */
  nHeadKv: number;
  contextLength: number;
  ropeFreqBase?: number;
  rmsEps?: number;
  /** gemma2 only, required there: the sliding-window layers' window, in tokens. */
  slidingWindow?: number;
  /** mamba only: ssm.state_size, default 16 (Mamba's own). The inner size is 2 × nEmbd, the only expansion llama.cpp supports. */
  ssmStateSize?: number;
}

export const shapes = {
  tiny: { nEmbd: 64, nFf: 128, nLayer: 4, nHead: 4, nHeadKv: 2, contextLength: 2048 },
  small: { nEmbd: 256, nFf: 768, nLayer: 6, nHead: 8, nHeadKv: 4, contextLength: 2048 },
  /** The TinyLlama-1.1B shape. */
  tinyllama1b: { nEmbd: 2048, nFf: 5632, nLayer: 22, nHead: 32, nHeadKv: 4, contextLength: 2048 },
  /** tiny as gemma2, with a window shorter than a typical test prompt. */
  tinySwa: { architecture: 'gemma2', nEmbd: 64, nFf: 128, nLayer: 4, nHead: 4, nHeadKv: 2, contextLength: 2048, slidingWindow: 8 },
  tinyMamba: { architecture: 'mamba', nEmbd: 64, nFf: 0, nLayer: 2, nHead: 0, nHeadKv: 0, contextLength: 2048 },
} as const satisfies Record<string, SyntheticModelShape>;

export type SyntheticShapeName = keyof typeof shapes;

/** LLAMA_FTYPE_MOSTLY_F16. */
const FILE_TYPE_F16 = 1;
/** Uniform weight range; small enough that 22 layers of F16 activations stay far from overflow. */
const WEIGHT_AMPLITUDE = 0.05;
const CHUNK_BYTES = 16 * 1024 * 1024;
/** Mamba-1's conv kernel (ssm.conv_kernel). */
const MAMBA_CONV_KERNEL = 4;
const ARCHITECTURES: readonly SyntheticArchitecture[] = ['llama', 'gemma2', 'mamba'];

function checkShape(s: SyntheticModelShape): void {
  const arch = s.architecture ?? 'llama';
  if (!ARCHITECTURES.includes(arch)) throw new RangeError(`shape.architecture must be one of ${ARCHITECTURES.join(', ')}, got '${arch}'`);
  const positive = (k: 'nEmbd' | 'nFf' | 'nLayer' | 'nHead' | 'nHeadKv' | 'contextLength' | 'slidingWindow' | 'ssmStateSize') => {
    if (!Number.isSafeInteger(s[k]) || s[k]! <= 0) throw new RangeError(`shape.${k} must be a positive integer, got ${s[k]}`);
  };
  if (arch === 'mamba') {
    for (const k of ['nEmbd', 'nLayer', 'contextLength'] as const) positive(k);
    for (const k of ['nFf', 'nHead', 'nHeadKv'] as const) {
      if (s[k] !== 0) throw new RangeError(`shape.${k} must be 0 for mamba (no attention or FFN), got ${s[k]}`);
    }
    if (s.ssmStateSize !== undefined) positive('ssmStateSize');
    if (s.slidingWindow !== undefined) throw new RangeError('shape.slidingWindow is for gemma2 only');
    return;
  }
  for (const k of ['nEmbd', 'nFf', 'nLayer', 'nHead', 'nHeadKv', 'contextLength'] as const) positive(k);
  if (arch === 'gemma2') positive('slidingWindow');
  else if (s.slidingWindow !== undefined) throw new RangeError('shape.slidingWindow is for gemma2 only');
  if (s.ssmStateSize !== undefined) throw new RangeError('shape.ssmStateSize is for mamba only');
  if (s.nEmbd % s.nHead !== 0) throw new RangeError(`shape.nEmbd (${s.nEmbd}) must be a multiple of nHead (${s.nHead})`);
  if (s.nHead % s.nHeadKv !== 0) throw new RangeError(`shape.nHead (${s.nHead}) must be a multiple of nHeadKv (${s.nHeadKv})`);
  if ((s.nEmbd / s.nHead) % 2 !== 0) throw new RangeError('the head size (nEmbd / nHead) must be even for RoPE');
}

export interface PlannedTensor {
  name: string;
  dims: number[];
  type: number;
}

/** The architecture's tensor set, dims ne0-first as GGUF stores them. */
export function syntheticTensorPlan(shape: SyntheticModelShape, nVocab: number): PlannedTensor[] {
  if (shape.architecture === 'gemma2') return gemma2TensorPlan(shape, nVocab);
  if (shape.architecture === 'mamba') return mambaTensorPlan(shape, nVocab);
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
}

const f16 = (name: string, dims: number[]): PlannedTensor => ({ name, dims, type: GgmlType.F16 });
const f32 = (name: string, dims: number[]): PlannedTensor => ({ name, dims, type: GgmlType.F32 });

/** Layer i's attention block, which llama and gemma2 share: its norm and the Q, K, V and output projections. */
function attentionTensors(shape: SyntheticModelShape, i: number): PlannedTensor[] {
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

/** llama_model_gemma2::load_arch_tensors: llama's set plus two post-norms a layer, output tied to token_embd. */
function gemma2TensorPlan(shape: SyntheticModelShape, nVocab: number): PlannedTensor[] {
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
}

/** Mamba-1's sizes as llama.cpp reads them from ssm.*: inner 2 × nEmbd, dt rank ⌈nEmbd / 16⌉ (Mamba's own rule). */
function mambaSizes(shape: SyntheticModelShape): { dInner: number; dState: number; dtRank: number; dConv: number } {
  return { dInner: 2 * shape.nEmbd, dState: shape.ssmStateSize ?? 16, dtRank: Math.ceil(shape.nEmbd / 16), dConv: MAMBA_CONV_KERNEL };
}

/**
 * llama_model_mamba::load_arch_tensors. The conv, A, D and bias tensors are F32, as the converter
 * writes them: ggml's ssm_conv and ssm_scan read them as floats.
 */
function mambaTensorPlan(shape: SyntheticModelShape, nVocab: number): PlannedTensor[] {
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
}

/**
 * The F32 tensors' values. Norm weights (every llama and gemma2 F32 tensor) are exactly 1.0, so the
 * norms are plain RMS normalisation. Mamba's follow its own initialisation, so that the state
 * carries the context forward instead of dying out or blowing up: A = -(1..d_state) per channel
 * (S4D-real, stored as -exp(A_log) like the converter), D = 1, dt's bias the inverse softplus of a
 * step drawn log-uniformly from [0.001, 0.1], conv weights and bias uniform in ±1/√d_conv.
 */
function f32Values(tensor: GgufWriterTensor, seed: number): Float32Array {
  const n = tensor.dims.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  const base = tensor.name.replace(/^blk\.\d+\./, '');
  const random = splitmix32((seed ^ Math.imul(tensor.index + 1, 0x632be5ab)) >>> 0);
  const uniform = () => random() / 2 ** 32;
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
    values.fill(1);
  }
  return values;
}

/** IEEE binary16 bits of a float, round-to-nearest-even; only used to build the lookup table. */
export function floatToHalfBits(value: number): number {
  const f32 = new Float32Array([value]);
  const x = new Uint32Array(f32.buffer)[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and saturates to infinity).
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

let halfTable: Uint32Array | undefined;

/**
 * 65536 evenly spaced values in (-A, A) as half bits, indexed by 16 random bits. Looking bits up
 * here makes each output half one table read instead of a float conversion.
 */
function uniformHalfTable(): Uint32Array {
  if (!halfTable) {
    halfTable = new Uint32Array(65536);
    for (let i = 0; i < 65536; i++) halfTable[i] = floatToHalfBits(((i + 0.5) / 32768 - 1) * WEIGHT_AMPLITUDE);
  }
  return halfTable;
}

function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** xoshiro128**, one stream per tensor; state lives in fields so a stream spans chunks. */
class HalfStream {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, streamIndex: number) {
    const next = splitmix32((seed ^ Math.imul(streamIndex + 1, 0x632be5ab)) >>> 0);
    next();
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Fills `n` u32 words, each two uniform halves. */
  fill(out: Uint32Array, n: number): void {
    const table = uniformHalfTable();
    let s0 = this.s0,
      s1 = this.s1,
      s2 = this.s2,
      s3 = this.s3;
    for (let i = 0; i < n; i++) {
      const m = Math.imul(s1, 5);
      const r = Math.imul((m << 7) | (m >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
      out[i] = table[r & 0xffff]! | (table[r >>> 16]! << 16);
    }
    this.s0 = s0;
    this.s1 = s1;
    this.s2 = s2;
    this.s3 = s3;
  }
}

/** Streams random F16 data, generating the next chunk while the previous one is being written. */
async function writeRandomF16(out: GgufChunkWriter, byteSize: number, stream: HalfStream, buffers: Uint32Array[]): Promise<void> {
  let pending: Promise<void> | undefined;
  let which = 0;
  for (let done = 0; done < byteSize; which ^= 1) {
    const n = Math.min(CHUNK_BYTES, byteSize - done);
    const words = buffers[which]!;
    stream.fill(words, Math.ceil(n / 4));
    await pending;
    pending = out.write(new Uint8Array(words.buffer, 0, n));
    done += n;
  }
  await pending;
}

/**
 * The general.* and architecture keys of a gemma2 or mamba file: the ones their converters write
 * and load_arch_hparams reads. gemma2 says its window and its soft-capping values (gemma2's own 50
 * and 30) and leaves the sliding-window pattern to llama.cpp's gemma2 default (every other layer).
 */
function addArchitectureKvs(w: GgufWriter, shape: SyntheticModelShape, nVocab: number, name: string | undefined): void {
  const arch = shape.architecture!;
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
  if (arch === 'mamba') {
    const { dInner, dState, dtRank, dConv } = mambaSizes(shape);
    w.addKv('mamba.ssm.conv_kernel', gguf.u32(dConv))
      .addKv('mamba.ssm.inner_size', gguf.u32(dInner))
      .addKv('mamba.ssm.state_size', gguf.u32(dState))
      .addKv('mamba.ssm.time_step_rank', gguf.u32(dtRank))
      .addKv('mamba.attention.layer_norm_rms_epsilon', gguf.f32(shape.rmsEps ?? 1e-5));
    return;
  }
  const headSize = shape.nEmbd / shape.nHead;
  w.addKv('gemma2.attention.head_count_kv', gguf.u32(shape.nHeadKv))
    .addKv('gemma2.attention.key_length', gguf.u32(headSize))
    .addKv('gemma2.attention.value_length', gguf.u32(headSize))
    .addKv('gemma2.rope.freq_base', gguf.f32(shape.ropeFreqBase ?? 10000))
    .addKv('gemma2.attention.layer_norm_rms_epsilon', gguf.f32(shape.rmsEps ?? 1e-5))
    .addKv('gemma2.attention.sliding_window', gguf.u32(shape.slidingWindow!))
    .addKv('gemma2.attn_logit_softcapping', gguf.f32(50))
    .addKv('gemma2.final_logit_softcapping', gguf.f32(30));
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

  const w = new GgufWriter();
  if (shape.architecture === 'gemma2' || shape.architecture === 'mamba') {
    addArchitectureKvs(w, shape, nVocab, opts.name);
  } else {
    w.addKv('general.architecture', 'llama')
      .addKv('general.name', opts.name ?? `synthetic-llama-${shape.nLayer}l-${shape.nEmbd}d`)
      .addKv('general.file_type', gguf.u32(FILE_TYPE_F16))
      .addKv('general.alignment', gguf.u32(32))
      .addKv('llama.vocab_size', gguf.u32(nVocab))
      .addKv('llama.context_length', gguf.u32(shape.contextLength))
      .addKv('llama.embedding_length', gguf.u32(shape.nEmbd))
      .addKv('llama.block_count', gguf.u32(shape.nLayer))
      .addKv('llama.feed_forward_length', gguf.u32(shape.nFf))
      .addKv('llama.attention.head_count', gguf.u32(shape.nHead))
      .addKv('llama.attention.head_count_kv', gguf.u32(shape.nHeadKv))
      .addKv('llama.rope.dimension_count', gguf.u32(shape.nEmbd / shape.nHead))
      .addKv('llama.rope.freq_base', gguf.f32(shape.ropeFreqBase ?? 10000))
      .addKv('llama.attention.layer_norm_rms_epsilon', gguf.f32(shape.rmsEps ?? 1e-5));
  }
  for (const [key, value] of vocab.metadata) {
    if (key.startsWith('tokenizer.') && key !== 'tokenizer.chat_template') w.addKv(key, withAddedTokens(key, value, added));
  }
  w.addKv('tokenizer.chat_template', opts.chatTemplate ?? 'chatml');

  for (const t of syntheticTensorPlan(shape, nVocab)) w.addTensor(t.name, t.dims, t.type);

  const buffers = [new Uint32Array(CHUNK_BYTES / 4), new Uint32Array(CHUNK_BYTES / 4)];
  await w.write(opts.path, async (index, tensor, out) => {
    if (tensor.type === GgmlType.F32) {
      await out.write(new Uint8Array(f32Values(tensor, seed).buffer));
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
