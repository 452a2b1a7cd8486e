// The synthetic embedding and reranker models (lib/gguf/synthetic/bert.ts, nomic-bert.ts, qwen3.ts):
// the metadata and tensors llama.cpp's loaders read, checked with our own GGUF reader. That
// llama.cpp loads and embeds with them was checked with its llama-embedding (see the commit).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GgmlType } from '../../lib/gguf/ggml-types.js';
import { ggufNumber, ggufString, readGguf, type GgufFile, type GgufTensorInfo } from '../../lib/gguf/reader.js';
import {
  shapes,
  syntheticTensorPlan,
  syntheticVocabFile,
  writeSyntheticModel,
  type SyntheticModelShape,
  type SyntheticShapeName,
} from '../../lib/gguf/synthetic-model.js';

const vocabDir = fileURLToPath(new URL('../../vendor/llama.cpp/models/', import.meta.url));
const embeddingShapes = ['tinyBert', 'tinyNomicBert', 'tinyQwen3Embedding', 'tinyQwen3Reranker'] as const;
type EmbeddingShape = (typeof embeddingShapes)[number];

let dir: string;
const files = new Map<EmbeddingShape, { file: GgufFile; bytes: Buffer }>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cuda-llama-embed-models-'));
  for (const name of embeddingShapes) {
    const path = join(dir, `${name}.gguf`);
    await writeSyntheticModel({ path, shape: shapes[name], vocabPath: join(vocabDir, syntheticVocabFile(name)), seed: 3 });
    files.set(name, { file: await readGguf(path), bytes: await readFile(path) });
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const model = (name: EmbeddingShape) => files.get(name)!.file;
const tensor = (name: EmbeddingShape, t: string): GgufTensorInfo | undefined => model(name).tensors.find((x) => x.name === t);
const names = (name: EmbeddingShape) => model(name).tensors.map((t) => t.name);
const nVocab = (name: EmbeddingShape) => ggufNumber(model(name), `${ggufString(model(name), 'general.architecture')}.vocab_size`)!;

function f32Data(name: EmbeddingShape, t: string): Float32Array {
  const info = tensor(name, t)!;
  expect(info.type, t).toBe(GgmlType.F32);
  const { bytes } = files.get(name)!;
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset + info.fileOffset, bytes.byteOffset + info.fileOffset + info.byteSize));
}

describe('each shape names its vocabulary', () => {
  it('BERT family: bert-bge; qwen3: qwen2; the rest: llama-spm', () => {
    expect(syntheticVocabFile('tinyBert')).toBe('ggml-vocab-bert-bge.gguf');
    expect(syntheticVocabFile('tinyNomicBert')).toBe('ggml-vocab-bert-bge.gguf');
    expect(syntheticVocabFile('tinyQwen3Embedding')).toBe('ggml-vocab-qwen2.gguf');
    expect(syntheticVocabFile('tinyQwen3Reranker')).toBe('ggml-vocab-qwen2.gguf');
    for (const name of ['tiny', 'small', 'tinyllama1b', 'tinySwa', 'tinyMamba'] as const satisfies readonly SyntheticShapeName[]) {
      expect(syntheticVocabFile(name), name).toBe('ggml-vocab-llama-spm.gguf');
    }
    expect(nVocab('tinyBert')).toBe(30522);
    expect(nVocab('tinyQwen3Embedding')).toBe(151936);
  });
});

describe('tinyBert', () => {
  it('is a bidirectional BERT with CLS pooling and BERT LayerNorm epsilon', () => {
    const f = model('tinyBert');
    expect(ggufString(f, 'general.architecture')).toBe('bert');
    expect(f.metadata.get('bert.pooling_type')).toEqual({ type: 'u32', value: 2 });
    expect(f.metadata.get('bert.attention.causal')).toEqual({ type: 'bool', value: false });
    expect(ggufNumber(f, 'bert.attention.layer_norm_epsilon')).toBeCloseTo(1e-12, 20);
    expect(f.metadata.has('bert.attention.head_count_kv')).toBe(false);
    expect(f.metadata.has('bert.rope.freq_base')).toBe(false);
  });

  it('carries the WordPiece tokenizer keys the converter writes for BGE', () => {
    const f = model('tinyBert');
    expect(ggufString(f, 'tokenizer.ggml.model')).toBe('bert');
    expect(f.metadata.get('tokenizer.ggml.token_type_count')).toEqual({ type: 'u32', value: 2 });
    expect(ggufNumber(f, 'tokenizer.ggml.bos_token_id')).toBe(101); // [CLS]
    expect(ggufNumber(f, 'tokenizer.ggml.eos_token_id')).toBe(102); // [SEP]
    expect(f.metadata.get('tokenizer.ggml.add_bos_token')).toEqual({ type: 'bool', value: true });
    expect(f.metadata.get('tokenizer.ggml.add_eos_token')).toEqual({ type: 'bool', value: true });
    expect(f.metadata.get('tokenizer.ggml.add_sep_token')).toEqual({ type: 'bool', value: false });
  });

  it('has token, token-type and position embeddings, biased projections and no output head', () => {
    const n = nVocab('tinyBert');
    expect(names('tinyBert')).toEqual(syntheticTensorPlan(shapes.tinyBert, n).map((t) => t.name));
    expect(tensor('tinyBert', 'token_embd.weight')?.dims).toEqual([64, n]);
    expect(tensor('tinyBert', 'token_types.weight')).toMatchObject({ dims: [64, 2], type: GgmlType.F32 });
    expect(tensor('tinyBert', 'position_embd.weight')).toMatchObject({ dims: [64, 512], type: GgmlType.F32 });
    expect(tensor('tinyBert', 'token_embd_norm.bias')?.dims).toEqual([64]);
    for (const p of ['attn_q', 'attn_k', 'attn_v', 'attn_output']) {
      expect(tensor('tinyBert', `blk.1.${p}.weight`)).toMatchObject({ dims: [64, 64], type: GgmlType.F16 });
      expect(tensor('tinyBert', `blk.1.${p}.bias`)).toMatchObject({ dims: [64], type: GgmlType.F32 });
    }
    expect(tensor('tinyBert', 'blk.0.ffn_up.weight')?.dims).toEqual([64, 256]);
    expect(tensor('tinyBert', 'blk.0.ffn_up.bias')?.dims).toEqual([256]);
    expect(tensor('tinyBert', 'blk.0.ffn_down.weight')?.dims).toEqual([256, 64]);
    expect(tensor('tinyBert', 'blk.1.layer_output_norm.weight')?.dims).toEqual([64]);
    expect(names('tinyBert')).toHaveLength(5 + 16 * 2);
    expect(names('tinyBert').filter((t) => /^(output|cls)/.test(t))).toEqual([]);
  });

  it('sets LayerNorms to the identity and draws biases and embeddings like the weights', () => {
    expect(f32Data('tinyBert', 'blk.0.attn_output_norm.weight').every((x) => x === 1)).toBe(true);
    expect(f32Data('tinyBert', 'blk.0.attn_output_norm.bias').every((x) => x === 0)).toBe(true);
    for (const t of ['blk.0.attn_q.bias', 'position_embd.weight', 'token_types.weight']) {
      const values = f32Data('tinyBert', t);
      expect(values.every((x) => Math.abs(x) <= 0.05)).toBe(true);
      expect(new Set(values).size, t).toBeGreaterThan(values.length / 2);
    }
  });
});

describe('tinyNomicBert', () => {
  it('is a bidirectional nomic-bert with mean pooling and RoPE', () => {
    const f = model('tinyNomicBert');
    expect(ggufString(f, 'general.architecture')).toBe('nomic-bert');
    expect(f.metadata.get('nomic-bert.pooling_type')).toEqual({ type: 'u32', value: 1 });
    expect(f.metadata.get('nomic-bert.attention.causal')).toEqual({ type: 'bool', value: false });
    expect(f.metadata.get('nomic-bert.rope.freq_base')).toEqual({ type: 'f32', value: 1000 });
    expect(ggufNumber(f, 'nomic-bert.attention.layer_norm_epsilon')).toBeCloseTo(1e-12, 20);
    expect(f.metadata.get('tokenizer.ggml.token_type_count')).toEqual({ type: 'u32', value: 2 });
  });

  it('has a fused QKV, a SwiGLU FFN, no biases and no position embeddings', () => {
    const n = nVocab('tinyNomicBert');
    expect(names('tinyNomicBert')).toEqual(syntheticTensorPlan(shapes.tinyNomicBert, n).map((t) => t.name));
    expect(tensor('tinyNomicBert', 'blk.0.attn_qkv.weight')?.dims).toEqual([64, 192]);
    expect(tensor('tinyNomicBert', 'blk.0.attn_output.weight')?.dims).toEqual([64, 64]);
    expect(tensor('tinyNomicBert', 'blk.1.ffn_gate.weight')?.dims).toEqual([64, 256]);
    expect(tensor('tinyNomicBert', 'blk.1.ffn_up.weight')?.dims).toEqual([64, 256]);
    expect(tensor('tinyNomicBert', 'blk.1.ffn_down.weight')?.dims).toEqual([256, 64]);
    expect(names('tinyNomicBert').filter((t) => t.endsWith('.bias') && !t.includes('norm'))).toEqual([]);
    expect(names('tinyNomicBert')).not.toContain('position_embd.weight');
    expect(names('tinyNomicBert')).toContain('token_types.weight');
  });
});

describe('tinyQwen3Embedding', () => {
  it('is a causal qwen3 with last-token pooling and its own head size', () => {
    const f = model('tinyQwen3Embedding');
    expect(ggufString(f, 'general.architecture')).toBe('qwen3');
    expect(f.metadata.get('qwen3.pooling_type')).toEqual({ type: 'u32', value: 3 });
    expect(f.metadata.has('qwen3.attention.causal')).toBe(false);
    expect(ggufNumber(f, 'qwen3.attention.head_count')).toBe(4);
    expect(ggufNumber(f, 'qwen3.attention.head_count_kv')).toBe(2);
    expect(ggufNumber(f, 'qwen3.attention.key_length')).toBe(32);
    expect(ggufNumber(f, 'qwen3.attention.value_length')).toBe(32);
    expect(f.metadata.get('qwen3.rope.freq_base')).toEqual({ type: 'f32', value: 1000000 });
    expect(ggufNumber(f, 'qwen3.attention.layer_norm_rms_epsilon')).toBeCloseTo(1e-6, 12);
    expect(f.metadata.has('qwen3.classifier.output_labels')).toBe(false);
  });

  it('appends the EOS it pools and adds no BOS', () => {
    const f = model('tinyQwen3Embedding');
    expect(ggufString(f, 'tokenizer.ggml.model')).toBe('gpt2');
    expect(f.metadata.get('tokenizer.ggml.add_eos_token')).toEqual({ type: 'bool', value: true });
    expect(f.metadata.get('tokenizer.ggml.add_bos_token')).toEqual({ type: 'bool', value: false });
    expect(f.metadata.has('tokenizer.chat_template.rerank')).toBe(false);
  });

  it('has per-head Q/K norms, wider attention than the embedding, and no output head', () => {
    const n = nVocab('tinyQwen3Embedding');
    expect(names('tinyQwen3Embedding')).toEqual(syntheticTensorPlan(shapes.tinyQwen3Embedding, n).map((t) => t.name));
    expect(tensor('tinyQwen3Embedding', 'blk.0.attn_q.weight')?.dims).toEqual([64, 128]);
    expect(tensor('tinyQwen3Embedding', 'blk.0.attn_k.weight')?.dims).toEqual([64, 64]);
    expect(tensor('tinyQwen3Embedding', 'blk.0.attn_v.weight')?.dims).toEqual([64, 64]);
    expect(tensor('tinyQwen3Embedding', 'blk.0.attn_output.weight')?.dims).toEqual([128, 64]);
    expect(tensor('tinyQwen3Embedding', 'blk.1.attn_q_norm.weight')).toMatchObject({ dims: [32], type: GgmlType.F32 });
    expect(tensor('tinyQwen3Embedding', 'blk.1.attn_k_norm.weight')).toMatchObject({ dims: [32], type: GgmlType.F32 });
    expect(tensor('tinyQwen3Embedding', 'blk.1.ffn_gate.weight')?.dims).toEqual([64, 192]);
    expect(tensor('tinyQwen3Embedding', 'output_norm.weight')?.dims).toEqual([64]);
    expect(names('tinyQwen3Embedding')).not.toContain('output.weight');
    expect(names('tinyQwen3Embedding')).not.toContain('cls.output.weight');
    expect(names('tinyQwen3Embedding')).toHaveLength(2 + 11 * 2);
  });
});

describe('tinyQwen3Reranker', () => {
  it('ranks through a yes/no head over the last token', () => {
    const f = model('tinyQwen3Reranker');
    expect(ggufString(f, 'general.architecture')).toBe('qwen3');
    expect(f.metadata.get('qwen3.pooling_type')).toEqual({ type: 'u32', value: 4 });
    const labels = f.metadata.get('qwen3.classifier.output_labels');
    expect(labels?.type === 'array' && labels.itemType === 'string' && labels.value).toEqual(['yes', 'no']);
    expect(tensor('tinyQwen3Reranker', 'cls.output.weight')).toMatchObject({ dims: [64, 2], type: GgmlType.F16 });
    expect(names('tinyQwen3Reranker')).not.toContain('output.weight');
    expect(names('tinyQwen3Reranker')).toEqual(
      syntheticTensorPlan(shapes.tinyQwen3Reranker, nVocab('tinyQwen3Reranker')).map((t) => t.name),
    );
  });

  it('carries the rerank prompt with its {query} and {document} slots, and no added EOS', () => {
    const f = model('tinyQwen3Reranker');
    const templates = f.metadata.get('tokenizer.chat_templates');
    expect(templates?.type === 'array' && templates.value).toEqual(['rerank']);
    const rerank = ggufString(f, 'tokenizer.chat_template.rerank')!;
    expect(rerank).toContain('<Query>: {query}\n<Document>: {document}<|im_end|>');
    expect(rerank.endsWith('<|im_start|>assistant\n<think>\n\n</think>\n\n')).toBe(true);
    expect(ggufString(f, 'tokenizer.chat_template')).toBe('chatml');
    expect(f.metadata.has('tokenizer.ggml.add_eos_token')).toBe(false);
  });
});

describe('shape checks', () => {
  // writeSyntheticModel checks the shape before it reads the vocabulary.
  const write = (shape: SyntheticModelShape) => writeSyntheticModel({ path: join(dir, 'never.gguf'), shape, vocabPath: '/nonexistent' });

  it('refuses fields the architecture does not read', async () => {
    await expect(write({ ...shapes.tiny, pooling: 'mean' })).rejects.toThrow('shape.pooling is for bert, nomic-bert, qwen3 only');
    await expect(write({ ...shapes.tinyBert, headDim: 32 })).rejects.toThrow('shape.headDim is for qwen3 only');
    await expect(write({ ...shapes.tinyQwen3Embedding, slidingWindow: 8 })).rejects.toThrow('shape.slidingWindow is for gemma2 only');
  });

  it('refuses what llama.cpp or the family cannot take', async () => {
    await expect(write({ ...shapes.tinyBert, nHeadKv: 2 })).rejects.toThrow('shape.nHeadKv must equal nHead (4) for bert');
    await expect(write({ ...shapes.tinyBert, pooling: 'last' })).rejects.toThrow(
      "shape.pooling for bert must be one of mean, cls, got 'last'",
    );
    await expect(write({ ...shapes.tinyNomicBert, nEmbd: 68 })).rejects.toThrow(/must be even for RoPE/);
    await expect(write({ ...shapes.tinyQwen3Embedding, headDim: 31 })).rejects.toThrow(/must be even for RoPE/);
  });

  it('makes a plain qwen3 language model, with its output head, when there is no pooling', () => {
    const { pooling: _pooling, ...lm } = shapes.tinyQwen3Embedding;
    const plan = syntheticTensorPlan(lm, 1000).map((t) => t.name);
    expect(plan.at(-1)).toBe('output.weight');
    expect(plan).not.toContain('cls.output.weight');
  });
});
