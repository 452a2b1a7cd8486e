// Several prompts decoded together (model.generateBatch, the `sequences` load option): the same
// tokens as one prompt at a time, per-sequence stops and limits, and the KV cache it costs.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, type LlamaModel, ErrorCode } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';

const prompts = [
  'Once upon a time',
  'The capital of France is a city with a long history of art, science and revolutions',
  'hello',
  'one two three four five six seven eight nine ten eleven twelve thirteen fourteen',
];

let model: LlamaModel;
let path: string;

beforeAll(async () => {
  path = await syntheticModel('tiny');
  // batchSize 16: the prompts (5 to 20 tokens) straddle batches, so a prompt's end and the
  // sampling of its first token fall in different decodes for different sequences.
  // threads: 2, so that a step's greedy rows go to the threadpool even on a one-core machine.
  model = await Llama.load(path, { gpu: 'cpu', contextSize: 256, sequences: 4, batchSize: 16, threads: 2 });
});

afterAll(async () => {
  await model?.dispose();
});

describe('generateBatch', () => {
  it('gives each prompt its own window of contextSize, and the KV cache holds all of them', async () => {
    expect(model.contextInfo).toMatchObject({ contextSize: 256, totalContextSize: 1024, sequences: 4, batchSize: 16 });
    await using single = await Llama.load(path, { gpu: 'cpu', contextSize: 256 });
    expect(single.contextInfo).toMatchObject({ contextSize: 256, totalContextSize: 256, sequences: 1 });
    const kvBytes = async (m: LlamaModel) => (await m.layerReport()).kvCache.bytes;
    expect(await kvBytes(model)).toBe(4 * (await kvBytes(single)));
  });

  // One prompt's token is one row on the context thread; a batch's rows are picked together on the
  // threadpool (contextInfo.threadpoolArgmax, native/argmax.h), or one after another with one
  // thread: all three must agree.
  it('produces the same greedy tokens as generating one prompt at a time', async () => {
    expect(model.contextInfo.threadpoolArgmax).toBe(true);
    const one = [];
    for (const prompt of prompts) one.push(await model.generate(prompt, { maxTokens: 20, temperature: 0 }));
    const batch = await model.generateBatch(prompts, { maxTokens: 20, temperature: 0 });
    expect(batch.results.map((r) => r.tokens)).toEqual(one.map((r) => r.tokens));
    expect(batch.results.map((r) => r.text)).toEqual(one.map((r) => r.text));
    expect(batch.results.map((r) => r.promptTokens)).toEqual(prompts.map((p) => model.tokenize(p).length));
    expect(batch.results.every((r) => r.stopReason === 'maxTokens')).toBe(true);
    expect(batch.timings.promptTokens).toBe(batch.results.reduce((sum, r) => sum + r.promptTokens, 0));
    expect(batch.timings.generatedTokens).toBe(80);
    expect(batch.timings.tokensPerSecond).toBeGreaterThan(0);
    expect(batch.timings.promptMs).toBeGreaterThan(0);
    await using oneThread = await Llama.load(path, { gpu: 'cpu', contextSize: 256, sequences: 4, threads: 1 });
    expect(oneThread.contextInfo.threadpoolArgmax).toBe(false);
    const serial = await oneThread.generateBatch(prompts, { maxTokens: 20, temperature: 0 });
    expect(serial.results.map((r) => r.tokens)).toEqual(one.map((r) => r.tokens));
  });

  it("streams each prompt's text with its index", async () => {
    const pieces: string[] = ['', '', ''];
    const batch = await model.generateBatch(prompts.slice(0, 3), {
      maxTokens: 12,
      temperature: 0,
      onText: (text, index) => (pieces[index] += text),
    });
    expect(pieces).toEqual(batch.results.map((r) => r.text));
  });

  it('stops one sequence at its stop sequence while the others go on', async () => {
    const free = await model.generateBatch(prompts, { maxTokens: 16, temperature: 0 });
    const texts = free.results.map((r) => r.text);
    // A piece of the first text that no other text contains.
    let stop: string | undefined;
    for (let at = 2; at < texts[0]!.length - 3 && stop === undefined; at++) {
      const candidate = texts[0]!.slice(at, at + 3);
      if (candidate.trim().length === 3 && texts.slice(1).every((t) => !t.includes(candidate))) stop = candidate;
    }
    expect(stop, `no distinctive stop string in ${JSON.stringify(texts)}`).toBeDefined();
    const stopped = await model.generateBatch(prompts, { maxTokens: 16, temperature: 0, stop });
    expect(stopped.results[0]).toMatchObject({
      stopReason: 'stop',
      stopSequence: stop,
      text: texts[0]!.slice(0, texts[0]!.indexOf(stop!)),
    });
    expect(stopped.results.slice(1).map((r) => [r.stopReason, r.text])).toEqual(free.results.slice(1).map((r) => ['maxTokens', r.text]));
  });

  it('samples prompt i with seed + i: reproducible, and equal prompts still differ', async () => {
    const opts = { maxTokens: 10, temperature: 1.5, topK: 0, topP: 1, minP: 0, seed: 7 };
    const same = await model.generateBatch(['Once upon a time', 'Once upon a time'], opts);
    const again = await model.generateBatch(['Once upon a time', 'Once upon a time'], opts);
    expect(again.results.map((r) => r.tokens)).toEqual(same.results.map((r) => r.tokens));
    expect(same.results[1]!.tokens).not.toEqual(same.results[0]!.tokens);
    expect((await model.generate('Once upon a time', opts)).tokens).toEqual(same.results[0]!.tokens);
    expect((await model.generate('Once upon a time', { ...opts, seed: 8 })).tokens).toEqual(same.results[1]!.tokens);
  });

  it('aborts every sequence with the signal reason, or returns what it has with stopOnAbort', async () => {
    const reason = new Error('enough');
    const controller = new AbortController();
    const running = model.generateBatch(prompts, {
      maxTokens: 200,
      temperature: 0,
      signal: controller.signal,
      onText: () => controller.abort(reason),
    });
    await expect(running).rejects.toBe(reason);

    const quiet = new AbortController();
    const partial = await model.generateBatch(prompts, {
      maxTokens: 200,
      temperature: 0,
      signal: quiet.signal,
      stopOnAbort: true,
      onText: () => quiet.abort(),
    });
    expect(partial.results.every((r) => r.stopReason === 'abort' && r.tokens.length < 200)).toBe(true);
  });

  it('refuses more prompts than sequences, an empty list and a prompt longer than its window', async () => {
    await expect(model.generateBatch(prompts.concat('five'))).rejects.toThrow(
      /prompts\.length must be at most 4 \(the model was loaded with sequences: 4\), got number 5 \(load with \{ sequences: 5 \} to generate for 5 prompts at once\)/,
    );
    await expect(model.generateBatch([])).rejects.toThrow(TypeError);
    await expect(model.generateBatch(['ok', 'x '.repeat(300)])).rejects.toMatchObject({
      code: ErrorCode.CONTEXT_FULL,
      message: expect.stringMatching(/^prompts\[1\] has \d+ tokens; the context holds 256/),
    });
    await expect(model.generateBatch(['ok', [1, 99_999]])).rejects.toThrow(/prompts\[1\]\[1\] must be a token id/);
  });

  it('queues with generate() calls on the same model and runs after them', async () => {
    const [single, batch] = await Promise.all([
      model.generate(prompts[0]!, { maxTokens: 8, temperature: 0 }),
      model.generateBatch(prompts.slice(0, 2), { maxTokens: 8, temperature: 0 }),
    ]);
    expect(batch.results[0]!.tokens).toEqual(single.tokens);
  });
});
