/**
 * Metadata values that make the bundled llama.cpp abort the process (a GGML_ASSERT, a
 * GGML_ABORT, an uncaught exception or an out-of-bounds read) instead of returning an error.
 * Each row names the llama.cpp line it guards, at the pinned commit (vendor/llama.cpp.pin.json),
 * with the assert text there; test/unit/loader-guards.test.ts checks that the text is still on
 * that line, so moving the pin turns every moved or changed assert into a failing row to review.
 *
 * Values that llama.cpp refuses by throwing inside llama_model_load_from_file (a missing key, a
 * wrong type, an array of the wrong length) are not listed: it catches those and returns null,
 * which reaches the user as ERR_MODEL_LOAD. docs/robustness.md says what was audited.
 */
import { POOLING_IDS } from '../embedding.js';
import { ErrorCode, ModelFileError } from '../errors.js';
import type { GgufFile, GgufTensorInfo, GgufValue } from './reader.js';

/** llama-hparams.h LLAMA_MAX_LAYERS and LLAMA_MAX_EXPERTS. */
export const LLAMA_MAX_LAYERS = 512;
export const LLAMA_MAX_EXPERTS = 1024;
/** llama-model.cpp LLAMA_ROPE_SCALING_TYPES. */
/** ggml-backend-impl.h TENSOR_ALIGNMENT: what a host buffer made from the mmap'd file must honour. */
export const TENSOR_ALIGNMENT = 32;
/** llama.h LLAMA_TOKEN_TYPE_BYTE. */
export const TOKEN_TYPE_BYTE = 6;
export const ROPE_SCALING_TYPES = ['none', 'linear', 'yarn', 'longrope'] as const;

export interface GuardViolation {
  /** The key whose value is refused (with the architecture filled in). */
  key: string;
  /** The value found, as text. */
  value: string;
  /** What llama.cpp accepts there. */
  allowed: string;
}

/** The file's metadata, read the way llama_model_loader reads it. */
export class GuardInput {
  constructor(
    readonly metadata: ReadonlyMap<string, GgufValue>,
    readonly architecture: string,
    /** The tensor table (absolute file offsets), for the rows about data placement. */
    readonly tensors: readonly Pick<GgufTensorInfo, 'name' | 'fileOffset'>[] = [],
  ) {}

  key(pattern: string): string {
    return pattern.replace('{arch}', this.architecture);
  }

  /**
   * A u32 scalar as get_key<uint32_t> reads it; undefined when the key is missing or of another
   * type (llama.cpp then throws "key not found" / "wrong type", which it catches).
   */
  u32(pattern: string): number | undefined {
    const v = this.metadata.get(this.key(pattern));
    return v?.type === 'u32' ? v.value : undefined;
  }

  /** A string scalar as get_key<std::string> reads it. */
  string(pattern: string): string | undefined {
    const v = this.metadata.get(this.key(pattern));
    return v?.type === 'string' ? v.value : undefined;
  }

  /**
   * A per-layer value as get_key_or_arr reads it: a u32 scalar repeated, or an array of exactly
   * nLayer u32/i32/bool items (i32 read as u32). Undefined when llama.cpp would throw instead.
   */
  perLayer(pattern: string, nLayer: number): number[] | undefined {
    const v = this.metadata.get(this.key(pattern));
    if (!v) return undefined;
    if (v.type === 'u32') return new Array<number>(nLayer).fill(v.value);
    if (v.type !== 'array' || v.value.length !== nLayer) return undefined;
    if (v.itemType === 'u32') return Array.from(v.value);
    if (v.itemType === 'i32') return Array.from(v.value, (x) => x >>> 0);
    if (v.itemType === 'bool') return v.value.map((x) => (x ? 1 : 0));
    return undefined;
  }

  /** n_layer_all once llama.cpp has accepted it (1..LLAMA_MAX_LAYERS), else undefined. */
  layers(): number | undefined {
    const n = this.u32('{arch}.block_count');
    return n !== undefined && n > 0 && n <= LLAMA_MAX_LAYERS ? n : undefined;
  }

  /** The expert counts load_hparams checks, after its hunyuan special case. */
  experts(): { nExpert: number; usedMax: number; groups: number; groupUsed: number } | undefined {
    const nLayer = this.layers();
    if (nLayer === undefined) return undefined;
    let nExpert = this.u32('{arch}.expert_count') ?? 0;
    let used = this.perLayer('{arch}.expert_used_count', nLayer) ?? [0];
    if ((this.architecture === 'hunyuan_vl' || this.architecture === 'hunyuan-dense') && nExpert <= 1) {
      nExpert = 0;
      used = [0];
    }
    return {
      nExpert,
      usedMax: Math.max(...used),
      groups: this.u32('{arch}.expert_group_count') ?? 0,
      groupUsed: this.u32('{arch}.expert_group_used_count') ?? 0,
    };
  }
}

export interface LoaderGuard {
  /** The key checked; `{arch}` stands for the value of general.architecture. */
  key: string;
  /** Architectures the guarded line applies to; absent: every architecture. */
  architectures?: readonly string[];
  /** The violation, or undefined when this row has nothing to say about the file. */
  rule: (input: GuardInput) => GuardViolation | undefined;
  /** What llama.cpp does with such a value. */
  message: string;
  /** `src/<file>:<line>` in vendor/llama.cpp at the pinned commit. */
  llamaCppSource: string;
  /** The text on that line (trimmed); a test checks that it is still there. */
  assertText: string;
  /**
   * Metadata edits to the tiny synthetic llama (lib/gguf/synthetic-model.ts) that break the
   * rule, and edits that keep it, for the table's tests. Keys may use `{arch}`; null removes a
   * key; a function edits the current value. `architecture` replaces general.architecture.
   */
  examples: { architecture?: string; invalid: GuardExampleEdits; valid: GuardExampleEdits };
}

export type GuardExampleEdits = Record<string, GgufValue | null | ((current: GgufValue | undefined) => GgufValue | null)>;

const u32 = (value: number): GgufValue => ({ type: 'u32', value });
const str = (value: string): GgufValue => ({ type: 'string', value });
const f32 = (value: number): GgufValue => ({ type: 'f32', value });

function violation(input: GuardInput, pattern: string, value: unknown, allowed: string): GuardViolation {
  return { key: input.key(pattern), value: String(value), allowed };
}

/** Every abort that metadata can reach, one row each. */
/** wavtokenizer-dec's PosNet and ConvNeXt stacks: each layer count at most the model's block_count. */
function wavtokenizerBlockCount(
  part: string,
  label: string,
  llamaCppSource: string,
  assertText: string,
  invalid: number,
  valid: number,
): LoaderGuard {
  const key = `{arch}.${part}.block_count`;
  return {
    key,
    architectures: ['wavtokenizer-dec'],
    rule: (m) => {
      const nLayer = m.layers();
      const n = m.u32(key);
      return nLayer !== undefined && n !== undefined && n > nLayer
        ? violation(m, key, n, `0 to ${m.key('{arch}.block_count')} (${nLayer})`)
        : undefined;
    },
    message: `load_hparams asserts the ${label} layer count for wavtokenizer-dec`,
    llamaCppSource,
    assertText,
    examples: { architecture: 'wavtokenizer-dec', invalid: { [key]: u32(invalid) }, valid: { [key]: u32(valid) } },
  };
}

export const LOADER_GUARDS: readonly LoaderGuard[] = [
  {
    key: 'general.alignment',
    rule: (m) => {
      const t = m.tensors.find((x) => x.fileOffset % TENSOR_ALIGNMENT !== 0);
      const align = m.metadata.get('general.alignment');
      return t
        ? violation(
            m,
            'general.alignment',
            `${align?.type === 'u32' ? align.value : 'the default'}, which puts tensor '${t.name}' at file offset ${t.fileOffset}`,
            `a multiple of ${TENSOR_ALIGNMENT} for every tensor's file offset (general.alignment 32 or more)`,
          )
        : undefined;
    },
    message: "the mmap load makes a CPU buffer from the file's data, which must be 32-byte aligned",
    llamaCppSource: 'ggml/src/ggml-backend.cpp:2511',
    assertText: 'GGML_ASSERT((uintptr_t)ptr % TENSOR_ALIGNMENT == 0 && "buffer pointer must be aligned");',
    examples: { invalid: { 'general.alignment': u32(1) }, valid: { 'general.alignment': u32(64) } },
  },
  {
    key: '{arch}.block_count',
    rule: (m) => {
      const n = m.u32('{arch}.block_count');
      return n !== undefined && (n < 1 || n > LLAMA_MAX_LAYERS)
        ? violation(m, '{arch}.block_count', n, `1 to ${LLAMA_MAX_LAYERS} (LLAMA_MAX_LAYERS)`)
        : undefined;
    },
    message: 'load_hparams asserts the layer count',
    llamaCppSource: 'src/llama-model.cpp:1260',
    assertText: 'GGML_ASSERT(hparams.n_layer_all > 0 && hparams.n_layer_all <= LLAMA_MAX_LAYERS);',
    examples: { invalid: { 'llama.block_count': u32(0) }, valid: { 'llama.block_count': u32(4) } },
  },
  {
    key: '{arch}.nextn_predict_layers',
    rule: (m) => {
      const nLayer = m.layers();
      const n = m.u32('{arch}.nextn_predict_layers');
      return nLayer !== undefined && n !== undefined && n > nLayer
        ? violation(m, '{arch}.nextn_predict_layers', n, `0 to ${m.key('{arch}.block_count')} (${nLayer})`)
        : undefined;
    },
    message: 'load_hparams asserts that the next-token-prediction layers are among the layers',
    llamaCppSource: 'src/llama-model.cpp:1262',
    assertText: 'GGML_ASSERT(hparams.n_layer_nextn <= hparams.n_layer_all);',
    // 1 passes this row; llama.cpp then refuses the file for the missing MTP tensors (ERR_MODEL_LOAD).
    examples: { invalid: { 'llama.nextn_predict_layers': u32(5) }, valid: { 'llama.nextn_predict_layers': u32(0) } },
  },
  wavtokenizerBlockCount(
    'posnet',
    'PosNet',
    'src/llama-model.cpp:1286',
    'GGML_ASSERT(hparams.posnet.n_layer   <= hparams.n_layer_all);',
    5,
    4,
  ),
  wavtokenizerBlockCount(
    'convnext',
    'ConvNeXt',
    'src/llama-model.cpp:1287',
    'GGML_ASSERT(hparams.convnext.n_layer <= hparams.n_layer_all);',
    513,
    1,
  ),
  {
    key: '{arch}.expert_count',
    rule: (m) => {
      const e = m.experts();
      return e && e.nExpert > LLAMA_MAX_EXPERTS
        ? violation(m, '{arch}.expert_count', e.nExpert, `0 to ${LLAMA_MAX_EXPERTS} (LLAMA_MAX_EXPERTS)`)
        : undefined;
    },
    message: 'load_hparams asserts the expert count',
    llamaCppSource: 'src/llama-model.cpp:1293',
    assertText: 'GGML_ASSERT(hparams.n_expert <= LLAMA_MAX_EXPERTS);',
    examples: { invalid: { 'llama.expert_count': u32(65536) }, valid: { 'llama.expert_count': u32(0) } },
  },
  {
    key: '{arch}.expert_used_count',
    rule: (m) => {
      const e = m.experts();
      return e && e.nExpert <= LLAMA_MAX_EXPERTS && e.usedMax > e.nExpert
        ? violation(m, '{arch}.expert_used_count', e.usedMax, `0 to ${m.key('{arch}.expert_count')} (${e.nExpert})`)
        : undefined;
    },
    message: 'load_hparams asserts that no layer uses more experts than there are',
    llamaCppSource: 'src/llama-model.cpp:1294',
    assertText: 'GGML_ASSERT(n_expert_used_max <= hparams.n_expert);',
    examples: { invalid: { 'llama.expert_used_count': u32(1) }, valid: { 'llama.expert_used_count': u32(0) } },
  },
  {
    key: '{arch}.expert_used_count',
    rule: (m) => {
      const e = m.experts();
      return e && e.nExpert > 0 && e.nExpert <= LLAMA_MAX_EXPERTS && e.usedMax === 0
        ? violation(
            m,
            '{arch}.expert_used_count',
            e.usedMax,
            `1 to ${m.key('{arch}.expert_count')} (${e.nExpert}) when the model has experts`,
          )
        : undefined;
    },
    message: 'load_hparams asserts that a mixture-of-experts model uses at least one expert',
    llamaCppSource: 'src/llama-model.cpp:1296',
    assertText: 'GGML_ASSERT(n_expert_used_max > 0);',
    examples: {
      invalid: { 'llama.expert_count': u32(2) },
      valid: { 'llama.expert_count': u32(2), 'llama.expert_used_count': u32(1) },
    },
  },
  {
    key: '{arch}.expert_group_count',
    rule: (m) => {
      const e = m.experts();
      return e && e.nExpert > 0 && e.nExpert <= LLAMA_MAX_EXPERTS && e.usedMax > 0 && e.usedMax <= e.nExpert && e.groups >= e.nExpert
        ? violation(m, '{arch}.expert_group_count', e.groups, `0 to ${m.key('{arch}.expert_count')} - 1 (${e.nExpert - 1})`)
        : undefined;
    },
    message: 'load_hparams asserts that there are fewer expert groups than experts',
    llamaCppSource: 'src/llama-model.cpp:1297',
    assertText: 'GGML_ASSERT(hparams.n_expert_groups < hparams.n_expert);',
    examples: {
      invalid: { 'llama.expert_count': u32(2), 'llama.expert_used_count': u32(1), 'llama.expert_group_count': u32(2) },
      valid: { 'llama.expert_count': u32(2), 'llama.expert_used_count': u32(1), 'llama.expert_group_count': u32(0) },
    },
  },
  {
    key: '{arch}.expert_group_count',
    rule: (m) => {
      const e = m.experts();
      return e && expertsPassed(e) && e.groups > 1 && e.nExpert % e.groups !== 0
        ? violation(m, '{arch}.expert_group_count', e.groups, `a divisor of ${m.key('{arch}.expert_count')} (${e.nExpert})`)
        : undefined;
    },
    message: 'load_hparams asserts that the experts split evenly into groups',
    llamaCppSource: 'src/llama-model.cpp:1299',
    assertText: 'GGML_ASSERT(hparams.n_expert % hparams.n_expert_groups == 0);',
    examples: {
      invalid: {
        'llama.expert_count': u32(5),
        'llama.expert_used_count': u32(1),
        'llama.expert_group_count': u32(2),
        'llama.expert_group_used_count': u32(1),
      },
      valid: {
        'llama.expert_count': u32(4),
        'llama.expert_used_count': u32(1),
        'llama.expert_group_count': u32(2),
        'llama.expert_group_used_count': u32(1),
      },
    },
  },
  {
    key: '{arch}.expert_group_used_count',
    rule: (m) => {
      const e = m.experts();
      return e && expertsPassed(e) && e.groups > 1 && e.nExpert % e.groups === 0 && e.groupUsed < 1
        ? violation(m, '{arch}.expert_group_used_count', e.groupUsed, `1 to ${m.key('{arch}.expert_group_count')} - 1 (${e.groups - 1})`)
        : undefined;
    },
    message: 'load_hparams asserts that a grouped model uses at least one group and not all of them',
    llamaCppSource: 'src/llama-model.cpp:1300',
    assertText: 'GGML_ASSERT(hparams.n_group_used > 0);',
    examples: {
      invalid: {
        'llama.expert_count': u32(4),
        'llama.expert_used_count': u32(1),
        'llama.expert_group_count': u32(2),
        'llama.expert_group_used_count': u32(0),
      },
      valid: {
        'llama.expert_count': u32(4),
        'llama.expert_used_count': u32(1),
        'llama.expert_group_count': u32(2),
        'llama.expert_group_used_count': u32(1),
      },
    },
  },
  {
    key: '{arch}.expert_group_used_count',
    rule: (m) => {
      const e = m.experts();
      return e && expertsPassed(e) && e.groups > 1 && e.nExpert % e.groups === 0 && e.groupUsed >= e.groups
        ? violation(m, '{arch}.expert_group_used_count', e.groupUsed, `1 to ${m.key('{arch}.expert_group_count')} - 1 (${e.groups - 1})`)
        : undefined;
    },
    message: 'load_hparams asserts that a grouped model does not use every group',
    llamaCppSource: 'src/llama-model.cpp:1301',
    assertText: 'GGML_ASSERT(hparams.n_group_used < hparams.n_expert_groups);',
    examples: {
      invalid: {
        'llama.expert_count': u32(4),
        'llama.expert_used_count': u32(1),
        'llama.expert_group_count': u32(2),
        'llama.expert_group_used_count': u32(2),
      },
      valid: {
        'llama.expert_count': u32(4),
        'llama.expert_used_count': u32(1),
        'llama.expert_group_count': u32(2),
        'llama.expert_group_used_count': u32(1),
      },
    },
  },
  {
    key: '{arch}.expert_used_count',
    rule: (m) => {
      const e = m.experts();
      return e && e.nExpert === 0 && e.usedMax !== 0
        ? violation(m, '{arch}.expert_used_count', e.usedMax, `0 when ${m.key('{arch}.expert_count')} is 0 or missing`)
        : undefined;
    },
    message: 'load_hparams asserts that a dense model uses no experts',
    llamaCppSource: 'src/llama-model.cpp:1304',
    assertText: 'GGML_ASSERT(n_expert_used_max == 0);',
    examples: { invalid: { 'llama.expert_used_count': u32(2) }, valid: { 'llama.expert_used_count': u32(0) } },
  },
  {
    key: '{arch}.expert_group_count',
    rule: (m) => {
      const e = m.experts();
      return e && e.nExpert === 0 && e.usedMax === 0 && e.groups !== 0
        ? violation(m, '{arch}.expert_group_count', e.groups, `0 when ${m.key('{arch}.expert_count')} is 0 or missing`)
        : undefined;
    },
    message: 'load_hparams asserts that a dense model has no expert groups',
    llamaCppSource: 'src/llama-model.cpp:1305',
    assertText: 'GGML_ASSERT(hparams.n_expert_groups == 0);',
    examples: { invalid: { 'llama.expert_group_count': u32(1) }, valid: { 'llama.expert_group_count': u32(0) } },
  },
  {
    key: '{arch}.rope.scaling.type',
    rule: (m) => {
      const v = m.string('{arch}.rope.scaling.type');
      return v !== undefined && !(ROPE_SCALING_TYPES as readonly string[]).includes(v)
        ? violation(m, '{arch}.rope.scaling.type', JSON.stringify(v), ROPE_SCALING_TYPES.map((t) => `'${t}'`).join(', '))
        : undefined;
    },
    message: 'load_hparams asserts that the RoPE scaling type is one it knows',
    llamaCppSource: 'src/llama-model.cpp:1352',
    assertText: 'GGML_ASSERT(hparams.rope_scaling_type_train != LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED);',
    examples: { invalid: { 'llama.rope.scaling.type': str('bogus') }, valid: { 'llama.rope.scaling.type': str('linear') } },
  },
  {
    key: '{arch}.attention.value_length',
    architectures: ['llama'],
    rule: (m) => {
      const nHead = m.perLayer('{arch}.attention.head_count', m.layers() ?? 0)?.[0] ?? 0;
      const nEmbd = m.u32('{arch}.embedding_length');
      if (nHead === 0 || nEmbd === undefined) return undefined;
      const k = m.u32('{arch}.attention.key_length') ?? Math.floor(nEmbd / nHead);
      const v = m.u32('{arch}.attention.value_length') ?? Math.floor(nEmbd / nHead);
      return k !== v
        ? violation(
            m,
            '{arch}.attention.value_length',
            v,
            `the key head size (${k}): ${m.key('{arch}.attention.key_length')}, or embedding_length / head_count`,
          )
        : undefined;
    },
    message: 'the llama graph, built when the context is created, asserts equal key and value head sizes',
    llamaCppSource: 'src/models/llama.cpp:102',
    assertText: 'GGML_ASSERT(n_embd_head == hparams.n_embd_head_k());',
    examples: {
      invalid: { 'llama.attention.value_length': u32(8) },
      valid: { 'llama.attention.value_length': u32(16), 'llama.attention.key_length': u32(16) },
    },
  },
  {
    key: '{arch}.attention.layer_norm_rms_epsilon',
    rule: (m) => nonNegativeFloat(m, '{arch}.attention.layer_norm_rms_epsilon'),
    message: "the first decode's RMS norm asserts a non-negative epsilon (NaN fails it too)",
    llamaCppSource: 'ggml/src/ggml-cpu/ops.cpp:3949',
    assertText: 'GGML_ASSERT(eps >= 0.0f);',
    examples: {
      invalid: { 'llama.attention.layer_norm_rms_epsilon': f32(Number.NaN) },
      valid: { 'llama.attention.layer_norm_rms_epsilon': f32(0) },
    },
  },
  {
    key: '{arch}.pooling_type',
    rule: (m) => {
      const v = m.u32('{arch}.pooling_type');
      return v !== undefined && v > POOLING_IDS.rank
        ? violation(m, '{arch}.pooling_type', v, `0 to ${POOLING_IDS.rank} (llama_pooling_type)`)
        : undefined;
    },
    message: "an embeddings context's graph aborts on a pooling type llama.cpp does not know",
    llamaCppSource: 'src/llama-graph.cpp:3767',
    assertText: 'GGML_ABORT("unknown pooling type");',
    examples: { invalid: { 'llama.pooling_type': u32(7) }, valid: { 'llama.pooling_type': u32(1) } },
  },
  {
    key: '{arch}.attention.layer_norm_epsilon',
    rule: (m) => nonNegativeFloat(m, '{arch}.attention.layer_norm_epsilon'),
    message: "the first decode's layer norm asserts a non-negative epsilon (NaN fails it too)",
    llamaCppSource: 'ggml/src/ggml-cpu/ops.cpp:3843',
    assertText: 'GGML_ASSERT(eps >= 0.0f);',
    examples: {
      invalid: { 'llama.attention.layer_norm_epsilon': f32(-1e-5) },
      valid: { 'llama.attention.layer_norm_epsilon': f32(1e-5) },
    },
  },
  {
    key: 'tokenizer.ggml.token_type',
    rule: (m) => {
      if (m.string('tokenizer.ggml.model') !== 'bert') return undefined;
      const v = m.metadata.get('tokenizer.ggml.token_type');
      if (v?.type !== 'array' || v.itemType !== 'i32') return undefined;
      const at = v.value.indexOf(TOKEN_TYPE_BYTE);
      return at >= 0
        ? violation(
            m,
            'tokenizer.ggml.token_type',
            `${TOKEN_TYPE_BYTE} (byte) at token ${at}`,
            "no byte tokens (type 6) with tokenizer.ggml.model 'bert'",
          )
        : undefined;
    },
    message: 'the vocabulary loader renders every token once; a byte token of a WordPiece (bert) vocabulary aborts',
    llamaCppSource: 'src/llama-vocab.cpp:3202',
    assertText: 'GGML_ABORT("fatal error");',
    examples: {
      invalid: {
        'tokenizer.ggml.model': str('bert'),
        'tokenizer.ggml.token_type': (v) =>
          v?.type === 'array' && v.itemType === 'i32' ? { ...v, value: v.value.map((t, i) => (i === 10 ? TOKEN_TYPE_BYTE : t)) } : null,
      },
      valid: {
        'tokenizer.ggml.model': str('bert'),
        'tokenizer.ggml.token_type': (v) =>
          v?.type === 'array' && v.itemType === 'i32' ? { ...v, value: v.value.map((t) => (t === TOKEN_TYPE_BYTE ? 1 : t)) } : null,
      },
    },
  },
  {
    key: 'tokenizer.ggml.model',
    rule: (m) => {
      const v = m.string('tokenizer.ggml.model');
      return v === 'none' || v === 'no_vocab'
        ? violation(
            m,
            'tokenizer.ggml.model',
            JSON.stringify(v),
            'a model with a tokenizer (cuda-llama takes text; this file has no vocabulary)',
          )
        : undefined;
    },
    message: 'a vocabulary-less model has no tokenizer, and llama_tokenize asserts one',
    llamaCppSource: 'src/llama-vocab.cpp:3417',
    assertText: 'GGML_ASSERT(tokenizer && "Tokenizer not initialized. Call llama_vocab::init_tokenizer() first.");',
    examples: { invalid: { 'tokenizer.ggml.model': str('no_vocab') }, valid: { 'tokenizer.ggml.model': str('llama') } },
  },
  {
    key: 'tokenizer.ggml.tokens',
    rule: (m) => {
      if (m.string('tokenizer.ggml.model') !== 'llama') return undefined;
      const tokens = stringArray(m, 'tokenizer.ggml.tokens');
      if (!tokens) return undefined;
      const set = new Set(tokens);
      for (let b = 0; b < 256; b++) {
        const hex = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
        if (!set.has(hex) && !set.has(String.fromCharCode(b))) {
          return violation(
            m,
            'tokenizer.ggml.tokens',
            `a vocabulary without the byte token ${hex}`,
            "the 256 byte-fallback tokens <0x00> to <0xFF> with tokenizer.ggml.model 'llama'",
          );
        }
      }
      return undefined;
    },
    message:
      'the SPM tokenizer falls back to byte tokens for text outside the vocabulary, and throws (uncaught, inside llama_tokenize) when one is missing',
    llamaCppSource: 'src/llama-vocab.cpp:4009',
    assertText: 'return pimpl->token_to_id.at(buf2);',
    examples: {
      invalid: {
        'tokenizer.ggml.tokens': (v) =>
          v?.type === 'array' && v.itemType === 'string' ? { ...v, value: v.value.map((t) => (t === '<0x41>' ? 'A-gone' : t)) } : null,
      },
      valid: {
        'tokenizer.ggml.tokens': (v) =>
          v?.type === 'array' && v.itemType === 'string' ? { ...v, value: v.value.map((t) => (t === '<0x41>' ? 'A' : t)) } : null,
      },
    },
  },
  {
    key: 'tokenizer.ggml.tokens',
    rule: (m) => {
      if (m.string('tokenizer.ggml.model') !== 'rwkv') return undefined;
      const tokens = stringArray(m, 'tokenizer.ggml.tokens');
      if (!tokens) return undefined;
      const single = new Set<number>();
      const first = new Map<number, number>();
      tokens.forEach((t, i) => {
        const bytes = unescapeRwkvToken(t === '' ? `[EMPTY_${i}]` : t);
        if (bytes.length === 1) single.add(bytes[0]!);
        if (bytes.length > 0 && !first.has(bytes[0]!)) first.set(bytes[0]!, i);
      });
      for (const [byte, id] of first) {
        if (!single.has(byte)) {
          return violation(
            m,
            'tokenizer.ggml.tokens',
            `token ${id} starts with byte 0x${byte.toString(16).padStart(2, '0')}, which is not a token by itself`,
            "a one-byte token for every byte a token starts with, with tokenizer.ggml.model 'rwkv'",
          );
        }
      }
      return undefined;
    },
    message: 'the RWKV tokenizer loops forever, allocating, on text that starts a token but matches none',
    llamaCppSource: 'src/llama-vocab.cpp:1358',
    assertText: 'position = token_length;',
    examples: {
      invalid: { 'tokenizer.ggml.model': str('rwkv') },
      valid: { 'tokenizer.ggml.model': str('rwkv'), 'tokenizer.ggml.tokens': withRwkvByteTokens },
    },
  },
  {
    key: 'tokenizer.ggml.tokens',
    rule: (m) => {
      const v = m.metadata.get('tokenizer.ggml.tokens');
      if (v?.type !== 'array' || v.itemType !== 'string') return undefined;
      const seen = new Map<string, number>();
      for (let i = 0; i < v.value.length; i++) {
        // llama.cpp reads each token as a C string (gguf_get_arr_str), so a NUL byte ends it there,
        // and it renames an empty token to "[EMPTY_<id>]" before it indexes the vocabulary.
        const cString = v.value[i]!.split('\0', 1)[0]!;
        const text = cString === '' ? `[EMPTY_${i}]` : cString;
        const first = seen.get(text);
        if (first !== undefined) {
          return violation(
            m,
            'tokenizer.ggml.tokens',
            `token ${i} ${JSON.stringify(text.slice(0, 40))}, the same text as token ${first}`,
            'every token text distinct',
          );
        }
        seen.set(text, i);
      }
      return undefined;
    },
    message: 'the vocabulary loader asserts that no two tokens have the same text',
    llamaCppSource: 'src/llama-vocab.cpp:2539',
    assertText: 'GGML_ASSERT(id_to_token.size() == token_to_id.size());',
    examples: {
      invalid: {
        'tokenizer.ggml.tokens': (v) =>
          v?.type === 'array' && v.itemType === 'string' ? { ...v, value: [v.value[0]!, ...v.value.slice(0, -1)] } : null,
      },
      valid: {
        'tokenizer.ggml.tokens': (v) =>
          v?.type === 'array' && v.itemType === 'string'
            ? { ...v, value: v.value.map((t, i) => (i === v.value.length - 1 ? '' : t)) }
            : null,
      },
    },
  },
];

function stringArray(m: GuardInput, key: string): string[] | undefined {
  const v = m.metadata.get(key);
  return v?.type === 'array' && v.itemType === 'string' ? v.value : undefined;
}

/** llama-vocab.cpp llama_unescape_rwkv_token, byte for byte (it reads the UTF-8 bytes as chars). */
export function unescapeRwkvToken(escaped: string): number[] {
  const out: number[] = [];
  let escaping = false;
  let hexRemaining = 0;
  let hexAcc = 0;
  for (const c of Buffer.from(escaped, 'utf8')) {
    if (hexRemaining !== 0) {
      const value = (c >= 0x61 ? c - 0x61 + 10 : c - 0x30) & 0xff;
      hexAcc = ((hexAcc << 4) + value) & 0xff;
      if (--hexRemaining === 0) {
        out.push(hexAcc);
        hexAcc = 0;
      }
      continue;
    }
    if (escaping) {
      if (c === 0x74) out.push(0x09);
      else if (c === 0x6e) out.push(0x0a);
      else if (c === 0x72) out.push(0x0d);
      else if (c === 0x78) hexRemaining = 2;
      else out.push(c);
      escaping = false;
      continue;
    }
    if (c === 0x5c) {
      escaping = true;
      continue;
    }
    out.push(c);
  }
  return out;
}

/** Test example: the current tokens followed by the 256 one-byte RWKV tokens \\x00..\\xff. */
function withRwkvByteTokens(v: GgufValue | undefined): GgufValue | null {
  if (v?.type !== 'array' || v.itemType !== 'string') return null;
  return { ...v, value: [...v.value, ...Array.from({ length: 256 }, (_, b) => `\\x${b.toString(16).padStart(2, '0')}`)] };
}

/** An f32 as get_key<float> reads it that ggml's norm ops accept: `eps >= 0.0f`, so not NaN. */
function nonNegativeFloat(m: GuardInput, pattern: string): GuardViolation | undefined {
  const v = m.metadata.get(m.key(pattern));
  return v?.type === 'f32' && !(v.value >= 0) ? violation(m, pattern, v.value, 'a number >= 0 (not NaN)') : undefined;
}

function expertsPassed(e: { nExpert: number; usedMax: number; groups: number }): boolean {
  return e.nExpert > 0 && e.nExpert <= LLAMA_MAX_EXPERTS && e.usedMax > 0 && e.usedMax <= e.nExpert && e.groups < e.nExpert;
}

/** Every violation of the table in the file, in table order (empty when llama.cpp can load it safely). */
export function loaderGuardViolations(
  metadata: ReadonlyMap<string, GgufValue>,
  architecture: string,
  tensors: readonly Pick<GgufTensorInfo, 'name' | 'fileOffset'>[] = [],
): (GuardViolation & { guard: LoaderGuard })[] {
  const input = new GuardInput(metadata, architecture, tensors);
  const found: (GuardViolation & { guard: LoaderGuard })[] = [];
  for (const guard of LOADER_GUARDS) {
    if (guard.architectures && !guard.architectures.includes(architecture)) continue;
    const v = guard.rule(input);
    if (v) found.push({ ...v, guard });
  }
  return found;
}

/**
 * Refuses, with ERR_MODEL_INVALID naming the key, the value and the allowed range, a file whose
 * metadata would abort the process inside llama.cpp. Runs before llama.cpp sees the file.
 */
export function checkLoaderGuards(
  file: Pick<GgufFile, 'metadata' | 'path'> & Partial<Pick<GgufFile, 'tensors'>>,
  architecture: string,
): void {
  const [first, ...rest] = loaderGuardViolations(file.metadata, architecture, file.tensors);
  if (!first) return;
  const more = rest.length > 0 ? ` (and ${rest.length} more: ${rest.map((v) => v.key).join(', ')})` : '';
  throw new ModelFileError(
    ErrorCode.MODEL_INVALID,
    `${file.path}: ${first.key} is ${first.value}; llama.cpp accepts ${first.allowed}${more}`,
    {
      remedy:
        "the file's metadata is wrong (a broken conversion or an edited file): convert the model again, or fix the key with gguf-py's gguf_set_metadata",
      details: {
        path: file.path,
        reason: 'metadata-range',
        key: first.key,
        value: first.value,
        allowed: first.allowed,
        llamaCppSource: first.guard.llamaCppSource,
        violations: [first, ...rest].map(({ guard, ...v }) => ({ ...v, llamaCppSource: guard.llamaCppSource })),
      },
    },
  );
}
