/**
 * Mutant GGUF files for the loader fuzzers. A mutant is a pure function of (seed, index, kind):
 * the metadata fuzzer first walks a fixed list of single-key edits (every key the llama
 * architecture and its tokenizer read, each with 0, -1, 1, a huge value, the wrong type, a wrong
 * array length and the key missing), then random combinations of them; the byte fuzzer flips
 * bytes in the header, metadata, tensor-info and data regions, or truncates the file.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { readGguf, type GgufFile, type GgufValue } from '../../lib/gguf/reader.js';
import { ensureSyntheticModel } from '../../lib/gguf/synthetic-model.js';
import { GgufWriter, gguf } from '../../lib/gguf/writer.js';
import { mutantRng, type Rng } from './prng.js';

export type FuzzKind = 'metadata' | 'bytes';

/** A base model the mutants are made from: the tiny shape with an SPM or a BPE tokenizer. */
export interface FuzzBase {
  name: 'spm' | 'bpe';
  path: string;
  file: GgufFile;
  bytes: Buffer;
  nVocab: number;
  nLayer: number;
}

export interface Mutant {
  kind: FuzzKind;
  seed: number;
  index: number;
  base: FuzzBase['name'];
  /** What was changed, in words a reader can reproduce by hand. */
  description: string;
  bytes: Buffer;
}

const BASE_VOCABS = { spm: 'ggml-vocab-llama-spm.gguf', bpe: 'ggml-vocab-gpt-2.gguf' } as const;

export async function loadBases(options: { cacheDir: string; vocabDir: string }): Promise<FuzzBase[]> {
  await mkdir(options.cacheDir, { recursive: true });
  const bases: FuzzBase[] = [];
  for (const name of ['spm', 'bpe'] as const) {
    const path = await ensureSyntheticModel({
      cacheDir: options.cacheDir,
      shape: 'tiny',
      vocabPath: `${options.vocabDir}/${BASE_VOCABS[name]}`,
      label: `fuzz-${name}`,
    });
    const file = await readGguf(path, { layout: true });
    const tokens = file.metadata.get('tokenizer.ggml.tokens');
    const nLayer = file.metadata.get('llama.block_count');
    bases.push({
      name,
      path,
      file,
      bytes: await readFile(path),
      nVocab: tokens?.type === 'array' ? tokens.value.length : 0,
      nLayer: nLayer?.type === 'u32' ? nLayer.value : 0,
    });
  }
  return bases;
}

/** One metadata edit: a new value for a key, or null to remove it. */
interface Edit {
  key: string;
  value: GgufValue | null;
  label: string;
}

const U32_MAX = 0xffffffff;
const I32_MAX = 0x7fffffff;

/** Hyperparameters read as u32 by load_hparams and the llama arch (all optional ones included). */
const U32_KEYS = [
  'llama.context_length',
  'llama.embedding_length',
  'llama.block_count',
  'llama.feed_forward_length',
  'llama.attention.head_count',
  'llama.attention.head_count_kv',
  'llama.rope.dimension_count',
  'llama.vocab_size',
  'llama.expert_count',
  'llama.expert_used_count',
  'llama.expert_group_count',
  'llama.expert_group_used_count',
  'llama.nextn_predict_layers',
  'llama.attention.key_length',
  'llama.attention.value_length',
  'llama.attention.key_length_swa',
  'llama.attention.value_length_swa',
  'llama.rope.dimension_count_swa',
  'llama.rope.scaling.original_context_length',
  'llama.embedding_length_out',
  'llama.pooling_type',
  'llama.attention.sliding_window',
  'general.file_type',
  'general.quantization_version',
];
/** Keys llama.cpp also accepts as one value per layer (get_key_or_arr). */
const PER_LAYER_KEYS = new Set([
  'llama.feed_forward_length',
  'llama.attention.head_count',
  'llama.attention.head_count_kv',
  'llama.expert_used_count',
]);
const F32_KEYS = [
  'llama.rope.freq_base',
  'llama.attention.layer_norm_rms_epsilon',
  'llama.rope.scaling.factor',
  'llama.rope.scale_linear',
  'llama.rope.scaling.attn_factor',
  'llama.rope.scaling.alpha',
  'llama.attention.layer_norm_epsilon',
];
const BOOL_KEYS = [
  'llama.attention.causal',
  'llama.rope.scaling.finetuned',
  'tokenizer.ggml.add_bos_token',
  'tokenizer.ggml.add_eos_token',
  'tokenizer.ggml.add_sep_token',
  'tokenizer.ggml.add_space_prefix',
  'tokenizer.ggml.remove_extra_whitespaces',
];
const TOKEN_ID_KEYS = [
  'bos',
  'eos',
  'unknown',
  'seperator',
  'padding',
  'cls',
  'mask',
  'eot',
  'eom',
  'fim_pre',
  'fim_suf',
  'fim_mid',
  'fim_pad',
  'fim_rep',
  'fim_sep',
  'prefix',
  'suffix',
  'middle',
].map((name) => `tokenizer.ggml.${name}_token_id`);
const STRING_VALUES: Record<string, string[]> = {
  'general.architecture': ['', 'llama '],
  'tokenizer.ggml.model': ['', 'bogus', 'llama', 'gpt2', 'bert', 't5', 'rwkv', 'plamo2', 'none', 'no_vocab'],
  'tokenizer.ggml.pre': ['', 'bogus', 'default', 'llama3', 'qwen2', 'gpt-2', 'deepseek-llm', 'tekken'],
  'llama.rope.scaling.type': ['', 'bogus', 'none', 'linear', 'yarn', 'longrope'],
  'tokenizer.chat_template': ['', '{{', '{% for m in messages %}{{ m.content }}{% endfor %}'],
};

function scalarEdits(key: string, nLayer: number): Edit[] {
  const edits: Edit[] = [
    { key, value: gguf.u32(0), label: '0' },
    { key, value: gguf.u32(1), label: '1' },
    { key, value: gguf.u32(U32_MAX), label: '-1 (as u32)' },
    { key, value: gguf.u32(I32_MAX), label: 'huge (2^31-1)' },
    { key, value: gguf.u32(65536), label: '65536' },
    { key, value: gguf.i32(-1), label: 'wrong type (i32 -1)' },
    { key, value: gguf.string('1'), label: 'wrong type (string)' },
    { key, value: gguf.f32(1.5), label: 'wrong type (f32)' },
    { key, value: null, label: 'missing' },
  ];
  if (PER_LAYER_KEYS.has(key)) {
    edits.push(
      { key, value: gguf.array('u32', new Array(nLayer + 1).fill(4)), label: `array of ${nLayer + 1} (n_layer + 1)` },
      { key, value: gguf.array('u32', new Array(nLayer).fill(0)), label: `array of ${nLayer} zeros` },
      { key, value: gguf.array('i32', new Array(nLayer).fill(-1)), label: `i32 array of ${nLayer} x -1` },
      {
        key,
        value: gguf.array(
          'u32',
          Array.from({ length: nLayer }, (_, i) => (i === nLayer - 1 ? I32_MAX : 4)),
        ),
        label: 'array, last layer huge',
      },
    );
  }
  return edits;
}

function floatEdits(key: string): Edit[] {
  return [
    ...[0, -1, 1, 1e38, 1e-30, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY].map((v) => ({
      key,
      value: gguf.f32(v),
      label: String(v),
    })),
    { key, value: gguf.u32(1), label: 'wrong type (u32)' },
    { key, value: null, label: 'missing' },
  ];
}

function tokenIdEdits(key: string, nVocab: number): Edit[] {
  return [
    ...[0, 1, nVocab - 1, nVocab, nVocab + 1, U32_MAX, I32_MAX].map((v) => ({ key, value: gguf.u32(v), label: String(v) })),
    { key, value: gguf.i32(-1), label: 'wrong type (i32 -1)' },
    { key, value: null, label: 'missing' },
  ];
}

function arrayEdits(base: FuzzBase): Edit[] {
  const n = base.nVocab;
  const meta = base.file.metadata;
  const get = (key: string) => meta.get(key);
  const edits: Edit[] = [];
  const tokens = get('tokenizer.ggml.tokens');
  if (tokens?.type === 'array' && tokens.itemType === 'string') {
    const key = 'tokenizer.ggml.tokens';
    const v = tokens.value;
    edits.push(
      { key, value: gguf.array('string', v.slice(0, n - 1)), label: `length n_vocab - 1 (${n - 1})` },
      { key, value: gguf.array('string', [...v, 'extra']), label: `length n_vocab + 1 (${n + 1})` },
      { key, value: gguf.array('string', v.slice(0, 1)), label: 'length 1' },
      { key, value: gguf.array('string', []), label: 'empty' },
      { key, value: gguf.array('i32', new Array(n).fill(0)), label: 'wrong item type (i32)' },
      {
        key,
        value: gguf.array(
          'string',
          v.map(() => ''),
        ),
        label: 'every token empty',
      },
      {
        key,
        value: gguf.array(
          'string',
          v.map((t, i) => (i < 300 ? v[0]! : t)),
        ),
        label: 'first 300 tokens identical',
      },
      { key, value: gguf.string('a'), label: 'wrong type (string scalar)' },
      { key, value: null, label: 'missing' },
    );
  }
  const scores = get('tokenizer.ggml.scores');
  {
    const key = 'tokenizer.ggml.scores';
    edits.push(
      { key, value: gguf.array('f32', new Array(n - 1).fill(0)), label: `length n_vocab - 1` },
      { key, value: gguf.array('f32', new Array(n + 1).fill(0)), label: `length n_vocab + 1` },
      { key, value: gguf.array('f32', []), label: 'empty' },
      { key, value: gguf.array('f32', new Array(n).fill(Number.NaN)), label: 'all NaN' },
      { key, value: gguf.array('f32', new Array(n).fill(Number.NEGATIVE_INFINITY)), label: 'all -inf' },
      { key, value: gguf.array('string', new Array(n).fill('0')), label: 'wrong item type (string)' },
      { key, value: gguf.array('u32', new Array(n).fill(1)), label: 'wrong item type (u32)' },
      { key, value: scores ? null : gguf.array('f32', new Array(n).fill(0)), label: scores ? 'missing' : 'added' },
    );
  }
  {
    const key = 'tokenizer.ggml.token_type';
    edits.push(
      { key, value: gguf.array('i32', new Array(n - 1).fill(1)), label: 'length n_vocab - 1' },
      { key, value: gguf.array('i32', new Array(n + 1).fill(1)), label: 'length n_vocab + 1' },
      { key, value: gguf.array('i32', []), label: 'empty' },
      { key, value: gguf.array('i32', new Array(n).fill(0)), label: 'all 0 (undefined)' },
      { key, value: gguf.array('i32', new Array(n).fill(99)), label: 'all 99' },
      { key, value: gguf.array('i32', new Array(n).fill(-1)), label: 'all -1' },
      { key, value: gguf.array('i32', new Array(n).fill(3)), label: 'all control' },
      { key, value: gguf.array('i32', new Array(n).fill(6)), label: 'all byte' },
      { key, value: gguf.array('i32', new Array(n).fill(4)), label: 'all user-defined' },
      { key, value: gguf.array('f32', new Array(n).fill(1)), label: 'wrong item type (f32)' },
      { key, value: null, label: 'missing' },
    );
  }
  {
    const key = 'tokenizer.ggml.merges';
    const merges = get(key);
    const list = merges?.type === 'array' && merges.itemType === 'string' ? merges.value : ['a b'];
    edits.push(
      { key, value: gguf.array('string', []), label: 'empty' },
      {
        key,
        value: gguf.array(
          'string',
          list.map((m) => m.replace(' ', '')),
        ),
        label: 'no space in any merge',
      },
      {
        key,
        value: gguf.array(
          'string',
          list.map(() => ' '),
        ),
        label: 'every merge a lone space',
      },
      { key, value: gguf.array('string', [...list, 'zzzzqqq notatoken']), label: 'a merge of unknown tokens' },
      { key, value: gguf.array('i32', [1, 2, 3]), label: 'wrong item type (i32)' },
      { key, value: merges ? null : gguf.array('string', ['a b']), label: merges ? 'missing' : 'added' },
    );
  }
  {
    const key = 'tokenizer.ggml.precompiled_charsmap';
    edits.push(
      { key, value: gguf.array('u8', [1, 2, 3]), label: '3 bytes' },
      { key, value: gguf.array('u8', [0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4]), label: 'xcda size larger than the blob' },
      { key, value: gguf.array('u8', []), label: 'empty' },
    );
  }
  {
    const key = 'llama.rope.dimension_sections';
    edits.push({ key, value: gguf.array('i32', [100, 100, 100, 100]), label: 'sections larger than n_rot' });
  }
  edits.push({ key: 'tokenizer.ggml.suppress_tokens', value: gguf.array('i32', [-1, n, I32_MAX]), label: 'ids out of range' });
  return edits;
}

function alignmentEdits(): Edit[] {
  const key = 'general.alignment';
  return [
    { key, value: gguf.u32(1), label: '1' },
    { key, value: gguf.u32(64), label: '64' },
    { key, value: gguf.u32(0), label: '0' },
    { key, value: gguf.u32(3), label: '3' },
    { key, value: gguf.u32(U32_MAX), label: '-1 (as u32)' },
    { key, value: gguf.i32(32), label: 'wrong type (i32)' },
    { key, value: null, label: 'missing' },
  ];
}

/** Every single-key edit of the metadata fuzzer, in a fixed order (the first mutants walk it). */
export function singleEdits(base: FuzzBase): Edit[] {
  const edits: Edit[] = [];
  for (const key of U32_KEYS) edits.push(...scalarEdits(key, base.nLayer));
  for (const key of F32_KEYS) edits.push(...floatEdits(key));
  for (const key of TOKEN_ID_KEYS) edits.push(...tokenIdEdits(key, base.nVocab));
  for (const key of BOOL_KEYS) {
    edits.push(
      { key, value: gguf.u8(1), label: 'wrong type (u8)' },
      { key, value: gguf.bool(true), label: 'true' },
      { key, value: gguf.bool(false), label: 'false' },
    );
  }
  for (const [key, values] of Object.entries(STRING_VALUES)) {
    for (const v of values) edits.push({ key, value: gguf.string(v), label: JSON.stringify(v) });
    edits.push({ key, value: gguf.u32(1), label: 'wrong type (u32)' }, { key, value: null, label: 'missing' });
  }
  edits.push(...arrayEdits(base), ...alignmentEdits());
  return edits;
}

/** Header bytes with the edits applied; the tensor table and data are the base's. */
function applyEdits(base: FuzzBase, edits: Edit[]): Buffer {
  const byKey = new Map(edits.map((e) => [e.key, e]));
  const writer = new GgufWriter();
  // general.alignment values the writer refuses (0, 3, a wrong type) are patched in afterwards.
  let patchAlignment: Edit | undefined;
  const put = (key: string, value: GgufValue) => {
    if (key === 'general.alignment' && !(value.type === 'u32' && value.value > 0 && (value.value & (value.value - 1)) === 0)) {
      patchAlignment = { key, value, label: '' };
      writer.addKv(key, gguf.u32(32));
      return;
    }
    writer.addKv(key, value);
  };
  for (const [key, value] of base.file.metadata) {
    const edit = byKey.get(key);
    if (!edit) put(key, value);
    else if (edit.value) put(key, edit.value);
  }
  for (const edit of edits) if (!base.file.metadata.has(edit.key) && edit.value) put(edit.key, edit.value);
  for (const t of base.file.tensors) writer.addTensor(t.name, t.dims, t.type);
  const header = writer.header();
  if (patchAlignment?.value) {
    const needle = Buffer.concat([Buffer.alloc(8), Buffer.from('general.alignment')]);
    needle.writeBigUInt64LE(17n, 0);
    const at = header.indexOf(needle) + needle.length;
    const value = patchAlignment.value;
    header.writeInt32LE(value.type === 'i32' ? 5 : 4, at);
    header.writeUInt32LE(Number(value.value) >>> 0, at + 4);
  }
  // Every tensor of the tiny shape is a multiple of 64 bytes, so the data section needs no
  // re-padding for the alignments used here (1, 32, 64; anything else is refused before data).
  return Buffer.concat([header, base.bytes.subarray(base.file.dataOffset)]);
}

const editCache = new WeakMap<FuzzBase, Edit[]>();

function cachedEdits(base: FuzzBase): Edit[] {
  let edits = editCache.get(base);
  if (!edits) editCache.set(base, (edits = singleEdits(base)));
  return edits;
}

function metadataMutant(bases: FuzzBase[], index: number, rng: Rng): Omit<Mutant, 'kind' | 'seed' | 'index'> {
  const perBase = bases.map(cachedEdits);
  const systematic = perBase.reduce((n, list) => n + list.length, 0);
  let base: FuzzBase;
  let edits: Edit[];
  if (index < systematic) {
    let i = index;
    let b = 0;
    while (i >= perBase[b]!.length) i -= perBase[b++]!.length;
    base = bases[b]!;
    edits = [perBase[b]![i]!];
  } else {
    const b = rng.int(bases.length);
    base = bases[b]!;
    const pool = perBase[b]!;
    const count = 2 + rng.int(3);
    const chosen = new Map<string, Edit>();
    while (chosen.size < count) {
      const edit = rng.pick(pool);
      chosen.set(edit.key, edit);
    }
    edits = [...chosen.values()];
  }
  return {
    base: base.name,
    description: edits.map((e) => `${e.key} = ${e.label}`).join('; '),
    bytes: applyEdits(base, edits),
  };
}

interface Region {
  name: string;
  start: number;
  end: number;
}

function regions(base: FuzzBase): Region[] {
  const layout = base.file.layout!;
  const metaStart = layout.kvs[0]?.keyOffset ?? 24;
  const tableStart = layout.tensors[0]?.nameOffset ?? base.file.dataOffset;
  return [
    { name: 'header', start: 0, end: metaStart },
    { name: 'metadata', start: metaStart, end: tableStart },
    { name: 'tensor-info', start: tableStart, end: base.file.dataOffset },
    { name: 'data', start: base.file.dataOffset, end: base.bytes.length },
  ];
}

/** Offsets of the structural fields (lengths, types, counts, dims, offsets), where a flip matters most. */
function structuralOffsets(base: FuzzBase): { name: string; at: number; size: number }[] {
  const layout = base.file.layout!;
  const out: { name: string; at: number; size: number }[] = [
    { name: 'header', at: 8, size: 8 },
    { name: 'header', at: 16, size: 8 },
  ];
  for (const kv of layout.kvs) {
    out.push(
      { name: 'metadata', at: kv.keyOffset, size: 8 },
      { name: 'metadata', at: kv.typeOffset, size: 4 },
      { name: 'metadata', at: kv.valueOffset, size: 8 },
    );
  }
  for (const t of layout.tensors) {
    out.push(
      { name: 'tensor-info', at: t.nameOffset, size: 8 },
      { name: 'tensor-info', at: t.nDimsOffset, size: 4 },
      { name: 'tensor-info', at: t.dimsOffset, size: 8 },
      { name: 'tensor-info', at: t.typeOffset, size: 4 },
      { name: 'tensor-info', at: t.offsetOffset, size: 8 },
    );
  }
  return out;
}

const structuralCache = new WeakMap<FuzzBase, ReturnType<typeof structuralOffsets>>();

function byteMutant(bases: FuzzBase[], rng: Rng): Omit<Mutant, 'kind' | 'seed' | 'index'> {
  const base = rng.pick(bases);
  const bytes = Buffer.from(base.bytes);
  const all = regions(base);
  const roll = rng.int(100);
  if (roll < 10) {
    const region = rng.pick(all.slice(0, 3));
    const cut = region.start + rng.int(Math.max(1, region.end - region.start));
    return { base: base.name, description: `truncated to ${cut} bytes (in the ${region.name})`, bytes: bytes.subarray(0, cut) };
  }
  if (roll < 13) {
    const cut = base.file.dataOffset + rng.int(base.bytes.length - base.file.dataOffset);
    return { base: base.name, description: `truncated to ${cut} bytes (in the data)`, bytes: bytes.subarray(0, cut) };
  }
  const flips = 1 + rng.int(rng.chance(0.3) ? 16 : 4);
  const notes: string[] = [];
  let structural = structuralCache.get(base);
  if (!structural) structuralCache.set(base, (structural = structuralOffsets(base)));
  for (let i = 0; i < flips; i++) {
    let at: number;
    let where: string;
    const r = rng.int(100);
    if (r < 45) {
      const field = rng.pick(structural);
      at = field.at + rng.int(field.size);
      where = `${field.name} field`;
    } else {
      const region = r < 55 ? all[0]! : r < 75 ? all[1]! : r < 95 ? all[2]! : all[3]!;
      at = region.start + rng.int(region.end - region.start);
      where = region.name;
    }
    const how = rng.int(4);
    const before = bytes[at]!;
    bytes[at] = how === 0 ? before ^ (1 << rng.int(8)) : how === 1 ? rng.int(256) : how === 2 ? 0xff : 0x00;
    notes.push(`${where}@${at}: ${before}->${bytes[at]}`);
  }
  return { base: base.name, description: `flipped ${notes.join(', ')}`, bytes };
}

/** The mutant for (seed, index); the same inputs always give the same bytes. */
export function makeMutant(bases: FuzzBase[], kind: FuzzKind, seed: number, index: number): Mutant {
  const rng = mutantRng(seed ^ (kind === 'bytes' ? 0x5bd1e995 : 0), index);
  const made = kind === 'metadata' ? metadataMutant(bases, index, rng) : byteMutant(bases, rng);
  return { kind, seed, index, ...made };
}

/** How many single-key edits the metadata fuzzer walks before it starts combining them. */
export function systematicCount(bases: FuzzBase[]): number {
  return bases.reduce((n, b) => n + cachedEdits(b).length, 0);
}
