// Models whose memory cannot drop a partial tail (issue 26): a sliding-window model (gemma2) and a
// recurrent one (mamba), from our generator. A prompt that continues everything a sequence holds
// (the next turn of a conversation) reuses it, since nothing has to be dropped; one that shares
// only part of it evaluates the whole prompt again and says why in cacheMiss. Either way the tokens
// are those of a fresh evaluation. The llama control, where any prefix is reused, is
// test/native/engine.test.ts's prefix-reuse test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loaderGuardViolations } from '../../lib/gguf/loader-guards.js';
import { readGguf } from '../../lib/gguf/reader.js';
import { syntheticTensorPlan, shapes } from '../../lib/gguf/synthetic-model.js';
import { Llama, type LlamaModel } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';

const greedy = { temperature: 0 } as const;
const load = { gpu: 'cpu', contextSize: 256, threads: 2, warmup: false } as const;

const cases = [
  { shape: 'tinySwa', architecture: 'gemma2', miss: 'slidingWindow' },
  { shape: 'tinyMamba', architecture: 'mamba', miss: 'recurrentMemory' },
] as const;

describe.each(cases)('$architecture ($miss)', ({ shape, architecture, miss }) => {
  let path: string;
  let model: LlamaModel;

  beforeAll(async () => {
    path = await syntheticModel(shape);
    model = await Llama.load(path, { ...load, sequences: 2 });
  });

  afterAll(async () => {
    await model?.dispose();
  });

  it('is a file of that architecture that the loader guards let through', async () => {
    const file = await readGguf(path);
    expect(model.info.architecture).toBe(architecture);
    expect(file.tensors.map((t) => t.name)).toEqual(syntheticTensorPlan(shapes[shape], model.info.vocabSize).map((t) => t.name));
    expect(loaderGuardViolations(file.metadata, architecture, file.tensors)).toEqual([]);
  });

  it('reuses a cache that the prompt continues, evaluates one it diverges from, says why, and gives the tokens a fresh model gives', async () => {
    // Longer than tinySwa's 8-token window, so its sliding-window layers see only part of it.
    const first = model.tokenize('The history of the city begins with a small village by the river');
    const turn1 = await model.generate(first, { maxTokens: 12, ...greedy });
    expect(turn1.cachedTokens).toBe(0);
    expect(turn1.cacheMiss).toBeUndefined();
    const second = [...first, ...turn1.tokens, ...model.tokenize(' and then the people built a bridge', { addSpecial: false })];
    const again = await model.generate(second, { maxTokens: 16, ...greedy });
    // Everything the sequence holds: the first prompt and the reply but its last token, which was
    // sampled and never decoded.
    expect(again.cachedTokens).toBe(first.length + turn1.tokens.length - 1);
    expect(again.cacheMiss).toBeUndefined();
    expect(again.promptTokens).toBe(second.length);
    const uncached = await model.generate(second, { maxTokens: 16, ...greedy, cachePrompt: false });
    expect(uncached.cachedTokens).toBe(0);
    expect(uncached.cacheMiss).toBeUndefined();
    expect(again.tokens).toEqual(uncached.tokens);
    await using fresh = await Llama.load(path, { ...load, sequences: 1 });
    expect(again.tokens).toEqual((await fresh.generate(second, { maxTokens: 16, ...greedy })).tokens);

    // A prompt that diverges inside the cached one: the tail these memories cannot drop.
    const diverging = [...first.slice(0, 6), ...model.tokenize(' a different ending', { addSpecial: false })];
    const trimmed = await model.generate(diverging, { maxTokens: 10, ...greedy });
    expect(trimmed).toMatchObject({ cachedTokens: 0, cacheMiss: miss });
    expect(trimmed.tokens).toEqual((await fresh.generate(diverging, { maxTokens: 10, ...greedy })).tokens);
    // The same prompt again, where llama drops only the last token to evaluate it for the logits.
    const repeated = await model.generate(diverging, { maxTokens: 10, ...greedy });
    expect(repeated).toMatchObject({ cachedTokens: 0, cacheMiss: miss });
    expect(repeated.tokens).toEqual(trimmed.tokens);
  });

  it('two prompts generated together give the tokens each gives alone', async () => {
    const prompts = ['The history of the city begins', 'Seven quiet winters later the story of the'];
    const alone = [];
    for (const p of prompts) alone.push((await model.generate(p, { maxTokens: 12, ...greedy, cachePrompt: false })).tokens);
    const together = await Promise.all(prompts.map((p) => model.generate(p, { maxTokens: 12, ...greedy, cachePrompt: false })));
    expect(together.map((r) => r.tokens)).toEqual(alone);
  });

  it('gives a model whose output depends on more than the last token, so the comparisons above can fail', async () => {
    // Same last tokens, different history: a model that ignored its memory would answer both alike.
    const a = await model.generate(model.tokenize('Rivers and mountains and then the story'), {
      maxTokens: 8,
      ...greedy,
      cachePrompt: false,
    });
    const b = await model.generate(model.tokenize('Seven quiet winters later the story'), { maxTokens: 8, ...greedy, cachePrompt: false });
    expect(a.tokens).not.toEqual(b.tokens);
  });

  it('a session continues across turns with the tokens of a fresh evaluation of the whole conversation', async () => {
    await using session = model.createSession();
    const turn1 = await session.generate('Once upon a time in a land far away', { maxTokens: 8, ...greedy });
    expect(turn1.cachedTokens).toBe(0);
    const afterFirst = [...session.tokens];
    const turn2 = await session.generate(' there lived a king who', { maxTokens: 10, ...greedy });
    expect(turn2.cachedTokens).toBe(afterFirst.length - 1);
    expect(turn2.cacheMiss).toBeUndefined();
    const whole = [...afterFirst, ...model.tokenize(' there lived a king who', { addSpecial: false })];
    expect(turn2.promptTokens).toBe(whole.length);
    expect(turn2.tokens).toEqual((await model.generate(whole, { maxTokens: 10, ...greedy, cachePrompt: false })).tokens);
    expect(session.tokens).toEqual([...whole, ...turn2.tokens]);

    // A fork's sequence starts as a copy of the session's memory (llama_memory_seq_cp).
    const fork = session.fork();
    const [x, y] = await Promise.all([
      session.generate(' and a queen', { maxTokens: 6, ...greedy }),
      fork.generate(' and a queen', { maxTokens: 6, ...greedy }),
    ]);
    expect(y.tokens).toEqual(x.tokens);
    await fork.dispose();
  });
});
