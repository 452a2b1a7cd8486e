// Embeddings and rerank against llama.cpp's own llama-embedding (built from the same pinned source
// by `npm test`'s pretest) on the synthetic embedding models: the same vectors for every pooling
// type, normalized and not, and the same rerank scores; a text alone and in a batch of 64; the
// packing; every bad input typed; and the aborts of native/embedding.h kept away.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, type LlamaModel, type Pooling } from '../../lib/index.js';
import { repoRoot, syntheticModel } from '../helpers/models.js';

const llamaEmbedding = join(repoRoot, 'build', 'Release', 'llama-embedding');
const CONTEXT = 512;
const texts = ['hello world', 'The quick brown fox jumps over the lazy dog.', 'embeddings for retrieval', 'a'];

interface ReferenceRun {
  /** One row per text (pooled) or per token (pooling none). */
  rows: number[][];
}

/**
 * llama-embedding's JSON output for `prompts` (one per line), as a row per output. Its output goes
 * through llama.cpp's asynchronous log writer (common/log.cpp), which on a loaded machine has
 * garbled a long output once in CI ("0.1405482,.1405482,-"): a run whose output is not JSON is
 * run again, up to three times in all.
 */
function reference(path: string, prompts: string[], pooling: Pooling, normalize: boolean): ReferenceRun {
  for (let attempt = 1; ; attempt++) {
    let parsed: { data: { embedding: number[] }[] };
    try {
      parsed = JSON.parse(runReference(path, prompts, pooling, normalize)) as typeof parsed;
    } catch (error) {
      if (!(error instanceof SyntaxError) || attempt === 3) throw error;
      continue;
    }
    return { rows: parsed.data.map((d) => d.embedding) };
  }
}

function runReference(path: string, prompts: string[], pooling: Pooling, normalize: boolean): string {
  if (!existsSync(llamaEmbedding)) throw new Error(`${llamaEmbedding} is missing: run \`node scripts/build-tools.mjs llama-embedding\``);
  return execFileSync(
    llamaEmbedding,
    [
      '-m',
      path,
      '-p',
      prompts.join('\n'),
      '--pooling',
      pooling,
      '--embd-normalize',
      normalize ? '2' : '-1',
      '--embd-output-format',
      'json',
      '-c',
      String(CONTEXT),
      '-t',
      '1',
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 2 ** 20 },
  );
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

function expectClose(ours: ArrayLike<number>, theirs: number[]): void {
  expect(ours.length).toBe(theirs.length);
  expect(cosine(ours, theirs)).toBeGreaterThanOrEqual(0.9999);
}

async function withModel<T>(path: string, options: Parameters<typeof Llama.load>[1], body: (m: LlamaModel) => Promise<T>): Promise<T> {
  const model = await Llama.load(path, { gpu: 'cpu', contextSize: CONTEXT, threads: 1, ...options });
  try {
    return await body(model);
  } finally {
    await model.dispose();
  }
}

describe('embeddings match llama-embedding', () => {
  const cases: { shape: Parameters<typeof syntheticModel>[0]; poolings: Pooling[]; options?: { embeddings: true } }[] = [
    { shape: 'tinyBert', poolings: ['cls', 'mean', 'none'] },
    { shape: 'tinyNomicBert', poolings: ['mean', 'cls'] },
    // Its default, on a causal model (the BERT cases cover mean, cls and none).
    { shape: 'tinyQwen3Embedding', poolings: ['last'] },
    // A generative model with an embeddings context beside its generation context.
    { shape: 'tiny', poolings: ['mean'], options: { embeddings: true } },
  ];
  for (const { shape, poolings, options } of cases) {
    for (const pooling of poolings) {
      for (const normalize of [true, false]) {
        it(`${shape}, pooling ${pooling}, ${normalize ? 'normalized' : 'raw'}`, async () => {
          const path = await syntheticModel(shape);
          const theirs = reference(path, texts, pooling, normalize);
          await withModel(path, { ...options, pooling }, async (model) => {
            const ours = await model.embed(texts, { normalize });
            expect(ours.pooling).toBe(pooling);
            if (pooling === 'none') {
              const rows = ours.tokenEmbeddings!.flat();
              expect(rows).toHaveLength(theirs.rows.length);
              rows.forEach((row, i) => expectClose(row, theirs.rows[i]!));
            } else {
              expect(ours.embeddings).toHaveLength(texts.length);
              ours.embeddings.forEach((row, i) => expectClose(row, theirs.rows[i]!));
              if (normalize) for (const row of ours.embeddings) expect(Math.hypot(...row)).toBeCloseTo(1, 5);
            }
          });
        });
      }
    }
  }

  it("each embedding model's default pooling is the one its file declares", async () => {
    for (const [shape, pooling] of [
      ['tinyBert', 'cls'],
      ['tinyNomicBert', 'mean'],
      ['tinyQwen3Embedding', 'last'],
      ['tinyQwen3Reranker', 'rank'],
    ] as const) {
      await withModel(await syntheticModel(shape), {}, async (model) => {
        expect(model.info.embeddingModel).toBe(true);
        expect(model.info.pooling).toBe(pooling);
      });
    }
  });
});

describe('rerank matches llama-embedding --pooling rank', () => {
  it('same scores, same order', async () => {
    const path = await syntheticModel('tinyQwen3Reranker');
    const query = 'what is a panda?';
    const documents = ['hi', 'The giant panda is a bear species endemic to China.', 'pandas eat bamboo', 'paris is in france'];
    // llama-embedding splits each line at its --cls-separator (a tab) into the query and the document.
    const theirs = reference(
      path,
      documents.map((d) => `${query}\t${d}`),
      'rank',
      false,
    );
    await withModel(path, {}, async (model) => {
      expect(model.info.rankingHead).toBe(true);
      const ours = await model.rerank(query, documents);
      expect(ours.scores).toHaveLength(documents.length);
      ours.scores.forEach((score, i) => expect(Math.abs(score - theirs.rows[i]![0]!)).toBeLessThanOrEqual(1e-4));
      const theirOrder = theirs.rows.map((r, index) => ({ index, score: r[0]! })).sort((a, b) => b.score - a.score);
      expect(ours.ranking.map((r) => r.index)).toEqual(theirOrder.map((r) => r.index));
      const top = await model.rerank(query, documents, { topN: 2 });
      expect(top.ranking).toEqual(ours.ranking.slice(0, 2));
    });
  });
});

describe('batching', () => {
  let model: LlamaModel;
  beforeAll(async () => {
    model = await Llama.load(await syntheticModel('tinyBert'), { gpu: 'cpu', contextSize: CONTEXT, threads: 1 });
  });
  afterAll(async () => model?.dispose());

  it('a text alone equals the same text in a batch of 64 (cosine >= 0.9999)', async () => {
    const batch = Array.from({ length: 64 }, (_, i) => `document number ${i}: ${'words '.repeat(i % 7)}end`);
    const together = await model.embed(batch);
    for (const i of [0, 17, 63]) {
      const alone = await model.embed([batch[i]!]);
      expect(cosine(alone.embeddings[0]!, together.embeddings[i]!)).toBeGreaterThanOrEqual(0.9999);
    }
  });

  it('1,000 short texts take a handful of decodes, not 1,000', async () => {
    const many = Array.from({ length: 1000 }, (_, i) => `short text ${i}`);
    const result = await model.embed(many);
    expect(result.embeddings).toHaveLength(1000);
    const tokens = result.tokenCounts.reduce((a, b) => a + b, 0);
    // Whole texts per decode, up to the batch (the context) and 256 sequences.
    expect(result.decodes).toBeLessThanOrEqual(Math.max(Math.ceil(tokens / CONTEXT), Math.ceil(1000 / 256)) + 2);
    expect(result.decodes).toBeLessThan(20);
  });

  it('a text longer than the batch is ERR_TEXT_TOO_LONG naming it, or cut with truncate: true', async () => {
    const long = 'word '.repeat(2 * CONTEXT);
    const error = await model.embed(['short', long]).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_TEXT_TOO_LONG', details: { index: 1, maxTokens: CONTEXT } });
    expect((error as { details: { tokens: number } }).details.tokens).toBeGreaterThan(CONTEXT);
    const cut = await model.embed(['short', long], { truncate: true });
    expect(cut.truncated).toEqual([1]);
    expect(cut.tokenCounts[1]).toBe(CONTEXT);
  });

  it('bad input is typed', async () => {
    await expect(model.embed([])).rejects.toThrow(RangeError);
    await expect(model.embed([''])).rejects.toThrow(RangeError);
    await expect(model.embed([42 as unknown as string])).rejects.toThrow(TypeError);
    await expect(model.embed(null as unknown as string[])).rejects.toThrow(TypeError);
    await expect(model.embed([[]])).rejects.toThrow(RangeError);
    await expect(model.embed([[1, 2, 10_000_000]])).rejects.toThrow(RangeError);
    await expect(model.embed(['x'], { normalize: 'yes' } as never)).rejects.toThrow(TypeError);
    await expect(model.embed(['x'], { dimensions: 3 } as never)).rejects.toThrow(/dimensions/);
    // Token ids are embedded as given.
    const ids = model.tokenize('hello world');
    const [fromText, fromIds] = (await model.embed(['hello world', ids])).embeddings;
    expect(cosine(fromText!, fromIds!)).toBeGreaterThanOrEqual(0.99999);
  });

  it('generation on an embedding model is ERR_EMBEDDINGS_ONLY; rerank without a ranking head is ERR_NO_RANKING_HEAD', async () => {
    await expect(model.generate('hi')).rejects.toMatchObject({ code: 'ERR_EMBEDDINGS_ONLY' });
    await expect(model.chat([{ role: 'user', content: 'hi' }])).rejects.toMatchObject({ code: 'ERR_EMBEDDINGS_ONLY' });
    expect(() => model.createSession()).toThrow(expect.objectContaining({ code: 'ERR_EMBEDDINGS_ONLY' }));
    await expect(model.rerank('q', ['d'])).rejects.toMatchObject({ code: 'ERR_NO_RANKING_HEAD' });
  });

  it('the layer report and the plan cover the encoder', async () => {
    const report = await model.layerReport();
    expect(report.layers.length).toBe(model.info.layerCount);
    // An encoder has no output projection, so none is reported (not the token embeddings' device).
    expect(report.outputTensor).toBeNull();
    expect(String(report)).toContain('output tensor: none');
    const plan = await Llama.plan(await syntheticModel('tinyBert'), { gpu: 'cpu', contextSize: CONTEXT });
    expect(plan.host.fits).toBe(true);
  });
});

describe('loading for embeddings', () => {
  it('an embedding model cannot be loaded without embeddings; pooling rank needs a ranking head', async () => {
    const bert = await syntheticModel('tinyBert');
    await expect(Llama.load(bert, { gpu: 'cpu', embeddings: false })).rejects.toMatchObject({ code: 'ERR_EMBEDDINGS_ONLY' });
    await expect(Llama.load(bert, { gpu: 'cpu', pooling: 'rank' })).rejects.toMatchObject({ code: 'ERR_NO_RANKING_HEAD' });
    await expect(Llama.load(bert, { gpu: 'cpu', pooling: 'max' as Pooling })).rejects.toThrow(/options.pooling must be one of/);
  });

  it('a generative model embeds only when loaded with embeddings, and still generates then', async () => {
    const tiny = await syntheticModel('tiny');
    await expect(Llama.load(tiny, { gpu: 'cpu', pooling: 'mean' })).rejects.toThrow(/add embeddings: true/);
    await withModel(tiny, {}, async (model) => {
      expect(model.info.pooling).toBeNull();
      await expect(model.embed(['x'])).rejects.toMatchObject({ code: 'ERR_NO_EMBEDDINGS' });
    });
    await withModel(tiny, { embeddings: true }, async (model) => {
      const [embedded, generated] = await Promise.all([
        model.embed(['hello', 'world']),
        model.generate('hello', { maxTokens: 8, temperature: 0 }),
      ]);
      expect(embedded.embeddings).toHaveLength(2);
      expect(generated.tokens).toHaveLength(8);
    });
  });

  it('dispose during a long embed rejects it with ERR_DISPOSED', async () => {
    const model = await Llama.load(await syntheticModel('tinyQwen3Embedding'), { gpu: 'cpu', contextSize: CONTEXT, threads: 1 });
    const many = Array.from({ length: 3000 }, (_, i) => `text ${i} ${'filler '.repeat(20)}`);
    const running = model.embed(many);
    await model.dispose();
    await expect(running).rejects.toMatchObject({ code: 'ERR_DISPOSED' });
  });
});
