import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, ModelFileError } from '../../lib/errors.js';
import { GgmlType, ggmlTensorByteSize, ggmlTypeName } from '../../lib/gguf/ggml-types.js';
import { alignUp, ggufNumber, ggufString, readGguf, type GgufFile } from '../../lib/gguf/reader.js';
import { GgufWriter, gguf } from '../../lib/gguf/writer.js';
import {
  GENERATOR_VERSION,
  ensureSyntheticModel,
  floatToHalfBits,
  shapes,
  syntheticTensorPlan,
  writeSyntheticModel,
} from '../../lib/gguf/synthetic-model.js';

const vocabPath = fileURLToPath(new URL('../../vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf', import.meta.url));

let dir: string;
let tinyPath: string;
let tiny: GgufFile;
let tinyBytes: Buffer;

const sha256 = async (path: string) =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

function halfToFloat(h: number): number {
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  const v = exp === 0 ? mant * 2 ** -24 : exp === 31 ? (mant ? NaN : Infinity) : (1 + mant / 1024) * 2 ** (exp - 15);
  return h & 0x8000 ? -v : v;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cuda-llama-gguf-'));
  tinyPath = join(dir, 'tiny.gguf');
  await writeSyntheticModel({ path: tinyPath, shape: shapes.tiny, vocabPath, seed: 7, name: 'tiny-test' });
  tiny = await readGguf(tinyPath, { layout: true });
  tinyBytes = await readFile(tinyPath);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('synthetic model round trip', () => {
  it('writes the llama metadata', () => {
    expect(tiny.version).toBe(3);
    expect(ggufString(tiny, 'general.architecture')).toBe('llama');
    expect(ggufString(tiny, 'general.name')).toBe('tiny-test');
    expect(tiny.metadata.get('general.file_type')).toEqual({ type: 'u32', value: 1 });
    const u32 = (key: string) => {
      const v = tiny.metadata.get(key);
      expect(v?.type, key).toBe('u32');
      return ggufNumber(tiny, key);
    };
    expect(u32('llama.context_length')).toBe(2048);
    expect(u32('llama.embedding_length')).toBe(64);
    expect(u32('llama.block_count')).toBe(4);
    expect(u32('llama.feed_forward_length')).toBe(128);
    expect(u32('llama.attention.head_count')).toBe(4);
    expect(u32('llama.attention.head_count_kv')).toBe(2);
    expect(u32('llama.rope.dimension_count')).toBe(16);
    expect(u32('llama.vocab_size')).toBe(32000);
    expect(tiny.metadata.get('llama.rope.freq_base')).toEqual({ type: 'f32', value: 10000 });
    expect(tiny.metadata.get('llama.attention.layer_norm_rms_epsilon')?.type).toBe('f32');
    expect(ggufNumber(tiny, 'llama.attention.layer_norm_rms_epsilon')).toBeCloseTo(1e-5, 9);
    expect(ggufString(tiny, 'tokenizer.chat_template')).toBe('chatml');
  });

  it('copies every tokenizer key from the vocab with its exact type', async () => {
    const vocab = await readGguf(vocabPath);
    const tokens = tiny.metadata.get('tokenizer.ggml.tokens');
    expect(tokens?.type === 'array' && tokens.itemType === 'string' && tokens.value.length).toBe(32000);
    expect(ggufString(tiny, 'tokenizer.ggml.model')).toBe('llama');
    const copied = [...vocab.metadata.keys()].filter((k) => k.startsWith('tokenizer.'));
    expect(copied.length).toBeGreaterThan(5);
    for (const key of copied) expect(tiny.metadata.get(key), key).toEqual(vocab.metadata.get(key));
  });

  it('lays out the tensors llama.cpp expects', () => {
    const plan = syntheticTensorPlan(shapes.tiny, 32000);
    expect(tiny.tensors.map((t) => t.name)).toEqual(plan.map((t) => t.name));
    expect(tiny.tensors).toHaveLength(3 + 9 * 4);
    const byName = new Map(tiny.tensors.map((t) => [t.name, t]));
    expect(byName.get('token_embd.weight')?.dims).toEqual([64, 32000]);
    expect(byName.get('output.weight')?.dims).toEqual([64, 32000]);
    expect(byName.get('blk.3.attn_k.weight')?.dims).toEqual([64, 32]);
    expect(byName.get('blk.0.ffn_down.weight')?.dims).toEqual([128, 64]);
    expect(byName.get('blk.0.ffn_up.weight')?.dims).toEqual([64, 128]);
    expect(byName.get('output_norm.weight')).toMatchObject({ dims: [64], type: GgmlType.F32, typeName: 'F32', byteSize: 256 });
    expect(byName.get('blk.1.attn_q.weight')).toMatchObject({ type: GgmlType.F16, typeName: 'F16', byteSize: 64 * 64 * 2 });

    expect(tiny.alignment).toBe(32);
    expect(tiny.dataOffset % 32).toBe(0);
    let expected = 0;
    for (const t of tiny.tensors) {
      expect(t.offset, t.name).toBe(expected);
      expect(t.fileOffset).toBe(tiny.dataOffset + t.offset);
      expect(t.byteSize).toBe(ggmlTensorByteSize(t.type, t.dims));
      expected += alignUp(t.byteSize, 32);
    }
    expect(tiny.fileSize).toBe(tiny.dataOffset + expected);
  });

  it('fills norms with 1.0 and matrices with small uniform halves', () => {
    const norm = tiny.tensors.find((t) => t.name === 'blk.2.ffn_norm.weight')!;
    const f32 = new Float32Array(
      tinyBytes.buffer.slice(tinyBytes.byteOffset + norm.fileOffset, tinyBytes.byteOffset + norm.fileOffset + norm.byteSize),
    );
    expect([...f32].every((x) => x === 1)).toBe(true);

    const q = tiny.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
    const values = Array.from({ length: q.nElements }, (_, i) => halfToFloat(tinyBytes.readUInt16LE(q.fileOffset + 2 * i)));
    expect(values.every((x) => Number.isFinite(x) && Math.abs(x) <= 0.0501)).toBe(true);
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const rms = Math.sqrt(values.reduce((a, b) => a + b * b, 0) / values.length);
    expect(Math.abs(mean)).toBeLessThan(0.003);
    expect(rms).toBeGreaterThan(0.025); // uniform(±0.05) has rms 0.0289
    expect(rms).toBeLessThan(0.032);
    // Different tensors draw from different streams.
    const k = tiny.tensors.find((t) => t.name === 'blk.0.attn_k.weight')!;
    expect(tinyBytes.subarray(q.fileOffset, q.fileOffset + 64).equals(tinyBytes.subarray(k.fileOffset, k.fileOffset + 64))).toBe(false);
  });

  it('is deterministic in the seed', async () => {
    const again = join(dir, 'again.gguf');
    const other = join(dir, 'other.gguf');
    await writeSyntheticModel({ path: again, shape: shapes.tiny, vocabPath, seed: 7, name: 'tiny-test' });
    await writeSyntheticModel({ path: other, shape: shapes.tiny, vocabPath, seed: 8, name: 'tiny-test' });
    const ref = await sha256(tinyPath);
    expect(await sha256(again)).toBe(ref);
    expect(await sha256(other)).not.toBe(ref);
    expect((await stat(other)).size).toBe(tiny.fileSize);
  });

  it('keeps the bytes of the existing shapes, which caches rely on (a change must bump GENERATOR_VERSION)', async () => {
    // With llama.cpp's llama-spm vocab at our pin; a vendor upgrade that changes it changes these too.
    const pinned = {
      tiny: '6e6fef8699652851b4a2229a1098536fb0456d9ef24829652270d176bbe4cd7d',
      tinySwa: 'e65fd30f56b3ca659eb808f8040013ce6403534bcba21691a58e388e2a74c991',
      tinyMamba: '47a3ead15f17f58fe88966e907515b116ca2d1378c839c5bf35a7c224eade4ea',
    } as const;
    expect(GENERATOR_VERSION).toBe(1);
    for (const [name, sum] of Object.entries(pinned) as [keyof typeof pinned, string][]) {
      const path = join(dir, `pinned-${name}.gguf`);
      await writeSyntheticModel({ path, shape: shapes[name], vocabPath, seed: 1 });
      expect(await sha256(path), name).toBe(sum);
    }
  });

  it('caches ensureSyntheticModel results', async () => {
    const cacheDir = join(dir, 'cache');
    const [a, b] = await Promise.all([
      ensureSyntheticModel({ cacheDir, shape: 'tiny', vocabPath, seed: 3 }),
      ensureSyntheticModel({ cacheDir, shape: 'tiny', vocabPath, seed: 3 }),
    ]);
    expect(a).toBe(b);
    expect(a).toMatch(/tiny-[0-9a-f]+-s3-f16\.gguf$/);
    const { mtimeMs } = await stat(a);
    expect(await ensureSyntheticModel({ cacheDir, shape: 'tiny', vocabPath, seed: 3 })).toBe(a);
    expect((await stat(a)).mtimeMs).toBe(mtimeMs);
    expect(await ensureSyntheticModel({ cacheDir, shape: 'tiny', vocabPath, seed: 4 })).not.toBe(a);
    expect(await ensureSyntheticModel({ cacheDir, shape: { ...shapes.tiny, nLayer: 2 }, vocabPath, seed: 3 })).not.toBe(a);
    expect((await readGguf(a)).tensors).toHaveLength(39);
  });
});

describe('GgufWriter', () => {
  it('round-trips every value type', async () => {
    const path = join(dir, 'kv.gguf');
    const w = new GgufWriter()
      .addKv('s', 'héllo')
      .addKv('b', false)
      .addKv('u8', gguf.u8(255))
      .addKv('i8', gguf.i8(-128))
      .addKv('u16', gguf.u16(65535))
      .addKv('i16', gguf.i16(-32768))
      .addKv('u32', 4294967295, 'u32')
      .addKv('i32', gguf.i32(-5))
      .addKv('f32', gguf.f32(0.5))
      .addKv('f64', gguf.f64(Math.PI))
      .addKv('u64', gguf.u64(2n ** 64n - 1n))
      .addKv('i64', gguf.i64(-(2n ** 63n)))
      .addKv('as', ['a', '', 'ü'])
      .addKv('ab', [true, false])
      .addKv('ai32', [1, -2, 3], 'i32')
      .addKv('af32', gguf.array('f32', [1.5, -2]))
      .addKv('au64', gguf.array('u64', [1n, 2n]))
      .addKv('empty', gguf.array('u8', []));
    const t = w.addTensor('q', [256, 2], GgmlType.Q4_K);
    expect(t.byteSize).toBe(2 * 144);
    w.addTensor('v', [3], GgmlType.F32, 12);
    await w.write(path, async (i, info, out) => out.write(new Uint8Array(info.byteSize).fill(i + 1)));
    const f = await readGguf(path);
    const get = (k: string) => f.metadata.get(k);
    expect(get('s')).toEqual({ type: 'string', value: 'héllo' });
    expect(get('b')).toEqual({ type: 'bool', value: false });
    expect(get('u8')?.value).toBe(255);
    expect(get('i8')?.value).toBe(-128);
    expect(get('u16')?.value).toBe(65535);
    expect(get('i16')?.value).toBe(-32768);
    expect(get('u32')).toEqual({ type: 'u32', value: 4294967295 });
    expect(get('i32')?.value).toBe(-5);
    expect(get('f32')).toEqual({ type: 'f32', value: 0.5 });
    expect(get('f64')?.value).toBe(Math.PI);
    expect(get('u64')?.value).toBe(2n ** 64n - 1n);
    expect(get('i64')?.value).toBe(-(2n ** 63n));
    expect(get('as')).toEqual({ type: 'array', itemType: 'string', value: ['a', '', 'ü'] });
    expect(get('ab')).toEqual({ type: 'array', itemType: 'bool', value: [true, false] });
    expect(get('ai32')).toEqual({ type: 'array', itemType: 'i32', value: new Int32Array([1, -2, 3]) });
    expect(get('af32')).toEqual({ type: 'array', itemType: 'f32', value: new Float32Array([1.5, -2]) });
    expect(get('au64')).toEqual({ type: 'array', itemType: 'u64', value: new BigUint64Array([1n, 2n]) });
    expect(get('empty')).toEqual({ type: 'array', itemType: 'u8', value: new Uint8Array() });
    expect(f.tensors.map((x) => [x.name, x.typeName, x.byteSize, x.offset])).toEqual([
      ['q', 'Q4_K', 288, 0],
      ['v', 'F32', 12, 288],
    ]);
    const bytes = await readFile(path);
    expect(bytes[f.tensors[1]!.fileOffset]).toBe(2);
    expect(bytes.length).toBe(f.dataOffset + 288 + 32);
  });

  it('rejects ambiguous or out-of-range values and short tensor data', async () => {
    expect(() => new GgufWriter().addKv('n', 3)).toThrow(TypeError);
    expect(() => new GgufWriter().addKv('n', 256, 'u8')).toThrow(RangeError);
    expect(() => new GgufWriter().addKv('n', 1.5, 'i32')).toThrow(RangeError);
    expect(() => new GgufWriter().addTensor('x', [3], GgmlType.Q8_0)).toThrow(RangeError);
    expect(() => new GgufWriter().addTensor('x', [32], GgmlType.Q8_0, 99)).toThrow(RangeError);
    const w = new GgufWriter();
    w.addTensor('x', [8], GgmlType.F32);
    const path = join(dir, 'short.gguf');
    await expect(w.write(path, async (_i, _t, out) => out.write(new Uint8Array(4)))).rejects.toThrow(/4 bytes were written, expected 32/);
    await expect(stat(path)).rejects.toThrow();
  });

  it('names ggml types and sizes quantized tensors', () => {
    expect(ggmlTypeName(GgmlType.F16)).toBe('F16');
    expect(ggmlTypeName(GgmlType.Q4_K)).toBe('Q4_K');
    expect(ggmlTypeName(GgmlType.MXFP4)).toBe('MXFP4');
    expect(ggmlTypeName(4)).toBe('UNKNOWN(4)');
    expect(ggmlTensorByteSize(GgmlType.Q8_0, [64, 3])).toBe(2 * 3 * 34);
    expect(ggmlTensorByteSize(GgmlType.Q6_K, [512])).toBe(2 * 210);
    expect(ggmlTensorByteSize(GgmlType.TQ1_0, [256])).toBe(54);
    expect(ggmlTensorByteSize(GgmlType.BF16, [5, 5])).toBe(50);
  });

  it('converts floats to half bits with correct rounding', () => {
    expect(floatToHalfBits(1)).toBe(0x3c00);
    expect(floatToHalfBits(-2)).toBe(0xc000);
    expect(floatToHalfBits(65504)).toBe(0x7bff);
    expect(floatToHalfBits(1e6)).toBe(0x7c00);
    expect(floatToHalfBits(2 ** -24)).toBe(1);
    expect(floatToHalfBits(1 + 2 ** -11)).toBe(0x3c00); // tie rounds to even
    expect(floatToHalfBits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(halfToFloat(floatToHalfBits(0.0123))).toBeCloseTo(0.0123, 5);
  });
});

describe('readGguf rejects malformed files', () => {
  let n = 0;
  async function expectInvalid(bytes: Uint8Array, message: RegExp, reason?: string): Promise<void> {
    const path = join(dir, `bad-${n++}.gguf`);
    await writeFile(path, bytes);
    const error = await readGguf(path).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ModelFileError);
    const e = error as ModelFileError;
    expect(e.code).toBe('ERR_MODEL_INVALID');
    expect(e.code).toBe(ErrorCode.MODEL_INVALID);
    expect(e.message).toMatch(message);
    expect(e.message).toContain(path);
    expect(e.remedy).toBeTruthy();
    expect(e.details).toMatchObject({ path });
    if (reason) expect(e.details?.reason).toBe(reason);
  }
  const patched = (edit: (b: Buffer) => void): Buffer => {
    const b = Buffer.from(tinyBytes);
    edit(b);
    return b;
  };
  const layout = () => tiny.layout!;
  const tensorAt = (name: string) => layout().tensors.find((t) => t.name === name)!;

  it('empty file', () => expectInvalid(new Uint8Array(), /file is empty/, 'empty'));
  it('random bytes', () => expectInvalid(randomBytes(4096), /not a GGUF file \(magic is 0x/, 'bad-magic'));
  it('a file shorter than the magic', () => expectInvalid(Buffer.from('GG'), /not a GGUF file/, 'bad-magic'));
  it('wrong magic', () =>
    expectInvalid(
      patched((b) => b.write('GGML', 0)),
      /magic is 0x4c4d4747/,
      'bad-magic',
    ));
  it('unsupported version', async () => {
    await expectInvalid(
      patched((b) => b.writeUInt32LE(1, 4)),
      /unsupported GGUF version 1/,
      'bad-version',
    );
    await expectInvalid(
      patched((b) => b.writeUInt32LE(99, 4)),
      /unsupported GGUF version 99/,
      'bad-version',
    );
  });
  it('header cut short', () => expectInvalid(tinyBytes.subarray(0, 12), /truncated/, 'truncated'));
  it('truncated in the middle of the metadata', () => {
    const tokens = layout().kvs.find((k) => k.key === 'tokenizer.ggml.tokens')!;
    return expectInvalid(
      tinyBytes.subarray(0, tokens.valueOffset + 5000),
      /truncated: metadata extends to at least byte \d+ but the file has \d+ bytes/,
      'truncated',
    );
  });
  it('truncated in the tensor table', () =>
    expectInvalid(tinyBytes.subarray(0, tensorAt('blk.2.ffn_up.weight').typeOffset + 2), /truncated/, 'truncated'));
  it('truncated tensor data', () =>
    expectInvalid(
      tinyBytes.subarray(0, tiny.fileSize - 100),
      /tensor 'output\.weight' data \[\d+, \d+\) lies outside the file \(size \d+\)/,
      'tensor-bounds',
    ));
  it('implausible tensor count', () =>
    expectInvalid(
      patched((b) => b.writeBigInt64LE(9_000_000_000_000_000_000n, 8)),
      /tensor count 9000000000000000000 is not plausible/,
      'implausible-count',
    ));
  it('negative metadata count', () =>
    expectInvalid(
      patched((b) => b.writeBigInt64LE(-1n, 16)),
      /metadata key count -1 is not plausible/,
      'implausible-count',
    ));
  it('corrupted string length', async () => {
    const arch = layout().kvs[0]!;
    await expectInvalid(
      patched((b) => b.writeBigUInt64LE(2n ** 62n, arch.keyOffset)),
      /string length 4611686018427387904 at byte 24 .* runs past the end of the file/,
      'string-length',
    );
    const tokens = layout().kvs.find((k) => k.key === 'tokenizer.ggml.tokens')!;
    // The first token string starts after the item type (4) and the count (8).
    await expectInvalid(
      patched((b) => b.writeBigUInt64LE(BigInt(tiny.fileSize), tokens.valueOffset + 12)),
      /runs past the end of the file/,
      'string-length',
    );
  });
  it('corrupted array length', () => {
    const tokens = layout().kvs.find((k) => k.key === 'tokenizer.ggml.tokens')!;
    return expectInvalid(
      patched((b) => b.writeBigUInt64LE(2n ** 40n, tokens.valueOffset + 4)),
      /array 'tokenizer\.ggml\.tokens' claims 1099511627776 items, more than the limit/,
      'array-length',
    );
  });
  it('array length that runs past the end of the file', () => {
    const tokens = layout().kvs.find((k) => k.key === 'tokenizer.ggml.tokens')!;
    return expectInvalid(
      patched((b) => b.writeBigUInt64LE(5_000_000n, tokens.valueOffset + 4)),
      /truncated: .*claims 5000000 items/,
      'truncated',
    );
  });
  it('invalid value type', async () => {
    const kv = layout().kvs.find((k) => k.key === 'llama.block_count')!;
    await expectInvalid(
      patched((b) => b.writeInt32LE(13, kv.typeOffset)),
      /'llama\.block_count' has invalid value type 13/,
      'value-type',
    );
    const tokens = layout().kvs.find((k) => k.key === 'tokenizer.ggml.tokens')!;
    await expectInvalid(
      patched((b) => b.writeInt32LE(9, tokens.valueOffset)),
      /nested arrays/,
      'value-type',
    );
  });
  it('duplicate metadata key', () => {
    const eos = layout().kvs.find((k) => k.key === 'tokenizer.ggml.eos_token_id')!;
    return expectInvalid(
      patched((b) => b.write('tokenizer.ggml.bos_token_id', eos.keyOffset + 8)),
      /metadata key 'tokenizer\.ggml\.bos_token_id' appears twice/,
      'duplicate-key',
    );
  });
  it('too many dimensions', () =>
    expectInvalid(
      patched((b) => b.writeUInt32LE(7, tensorAt('blk.0.attn_q.weight').nDimsOffset)),
      /'blk\.0\.attn_q\.weight' has 7 dimensions/,
      'tensor-dims',
    ));
  it('zero or negative dimension', async () => {
    const t = tensorAt('blk.1.ffn_gate.weight');
    await expectInvalid(
      patched((b) => b.writeBigInt64LE(0n, t.dimsOffset + 8)),
      /dimension 1 is 0/,
      'tensor-dims',
    );
    await expectInvalid(
      patched((b) => b.writeBigInt64LE(-64n, t.dimsOffset)),
      /dimension 0 is -64/,
      'tensor-dims',
    );
  });
  it('unknown or removed ggml type', async () => {
    const t = tensorAt('blk.0.attn_v.weight');
    await expectInvalid(
      patched((b) => b.writeInt32LE(99, t.typeOffset)),
      /'blk\.0\.attn_v\.weight' has unknown or removed ggml type id 99/,
      'tensor-type',
    );
    await expectInvalid(
      patched((b) => b.writeInt32LE(4, t.typeOffset)),
      /ggml type id 4/,
      'tensor-type',
    );
    await expectInvalid(
      patched((b) => b.writeInt32LE(-1, t.typeOffset)),
      /ggml type id -1/,
      'tensor-type',
    );
  });
  it('row size not a multiple of the block size', () =>
    expectInvalid(
      patched((b) => b.writeInt32LE(GgmlType.Q4_K, tensorAt('blk.0.attn_v.weight').typeOffset)),
      /not a multiple of the block size 256/,
      'tensor-dims',
    ));
  it('duplicate tensor name', () => {
    const k = tensorAt('blk.0.attn_k.weight');
    return expectInvalid(
      patched((b) => b.write('blk.0.attn_q.weight', k.nameOffset + 8)),
      /duplicate tensor name 'blk\.0\.attn_q\.weight'/,
      'duplicate-tensor',
    );
  });
  it('tensor offset beyond the file', () =>
    expectInvalid(
      patched((b) => b.writeBigUInt64LE(BigInt(tiny.fileSize) * 64n, tensorAt('blk.3.ffn_up.weight').offsetOffset)),
      /lies outside the file/,
      'tensor-bounds',
    ));
  it('tensor data reaching past the end', () => {
    const t = tiny.tensors.find((x) => x.name === 'blk.3.ffn_up.weight')!;
    const offset = BigInt(alignUp(tiny.fileSize - tiny.dataOffset - t.byteSize + 32, 32));
    return expectInvalid(
      patched((b) => b.writeBigUInt64LE(offset, tensorAt(t.name).offsetOffset)),
      /tensor 'blk\.3\.ffn_up\.weight' data \[\d+, \d+\) lies outside the file/,
      'tensor-bounds',
    );
  });
  it('misaligned tensor offset', () =>
    expectInvalid(
      patched((b) => b.writeBigUInt64LE(BigInt(tiny.tensors[2]!.offset + 2), tensorAt(tiny.tensors[2]!.name).offsetOffset)),
      /not a multiple of the alignment 32/,
      'tensor-offset',
    ));
  it('overlapping tensors', () =>
    expectInvalid(
      patched((b) => b.writeBigUInt64LE(0n, tensorAt(tiny.tensors[5]!.name).offsetOffset)),
      /has data offset 0 but \d+ was expected/,
      'tensor-offset',
    ));
  it('a bad general.alignment', async () => {
    const path = join(dir, 'align.gguf');
    await new GgufWriter().addKv('general.alignment', gguf.u32(32)).write(path, async () => {});
    const kv = (await readGguf(path, { layout: true })).layout!.kvs[0]!;
    const bytes = await readFile(path);
    bytes.writeUInt32LE(48, kv.valueOffset);
    await expectInvalid(bytes, /general\.alignment 48 is not a power of 2/, 'bad-alignment');
  });
  it('does not read huge arrays beyond maxArrayItems', async () => {
    const error = await readGguf(tinyPath, { maxArrayItems: 1000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelFileError);
    expect((error as ModelFileError).message).toMatch(/claims 32000 items, more than the limit of 1000/);
  });
});
