// Leak tier, GPU: 100 load/generate/dispose cycles of the tiny model with gpu: 'cuda', the CUDA
// device's free memory (Llama.devices(), ggml's own query) flat after warm-up. Skips with the
// reason on a host without a usable CUDA device; CUDA_LLAMA_REQUIRE_GPU=1 makes that a failure.
//
// Warm-up is the first 10 cycles (the CUDA runtime's per-process context and whatever the driver
// keeps per process are set up there); then free memory is read every 10 cycles. The bound,
// 64 MiB over 90 cycles, is less than one leaked model every ~10 cycles (each cycle puts the
// weights, the KV cache and the compute buffers in VRAM, several MiB) and more than the driver's
// own fluctuation in what it reports free.
import { beforeAll, describe, expect, it } from 'vitest';
import { Llama } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';
import { MiB, slope } from './memory.js';

const CYCLES = 100;
const WARM_UP = 10;
const EVERY = 10;
const BOUND = 64 * MiB;

const build = Llama.build();
const cuda = build.cuda.available;
if (!cuda) {
  const why = `VRAM leak test skipped: ${build.cuda.reason}`;
  if (process.env.CUDA_LLAMA_REQUIRE_GPU === '1') throw new Error(`${why} (CUDA_LLAMA_REQUIRE_GPU=1)`);
  console.warn(why);
}

/** Free memory of the first CUDA device, as ggml reports it. */
function cudaFree(): { name: string; free: number } {
  const device = Llama.devices().find((d) => d.backend === 'CUDA');
  if (!device)
    throw new Error(
      `no CUDA device in Llama.devices(): ${Llama.devices()
        .map((d) => d.name)
        .join(', ')}`,
    );
  return { name: device.name, free: device.memoryFree };
}

describe.skipIf(!cuda)("leaks: VRAM over load/generate/dispose cycles with gpu: 'cuda'", () => {
  let path: string;
  beforeAll(async () => {
    path = await syntheticModel('tiny');
  });

  it(`the CUDA device's free memory stays flat over ${CYCLES} cycles`, async () => {
    const samples: { at: number; used: number }[] = [];
    const before = cudaFree();
    let inUse = 0;
    for (let cycle = 1; cycle <= CYCLES; cycle++) {
      // flashAttention 'auto': CUDA has no flash-attention kernel for this head size (see the GPU suite).
      const model = await Llama.load(path, { gpu: 'cuda', flashAttention: 'auto', contextSize: 256 });
      const result = await model.generate('Leak check', { maxTokens: 4, temperature: 0 });
      expect(result.tokens).toHaveLength(4);
      inUse = Math.max(inUse, before.free - cudaFree().free);
      await model.dispose();
      // Memory in use beyond the start, so that a leak shows as growth, as RSS does.
      if (cycle >= WARM_UP && cycle % EVERY === 0) samples.push({ at: cycle, used: before.free - cudaFree().free });
    }
    const first = samples[0]!;
    const last = samples[samples.length - 1]!;
    const growth = last.used - first.used;
    const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;
    const perCycle = slope(
      samples.map((s) => s.at),
      samples.map((s) => s.used),
    );
    console.log(
      `${before.name} (${mib(before.free)} free at the start): in use ${mib(first.used)} at cycle ${first.at}, ${mib(last.used)} at cycle ${last.at}; ` +
        `growth ${mib(growth)} (bound ${mib(BOUND)}), slope ${(perCycle / 1024).toFixed(2)} KiB per cycle; a loaded model held up to ${mib(inUse)}`,
    );
    console.log(`in use (MiB): ${samples.map((s) => (s.used / MiB).toFixed(1)).join(' ')}`);
    // The check can only see a leak if a model's VRAM shows in the reading at all.
    expect(inUse).toBeGreaterThan(0);
    expect(growth).toBeLessThan(BOUND);
  }, 1_800_000);
});
