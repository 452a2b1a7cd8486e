// The samplers reach llama.cpp: each option changes seeded output where it should and leaves it as
// it is where its setting is neutral; log probabilities match a full-vocabulary softmax (a greedy
// step's, read from the raw logits, equals the distribution llama.cpp's own sampler draws from at
// temperature 1 with nothing truncated); logit biases, minTokens and ignoreEos move the end of
// generation; n completions each follow their own seed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, type GenerateOptions, type LlamaModel } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';

let model: LlamaModel;
const prompt = 'Once upon a time there was a';
const sampled = { temperature: 1, seed: 1234, maxTokens: 24 } as const;

beforeAll(async () => {
  model = await Llama.load(await syntheticModel('tiny'), { gpu: 'cpu', contextSize: 512, sequences: 4, warmup: false });
});
afterAll(async () => {
  await model?.dispose();
});

const tokensOf = async (options: GenerateOptions) => (await model.generate(prompt, options)).tokens;

describe('log probabilities', () => {
  it("a greedy step's log probabilities are the full softmax of the logits", async () => {
    const greedy = await model.generate(prompt, { temperature: 0, maxTokens: 1, logprobs: true, topLogprobs: 20 });
    // The same step sampled at temperature 1 with nothing truncated: llama.cpp's dist sampler
    // softmaxes every logit, and reports the distribution it drew from.
    const full = await model.generate(prompt, {
      temperature: 1,
      topK: 0,
      topP: 1,
      minP: 0,
      seed: 7,
      maxTokens: 1,
      logprobs: true,
      topLogprobs: 20,
    });
    const a = greedy.logprobs![0]!;
    const b = full.logprobs![0]!;
    expect(a.top.map((t) => t.id)).toEqual(b.top.map((t) => t.id));
    a.top.forEach((t, i) => expect(t.logprob).toBeCloseTo(b.top[i]!.logprob, 4));
    // Greedy takes the most likely token, and its entry is the best alternative's.
    expect(a.id).toBe(a.top[0]!.id);
    expect(a.logprob).toBeCloseTo(a.top[0]!.logprob, 6);
    const mass = a.top.reduce((sum, t) => sum + Math.exp(t.logprob), 0);
    expect(mass).toBeGreaterThan(0);
    expect(mass).toBeLessThanOrEqual(1 + 1e-5);
    expect(a.top.every((t, i) => i === 0 || t.logprob <= a.top[i - 1]!.logprob)).toBe(true);
    expect(Buffer.from(a.bytes).toString('utf8')).toBe(a.token);
  });

  it('a sampled token has the log probability of the distribution it was drawn from (after truncation)', async () => {
    const result = await model.generate(prompt, { ...sampled, topK: 5, logprobs: true, topLogprobs: 8 });
    for (const entry of result.logprobs!) {
      // top-k 5: only five candidates remain, renormalized.
      expect(entry.top.length).toBeLessThanOrEqual(5);
      expect(entry.top.reduce((sum, t) => sum + Math.exp(t.logprob), 0)).toBeCloseTo(1, 4);
      expect(entry.top.some((t) => t.id === entry.id && Math.abs(t.logprob - entry.logprob) < 1e-6)).toBe(true);
    }
    expect(result.logprobs!.map((l) => l.id)).toEqual(result.tokens);
  });

  it('without logprobs there are none; topLogprobs needs logprobs; streams carry them with the text', async () => {
    expect((await model.generate(prompt, { maxTokens: 2, temperature: 0 })).logprobs).toBeUndefined();
    await expect(model.generate(prompt, { topLogprobs: 2 })).rejects.toThrow(/topLogprobs must be set together with logprobs/);
    const seen: number[] = [];
    const result = await model.generate(prompt, {
      maxTokens: 6,
      temperature: 0,
      logprobs: true,
      onText: (_text, _choice, info) => seen.push(...(info.logprobs ?? []).map((l) => l.id)),
    });
    expect(seen).toEqual(result.tokens);
  });
});

describe('each sampler option reaches llama.cpp', () => {
  const changes: [string, GenerateOptions][] = [
    ['typicalP', { typicalP: 0.2 }],
    ['topNSigma', { topNSigma: 0.1 }],
    ['xtc', { xtc: { probability: 1, threshold: 0.001 } }],
    ['dry', { dry: { multiplier: 50, allowedLength: 1, penaltyLastN: 64 }, maxTokens: 64 }],
    ['mirostat v2', { mirostat: { tau: 0.5, eta: 0.5 } }],
    ['mirostat v1', { mirostat: { version: 1, tau: 0.5 } }],
    ['logitBias', { logitBias: [{ token: 'the', bias: 100 }] }],
  ];
  const neutral: [string, GenerateOptions][] = [
    ['typicalP: 1', { typicalP: 1 }],
    ['xtc probability 0', { xtc: { probability: 0 } }],
    ['xtc threshold above 0.5', { xtc: { probability: 1, threshold: 0.6 } }],
    ['dry multiplier 0', { dry: { multiplier: 0 } }],
    ['logitBias of 0', { logitBias: { 5: 0 } }],
  ];

  it.each(changes)('%s changes seeded output', async (_name, option) => {
    const base = await tokensOf({ ...sampled, ...('maxTokens' in option ? { maxTokens: option.maxTokens } : {}) });
    expect(await tokensOf({ ...sampled, ...option })).not.toEqual(base);
  });

  it.each(neutral)('%s leaves seeded output as it is', async (_name, option) => {
    expect(await tokensOf({ ...sampled, ...option })).toEqual(await tokensOf(sampled));
  });

  it('a logit bias of +100 picks its token; -Infinity bans it', async () => {
    const greedy = await tokensOf({ temperature: 0, maxTokens: 4 });
    const banned = await tokensOf({ temperature: 0, maxTokens: 4, logitBias: { [greedy[0]!]: -Infinity } });
    expect(banned[0]).not.toBe(greedy[0]);
    const forced = await tokensOf({ temperature: 0, maxTokens: 4, logitBias: [{ token: 42, bias: 100 }] });
    expect(forced).toEqual([42, 42, 42, 42]);
    await expect(model.generate(prompt, { logitBias: { [model.info.vocabSize]: 1 } })).rejects.toThrow(RangeError);
  });
});

describe('the end of generation', () => {
  const eos = () => model.info.eosToken;

  it('minTokens holds off end-of-generation; ignoreEos never ends before maxTokens', async () => {
    // A bias makes the end the model's every choice.
    const ending = { temperature: 0, logitBias: { [eos()]: 100 }, maxTokens: 10 };
    const plain = await model.generate(prompt, ending);
    expect(plain).toMatchObject({ stopReason: 'eos', tokens: [] });
    const five = await model.generate(prompt, { ...ending, minTokens: 5 });
    expect(five.tokens).toHaveLength(5);
    expect(five.stopReason).toBe('eos');
    const all = await model.generate(prompt, { ...ending, ignoreEos: true });
    expect(all.tokens).toHaveLength(10);
    expect(all.stopReason).toBe('maxTokens');
    expect(all.tokens).not.toContain(eos());
    await expect(model.generate(prompt, { ignoreEos: true })).rejects.toThrow(/maxTokens must be set with ignoreEos/);
  });

  it('a grammar that can only end still ends under ignoreEos', async () => {
    const result = await model.generate(prompt, { grammar: 'root ::= "yes"', ignoreEos: true, maxTokens: 10, temperature: 0 });
    expect(result).toMatchObject({ text: 'yes', stopReason: 'eos' });
  });

  it('includeStopString keeps the stop string; skipSpecialTokens: false writes special tokens out', async () => {
    const text = (await model.generate(prompt, { temperature: 0, maxTokens: 12 })).text;
    const stop = text.slice(4, 7);
    const cut = await model.generate(prompt, { temperature: 0, maxTokens: 12, stop });
    const kept = await model.generate(prompt, { temperature: 0, maxTokens: 12, stop, includeStopString: true });
    expect(kept.text).toBe(cut.text + stop);
    const bos = model.info.bosToken;
    const forced = { temperature: 0, maxTokens: 2, logitBias: { [bos]: 100 } };
    expect((await model.generate(prompt, forced)).text).toBe('');
    expect((await model.generate(prompt, { ...forced, skipSpecialTokens: false })).text).toBe(
      model.detokenize([bos, bos], { special: true }),
    );
  });
});

describe('n completions', () => {
  it('each continues with its own seed (seed + i), as a generation with that seed alone does', async () => {
    const { choices } = await model.generate(prompt, { ...sampled, n: 3, maxTokens: 8 });
    expect(choices).toHaveLength(3);
    for (const [i, choice] of choices!.entries()) {
      const alone = await model.generate(prompt, { ...sampled, seed: sampled.seed + i, maxTokens: 8 });
      // Random weights leave no near-ties to speak of at temperature 1: the draws match.
      expect(choice.tokens, `choice ${i}`).toEqual(alone.tokens);
    }
    await expect(model.generate(prompt, { n: 5 })).rejects.toThrow(/options\.n must be at most 4/);
    // Refused the way stream() refuses any option: through its iterator and its result.
    const stream = model.stream(prompt, { n: 2 });
    await expect(stream.result).rejects.toThrow(/options\.n must be 1 with stream/);
    await expect(stream[Symbol.asyncIterator]().next()).rejects.toThrow(/options\.n must be 1 with stream/);
  });
});
