// Option validation and resolution: every bad value names the parameter and gets a stable code.
import { describe, expect, it } from 'vitest';
import { samplerParams } from '../../lib/sampling.js';
import { contextParams, resolveContextSize, resolveMaxTokens, validateGenerateOptions, validateLoadOptions } from '../../lib/options.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}

describe('validateLoadOptions', () => {
  it('defaults gpu to auto and accepts a complete option set', () => {
    expect(validateLoadOptions(undefined).gpu).toBe('auto');
    const o = validateLoadOptions({
      gpu: 'cuda',
      gpuLayers: 7,
      contextSize: 2048,
      batchSize: 512,
      ubatchSize: 256,
      threads: 4,
      flashAttention: 'on',
      kvCacheType: 'q8_0',
    });
    expect(o).toMatchObject({ gpu: 'cuda', gpuLayers: 7 });
  });

  it.each([
    [{ contextSize: -1 }, 'ERR_OUT_OF_RANGE', /options\.contextSize must be an integer from 1 to/],
    [{ contextSize: '2048' }, 'ERR_INVALID_ARG_TYPE', /options\.contextSize must be an integer, got the string "2048"/],
    [{ gpuLayers: 'all' }, 'ERR_INVALID_ARG_TYPE', /gpuLayers/],
    [{ kvCacheType: 'q3' }, 'ERR_INVALID_ARG_TYPE', /kvCacheType/],
    [{ flashAttn: true }, 'ERR_INVALID_ARG_VALUE', /use flashAttention/],
    [{ tensorSplit: [1, Number.NaN] }, 'ERR_OUT_OF_RANGE', /tensorSplit\[1\]/],
    [{ signal: {} }, 'ERR_INVALID_ARG_TYPE', /AbortSignal/],
    [null, 'ERR_INVALID_ARG_TYPE', /options must be an object/],
    [{ sequences: 0 }, 'ERR_OUT_OF_RANGE', /options\.sequences must be an integer from 1 to 256/],
    [{ sequences: 8, batchSize: 4 }, 'ERR_OUT_OF_RANGE', /options\.batchSize must be at least options\.sequences \(8\)/],
    [
      { contextSize: 16_777_216, sequences: 256 },
      'ERR_OUT_OF_RANGE',
      /options\.contextSize must be at most 16777215 with sequences: 256, got number 16777216 \(llama\.cpp counts/,
    ],
    [{ parallel: 4 }, 'ERR_INVALID_ARG_VALUE', /use sequences/],
    [{ parkedSessionBytes: -1 }, 'ERR_OUT_OF_RANGE', /options\.parkedSessionBytes must be an integer from 0 to/],
  ])('%o -> %s', (options, code, message) => {
    expect(codeOf(() => validateLoadOptions(options))).toBe(code);
    expect(() => validateLoadOptions(options)).toThrow(message);
  });
});

describe('resolution', () => {
  it('context size: 4096 or the training context, never silently more', () => {
    expect(resolveContextSize(undefined, 131072)).toBe(4096);
    expect(resolveContextSize(undefined, 2048)).toBe(2048);
    expect(resolveContextSize(1000, 2048)).toBe(1000);
    expect(codeOf(() => resolveContextSize(4096, 2048))).toBe('ERR_OUT_OF_RANGE');
  });

  it('context params override only what was set', () => {
    const p = contextParams({ threads: 3 }, 1024);
    expect(p).toMatchObject({ nCtx: 1024, nThreads: 3, nThreadsBatch: 3 });
    expect(p.nBatch).toBeUndefined();
    expect(p.flashAttnType).toBeUndefined();
    expect(contextParams({ flashAttention: 'off', kvCacheType: 'q8_0', batchSize: 4096 }, 1024)).toMatchObject({
      flashAttnType: 0,
      typeK: 8,
      typeV: 8,
      nBatch: 1024,
    });
  });

  it('sequences: each gets contextSize, so the cache (n_ctx) holds contextSize x sequences', () => {
    expect(contextParams({}, 1024)).toMatchObject({ nCtx: 1024, nSeqMax: undefined });
    expect(contextParams({ sequences: 4, batchSize: 8192 }, 1024)).toMatchObject({ nCtx: 4096, nSeqMax: 4, nBatch: 4096 });
  });

  it('parkedSessionBytes: 256 MiB unless set; 0 parks nothing', () => {
    expect(contextParams({}, 1024).parkedSessionBytes).toBe(256 * 2 ** 20);
    expect(contextParams({ parkedSessionBytes: 0 }, 1024).parkedSessionBytes).toBe(0);
  });

  it('maxTokens is bounded by the room left in the context', () => {
    expect(resolveMaxTokens(undefined, 100, 10)).toBe(90);
    expect(resolveMaxTokens(5, 100, 10)).toBe(5);
    expect(resolveMaxTokens(Number.MAX_SAFE_INTEGER, 100, 10)).toBe(90);
  });

  it('generate options: stop sequences normalised, defaults applied in one place', () => {
    expect(validateGenerateOptions({ stop: 'x' }).stopSequences).toEqual(['x']);
    expect(validateGenerateOptions({}).stopSequences).toEqual([]);
    expect(samplerParams({ temperature: 0, seed: 7 })).toMatchObject({ temperature: 0, seed: 7, topK: 40, repeatPenalty: 1 });
    expect(codeOf(() => validateGenerateOptions({ temperature: Number.NaN }))).toBe('ERR_OUT_OF_RANGE');
    expect(codeOf(() => validateGenerateOptions({ maxTokens: 0 }))).toBe('ERR_OUT_OF_RANGE');
    expect(codeOf(() => validateGenerateOptions({ nPredict: 3 }))).toBe('ERR_INVALID_ARG_VALUE');
    expect(() => validateGenerateOptions({ nPredict: 3 })).toThrow(/use maxTokens/);
  });
});

describe('defaultThreadCount', async () => {
  const { defaultThreadCount } = await import('../../lib/options.js');
  it('counts physical cores, not SMT siblings', () => {
    const block = (cpu: number, core: number) => `processor\t: ${cpu}\nphysical id\t: 0\ncore id\t\t: ${core}\n`;
    const smt = [block(0, 0), block(1, 0)].join('\n');
    expect(defaultThreadCount(smt)).toBe(1);
    expect(defaultThreadCount('')).toBeGreaterThan(0); // no topology: the logical count
  });
});
