// Leak tier: 10 000 short generations (1 to 4 tokens) on one model, memory flat after warm-up.
// The calls take every path a request can: generate greedy and sampled, with a stop sequence,
// stream read to the end or broken off after the first piece, and aborted before it starts.
// Warm-up is the first 1000; then memory is sampled after a full GC every 500 generations, under
// vitest.leak.config.ts (--expose-gc, one malloc arena: it says why). The file takes well under a
// minute on two cores.
//
// Native bound, 4 MiB over 9000 generations: a leak of about 450 bytes per generation, so one
// sampler chain, one request's prompt and token buffers or one job left behind per call exceeds
// it; below that is allocator noise (the printed slope shows what there is). JS bound, 2 MiB:
// about 230 bytes per generation, less than one result object (tokens, text, timings) kept alive.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, type LlamaModel } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';
import { MiB, canCollect, describeTrend, sample, series, trend, type Sample } from './memory.js';

const GENERATIONS = 10_000;
const WARM_UP = 1000;
const EVERY = 500;
const NATIVE_BOUND = 4 * MiB;
const JS_BOUND = 2 * MiB;
const PROMPTS = ['The quick brown fox', 'Once upon a time', 'Hello', 'A'];

let model: LlamaModel;

beforeAll(async () => {
  model = await Llama.load(await syntheticModel('tiny'), { gpu: 'cpu', contextSize: 256 });
});

afterAll(async () => {
  await model?.dispose();
});

/** One short generation of kind i % 6; returns how many tokens it made. */
async function shortGeneration(i: number): Promise<number> {
  const prompt = PROMPTS[i % PROMPTS.length]!;
  const maxTokens = 1 + (i % 4);
  switch (i % 6) {
    case 0:
      return (await model.generate(prompt, { maxTokens, temperature: 0 })).tokens.length;
    case 1:
      return (await model.generate(prompt, { maxTokens, temperature: 0.8, seed: i })).tokens.length;
    case 2:
      return (await model.generate(prompt, { maxTokens, temperature: 0, stop: ['\n', 'the'] })).tokens.length;
    case 3: {
      const stream = model.stream(prompt, { maxTokens, temperature: 0 });
      for await (const _ of stream);
      return (await stream.result).tokens.length;
    }
    case 4: {
      const stream = model.stream(prompt, { maxTokens, temperature: 0 });
      for await (const _ of stream) break;
      return (await stream.result).tokens.length;
    }
    default: {
      const signal = AbortSignal.abort();
      return (await model.generate(prompt, { maxTokens, signal, stopOnAbort: true })).tokens.length;
    }
  }
}

describe('leaks: short generations on one model', () => {
  it(`memory stays flat over ${GENERATIONS} generations of 1 to 4 tokens`, async () => {
    expect(canCollect, 'run through npm run test:leak, whose config passes --expose-gc').toBe(true);
    const samples: Sample[] = [];
    const started = performance.now();
    let tokens = 0;
    for (let i = 1; i <= GENERATIONS; i++) {
      tokens += await shortGeneration(i);
      if (i >= WARM_UP && i % EVERY === 0) samples.push(await sample(i));
    }
    const native = trend(samples, 'native');
    const js = trend(samples, 'heapUsed');
    console.log(describeTrend('RSS', 'generation', samples, trend(samples, 'rss')));
    console.log(describeTrend('native (RSS - V8 heap)', 'generation', samples, native, NATIVE_BOUND));
    console.log(describeTrend('live JS heap', 'generation', samples, js, JS_BOUND));
    console.log(
      `${GENERATIONS} generations (${tokens} tokens) in ${((performance.now() - started) / 1000).toFixed(0)} s; ` +
        `RSS samples (MiB): ${series(samples, 'rss')}; native: ${series(samples, 'native')}`,
    );
    expect(tokens).toBeGreaterThan(GENERATIONS);
    expect(native.growth).toBeLessThan(NATIVE_BOUND);
    expect(js.growth).toBeLessThan(JS_BOUND);
  }, 1_800_000);
});
