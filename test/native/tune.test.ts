// Llama.tune on the CPU with the tiny synthetic model: it measures every candidate it names,
// recommends the fastest with reasons and pasteable options, and the warm-up load option.
import { describe, expect, it } from 'vitest';
import { ErrorCode, Llama } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';

describe('Llama.tune', () => {
  it('measures the CPU candidates for a workload and recommends the fastest', async () => {
    const path = await syntheticModel('tiny');
    const progress: string[] = [];
    const result = await Llama.tune(path, {
      gpu: 'cpu',
      promptTokens: 40,
      outputTokens: 8,
      repetitions: 1,
      threads: 1,
      onProgress: (l) => progress.push(l),
    });
    expect(result.workload).toEqual({ promptTokens: 40, outputTokens: 8, sequences: 1 });
    // The workload needs 40 + 8 tokens (256 after padding); the default (the model's 2048) is tried once to show its cost.
    expect(result.candidates.map((c) => c.name)).toEqual([
      'CPU',
      'CPU, flash attention on',
      'CPU, flash attention off',
      'CPU, contextSize 2048',
    ]);
    for (const c of result.candidates) {
      expect(c.error).toBeUndefined();
      expect(c.requestMs).toBeGreaterThan(0);
      expect(c.options.gpu).toBe('cpu');
      expect(c.layerReport).toMatch(/^offloaded: 0\/4 layers/);
    }
    // The oversized context is measured to show its cost, never recommended: it cannot be faster but by noise.
    const fastest = Math.min(...result.candidates.filter((c) => !c.contextCostOnly).map((c) => c.requestMs!));
    expect(result.best.requestMs).toBe(fastest);
    expect(result.best.contextCostOnly).toBeUndefined();
    expect(result.recommended).toEqual(result.best.options);
    const small = result.candidates.find((c) => c.name === 'CPU')!;
    const big = result.candidates.find((c) => c.name === 'CPU, contextSize 2048')!;
    expect(small.options.contextSize).toBe(256);
    expect(big.kvCacheBytes).toBe(small.kvCacheBytes! * 8);
    expect(result.reasons[0]).toContain(`Fastest for a 40-token prompt with 8 tokens out: ${result.best.name}`);
    expect(result.reasons.some((r) => /^A contextSize of 2048 costs \d+ [KM]iB of KV cache/.test(r))).toBe(true);
    expect(result.reasons.some((r) => /^Flash attention (on|off) is \d+% faster/.test(r))).toBe(true);
    expect(result.reasons.at(-1)).toMatch(/^Paste: Llama\.load\(path, \{ gpu: 'cpu', contextSize: \d+/);
    expect(progress.filter((l) => l.startsWith('measuring '))).toHaveLength(4);
  });

  it('with several requests at once, runs them together and also one after another, and says which wins', async () => {
    const path = await syntheticModel('tiny');
    const result = await Llama.tune(path, { gpu: 'cpu', promptTokens: 24, outputTokens: 8, sequences: 3, repetitions: 1, threads: 1 });
    expect(result.workload).toEqual({ promptTokens: 24, outputTokens: 8, sequences: 3 });
    const alone = result.candidates.find((c) => c.oneAtATime)!;
    expect(alone).toMatchObject({ name: 'CPU, one request at a time', options: { gpu: 'cpu', contextSize: 256, threads: 1 } });
    expect(alone.options.sequences).toBeUndefined();
    for (const c of result.candidates.filter((x) => !x.oneAtATime)) {
      expect(c.options.sequences).toBe(3);
      expect(c.requestMs).toBeGreaterThan(0);
    }
    expect(result.reasons[0]).toMatch(/^Fastest for 3 requests at once, each a 24-token prompt with 8 tokens out: .*for all 3/);
    expect(
      result.reasons.some((r) =>
        /^(Running the 3 requests together \(sequences: 3\) is [\d.]+x faster than one after another|One request after another is [\d.]+x faster than running the 3 together)/.test(
          r,
        ),
      ),
    ).toBe(true);
    expect(result.reasons.at(-1)).toMatch(
      result.best.oneAtATime ? /^Paste: Llama\.load\(path, \{ gpu: 'cpu', contextSize: 256, threads: 1 \}\)$/ : /sequences: 3/,
    );
  });

  // On a GPU host there is nothing to refuse; the GPU suite runs tune there.
  it.skipIf(Llama.build().cuda.available)("with gpu: 'cuda' and no usable CUDA refuses like a load does", async () => {
    const path = await syntheticModel('tiny');
    await expect(Llama.tune(path, { gpu: 'cuda' })).rejects.toMatchObject({ code: ErrorCode.CUDA_UNAVAILABLE });
  });

  it('rejects unknown and invalid options with a hint', async () => {
    const path = await syntheticModel('tiny');
    await expect(Llama.tune(path, { maxTokens: 4 } as never)).rejects.toThrow(/use outputTokens/);
    await expect(Llama.tune(path, { promptTokens: 0 })).rejects.toThrow(RangeError);
  });
});

describe('load warm-up', () => {
  it('is on by default and can be turned off; both give the same greedy output', async () => {
    const path = await syntheticModel('tiny');
    const warmed = await Llama.load(path, { gpu: 'cpu', contextSize: 256 });
    const cold = await Llama.load(path, { gpu: 'cpu', contextSize: 256, warmup: false });
    try {
      const a = await warmed.generate('Once upon a time', { maxTokens: 8, temperature: 0 });
      const b = await cold.generate('Once upon a time', { maxTokens: 8, temperature: 0 });
      expect(a.tokens).toEqual(b.tokens);
      await cold.warmUp();
      expect((await cold.generate('Once upon a time', { maxTokens: 8, temperature: 0 })).tokens).toEqual(a.tokens);
    } finally {
      await warmed.dispose();
      await cold.dispose();
    }
    await expect(Llama.load(path, { gpu: 'cpu', warmup: 'yes' } as never)).rejects.toThrow(TypeError);
  });
});
