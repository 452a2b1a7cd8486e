/**
 * Llama-architecture GGUF models with seeded random F16 weights, for tests and benchmarks that
 * need a real model shape (up to TinyLlama-1.1B) without downloading one. The output is
 * byte-identical for the same shape, seed, vocab and GENERATOR_VERSION.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { ErrorCode, ModelFileError } from '../errors.js';
import { GgmlType } from './ggml-types.js';
import { readGguf } from './reader.js';
import { GgufWriter, gguf, type GgufChunkWriter } from './writer.js';

/** Bump whenever the bytes written for a given shape and seed change, so caches regenerate. */
export const GENERATOR_VERSION = 1;

export interface SyntheticModelShape {
  nEmbd: number;
  nFf: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  contextLength: number;
  ropeFreqBase?: number;
  rmsEps?: number;
}

export const shapes = {
  tiny: { nEmbd: 64, nFf: 128, nLayer: 4, nHead: 4, nHeadKv: 2, contextLength: 2048 },
  small: { nEmbd: 256, nFf: 768, nLayer: 6, nHead: 8, nHeadKv: 4, contextLength: 2048 },
  /** The TinyLlama-1.1B shape. */
  tinyllama1b: { nEmbd: 2048, nFf: 5632, nLayer: 22, nHead: 32, nHeadKv: 4, contextLength: 2048 },
} as const satisfies Record<string, SyntheticModelShape>;

export type SyntheticShapeName = keyof typeof shapes;

/** LLAMA_FTYPE_MOSTLY_F16. */
const FILE_TYPE_F16 = 1;
/** Uniform weight range; small enough that 22 layers of F16 activations stay far from overflow. */
const WEIGHT_AMPLITUDE = 0.05;
const CHUNK_BYTES = 16 * 1024 * 1024;

function checkShape(s: SyntheticModelShape): void {
  for (const k of ['nEmbd', 'nFf', 'nLayer', 'nHead', 'nHeadKv', 'contextLength'] as const) {
    if (!Number.isSafeInteger(s[k]) || s[k] <= 0) throw new RangeError(`shape.${k} must be a positive integer, got ${s[k]}`);
  }
  if (s.nEmbd % s.nHead !== 0) throw new RangeError(`shape.nEmbd (${s.nEmbd}) must be a multiple of nHead (${s.nHead})`);
  if (s.nHead % s.nHeadKv !== 0) throw new RangeError(`shape.nHead (${s.nHead}) must be a multiple of nHeadKv (${s.nHeadKv})`);
  if ((s.nEmbd / s.nHead) % 2 !== 0) throw new RangeError('the head size (nEmbd / nHead) must be even for RoPE');
}

export interface PlannedTensor {
  name: string;
  dims: number[];
  type: number;
}

/** The llama tensor set, dims ne0-first as GGUF stores them. */
export function syntheticTensorPlan(shape: SyntheticModelShape, nVocab: number): PlannedTensor[] {
  const { nEmbd, nFf, nLayer, nHead, nHeadKv } = shape;
  const nEmbdKv = (nEmbd / nHead) * nHeadKv;
  const f16 = (name: string, dims: number[]) => ({ name, dims, type: GgmlType.F16 });
  const f32 = (name: string, dims: number[]) => ({ name, dims, type: GgmlType.F32 });
  const plan: PlannedTensor[] = [f16('token_embd.weight', [nEmbd, nVocab])];
  for (let i = 0; i < nLayer; i++) {
    plan.push(
      f32(`blk.${i}.attn_norm.weight`, [nEmbd]),
      f16(`blk.${i}.attn_q.weight`, [nEmbd, nEmbd]),
      f16(`blk.${i}.attn_k.weight`, [nEmbd, nEmbdKv]),
      f16(`blk.${i}.attn_v.weight`, [nEmbd, nEmbdKv]),
      f16(`blk.${i}.attn_output.weight`, [nEmbd, nEmbd]),
      f32(`blk.${i}.ffn_norm.weight`, [nEmbd]),
      f16(`blk.${i}.ffn_gate.weight`, [nEmbd, nFf]),
      f16(`blk.${i}.ffn_down.weight`, [nFf, nEmbd]),
      f16(`blk.${i}.ffn_up.weight`, [nEmbd, nFf]),
    );
  }
  plan.push(f32('output_norm.weight', [nEmbd]), f16('output.weight', [nEmbd, nVocab]));
  return plan;
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

export interface WriteSyntheticModelOptions {
  path: string;
  shape: SyntheticModelShape;
  /** A GGUF holding a tokenizer (e.g. vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf). */
  vocabPath: string;
  seed?: number;
  name?: string;
  /** A llama.cpp built-in template name or a Jinja template; defaults to 'chatml'. */
  chatTemplate?: string;
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
  const nVocab = tokens.value.length;

  const w = new GgufWriter();
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
  for (const [key, value] of vocab.metadata) {
    if (key.startsWith('tokenizer.') && key !== 'tokenizer.chat_template') w.addKv(key, value);
  }
  w.addKv('tokenizer.chat_template', opts.chatTemplate ?? 'chatml');

  for (const t of syntheticTensorPlan(shape, nVocab)) w.addTensor(t.name, t.dims, t.type);

  const buffers = [new Uint32Array(CHUNK_BYTES / 4), new Uint32Array(CHUNK_BYTES / 4)];
  await w.write(opts.path, async (index, tensor, out) => {
    if (tensor.type === GgmlType.F32) {
      // Norm weights are exactly 1.0 so the synthetic model's norms are plain RMS normalisation.
      await out.write(new Uint8Array(new Float32Array(tensor.byteSize / 4).fill(1).buffer));
      return;
    }
    await writeRandomF16(out, tensor.byteSize, new HalfStream(seed, index), buffers);
  });
}

export interface EnsureSyntheticModelOptions {
  cacheDir: string;
  shape: SyntheticShapeName | SyntheticModelShape;
  vocabPath: string;
  seed?: number;
  chatTemplate?: string;
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
        shape: { ...shape, ropeFreqBase: shape.ropeFreqBase ?? 10000, rmsEps: shape.rmsEps ?? 1e-5 },
        vocab: [basename(opts.vocabPath), vocabSize],
        chatTemplate: opts.chatTemplate ?? 'chatml',
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
