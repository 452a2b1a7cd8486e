// Leak tier: 1000 load/generate/dispose cycles of the tiny model on the CPU, memory flat after
// warm-up. Warm-up is the first 250 cycles: malloc's arena and the page cache of the model file
// settle there, and native memory may climb for a few hundred cycles before it levels off for
// good, which a leak would not do. From then on memory is sampled after a full GC every 50
// cycles, under vitest.leak.config.ts (--expose-gc, one malloc arena: it says why), and the growth
// from cycle 250 to cycle 1000 must stay under the bounds. The file takes a few minutes on two cores.
//
// Native bound, 32 MiB over 750 cycles: less than one leaked model every ~25 cycles. Each cycle maps
// and touches the model's 8 MiB of weights and allocates the KV cache and compute buffers, so
// leaking the model, the context or a cycle's buffers grows native memory by gigabytes here; what
// stays under the bound is allocator noise, or a leak below ~44 KiB per cycle (the printed slope
// shows it). JS bound, 4 MiB: a LlamaModel with its info objects kept alive per cycle exceeds it.
import { beforeAll, describe, expect, it } from 'vitest';
import { Llama } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';
import { MiB, canCollect, describeTrend, sample, series, trend, type Sample } from './memory.js';

const CYCLES = 1000;
const WARM_UP = 250;
const EVERY = 50;
const NATIVE_BOUND = 32 * MiB;
const JS_BOUND = 4 * MiB;

let path: string;

beforeAll(async () => {
  path = await syntheticModel('tiny');
});

describe('leaks: load/generate/dispose cycles', () => {
  it(`memory stays flat over ${CYCLES} load/generate/dispose cycles`, async () => {
    expect(canCollect, 'run through npm run test:leak, whose config passes --expose-gc').toBe(true);
    const samples: Sample[] = [];
    const started = performance.now();
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      const model = await Llama.load(path, { gpu: 'cpu', contextSize: 256 });
      const result = await model.generate('Leak check', { maxTokens: 4, temperature: 0 });
      expect(result.tokens).toHaveLength(4);
      await model.dispose();
      if (cycle >= WARM_UP && cycle % EVERY === 0) samples.push(await sample(cycle));
    }
    const native = trend(samples, 'native');
    const js = trend(samples, 'heapUsed');
    console.log(describeTrend('RSS', 'cycle', samples, trend(samples, 'rss')));
    console.log(describeTrend('native (RSS - V8 heap)', 'cycle', samples, native, NATIVE_BOUND));
    console.log(describeTrend('live JS heap', 'cycle', samples, js, JS_BOUND));
    console.log(
      `${CYCLES} cycles in ${((performance.now() - started) / 1000).toFixed(0)} s; RSS samples (MiB): ${series(samples, 'rss')}; native: ${series(samples, 'native')}`,
    );
    expect(native.growth).toBeLessThan(NATIVE_BOUND);
    expect(js.growth).toBeLessThan(JS_BOUND);
  }, 1_800_000);
});
