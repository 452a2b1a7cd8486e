/**
 * The synthetic models' seeded data: uniform random F16 weights streamed in chunks, and F32
 * values (norms, biases, small embeddings). Every tensor has its own stream, drawn from the seed
 * and the tensor's index, so the bytes depend only on the shape, seed and vocab.
 */
import type { GgufChunkWriter, GgufWriterTensor } from '../writer.js';
import type { ArchitectureFamily } from './common.js';

/** Uniform weight range; small enough that 22 layers of F16 activations stay far from overflow. */
export const WEIGHT_AMPLITUDE = 0.05;
export const CHUNK_BYTES = 16 * 1024 * 1024;

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

/** The first generator of tensor `streamIndex`'s stream. */
function tensorSeed(seed: number, streamIndex: number): () => number {
  return splitmix32((seed ^ Math.imul(streamIndex + 1, 0x632be5ab)) >>> 0);
}

/** xoshiro128**, one stream per tensor; state lives in fields so a stream spans chunks. */
export class HalfStream {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, streamIndex: number) {
    const next = tensorSeed(seed, streamIndex);
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
export async function writeRandomF16(out: GgufChunkWriter, byteSize: number, stream: HalfStream, buffers: Uint32Array[]): Promise<void> {
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
 * An F32 tensor's values, unless its family sets them (ArchitectureFamily.fillF32): norm weights
 * (and any other vector) exactly 1.0 and norm biases 0, so the norms are plain normalisation;
 * other biases and F32 matrices (BERT's position and token-type embeddings, which converters keep
 * in F32) uniform in ±WEIGHT_AMPLITUDE like the F16 weights.
 */
export function f32Values(family: ArchitectureFamily, tensor: GgufWriterTensor, seed: number): Float32Array {
  const n = tensor.dims.reduce((a, b) => a * b, 1);
  const values = new Float32Array(n);
  const base = tensor.name.replace(/^blk\.\d+\./, '');
  const random = tensorSeed(seed, tensor.index);
  const uniform = () => random() / 2 ** 32;
  if (family.fillF32?.(base, tensor, values, uniform)) return values;
  if (base.endsWith('norm.bias')) return values;
  if (base.endsWith('.bias') || tensor.dims.length > 1) {
    for (let i = 0; i < n; i++) values[i] = (2 * uniform() - 1) * WEIGHT_AMPLITUDE;
    return values;
  }
  return values.fill(1);
}
