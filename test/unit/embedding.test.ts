// The pure parts of lib/embedding.ts: the pooling table, normalization, the rerank prompt and the
// input checks, without a model (test/native/embedding.test.ts has the model behind them).
import { describe, expect, it } from 'vitest';
import { normalizeInPlace, poolingName, POOLING_IDS, rerankPrompt, validateTexts } from '../../lib/embedding.js';

describe('embedding helpers', () => {
  it("pooling names are llama.h's numbers both ways", () => {
    expect(POOLING_IDS).toEqual({ none: 0, mean: 1, cls: 2, last: 3, rank: 4 });
    for (const [name, id] of Object.entries(POOLING_IDS)) expect(poolingName(id)).toBe(name);
    expect(() => poolingName(5)).toThrow(RangeError);
  });

  it('normalizes to unit length, and leaves a zero vector at zero', () => {
    const v = Float32Array.of(3, 4);
    normalizeInPlace(v);
    expect(Array.from(v)).toEqual([Math.fround(0.6), Math.fround(0.8)]);
    const zero = Float32Array.of(0, 0);
    normalizeInPlace(zero);
    expect(Array.from(zero)).toEqual([0, 0]);
  });

  it("writes a pair with the file's rerank template, or with llama.cpp's separators", () => {
    const template = { rerankTemplate: '<q>{query}</q><d>{document}</d>', pairSeparator: '' };
    expect(rerankPrompt(template, 'a $& b', 'doc {query}')).toBe('<q>a $& b</q><d>doc {query}</d>');
    expect(rerankPrompt({ rerankTemplate: null, pairSeparator: '</s><s>' }, 'q', 'd')).toBe('q</s><s>d');
  });

  it('takes a string, strings or token arrays, and refuses the rest with typed errors', () => {
    expect(validateTexts('texts', 'one')).toEqual(['one']);
    expect(validateTexts('texts', ['a', [1, 2]])).toEqual(['a', [1, 2]]);
    expect(() => validateTexts('texts', [])).toThrow(RangeError);
    expect(() => validateTexts('texts', [''])).toThrow(/texts\[0\]/);
    expect(() => validateTexts('texts', [1])).toThrow(TypeError);
    expect(() => validateTexts('texts', { 0: 'a' })).toThrow(TypeError);
  });
});
