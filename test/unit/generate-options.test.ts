// The engine's generate options (cachePrompt, contextShift): validated with the parameter named,
// and translated into what the native submit takes.
import { describe, expect, it } from 'vitest';
import { contextShiftKeep, validateGenerateOptions } from '../../lib/options.js';

describe('cachePrompt and contextShift', () => {
  it('accept what they document', () => {
    expect(validateGenerateOptions({ cachePrompt: false }).cachePrompt).toBe(false);
    expect(validateGenerateOptions({ maxTokens: 10, contextShift: true }).contextShift).toBe(true);
    expect(validateGenerateOptions({ maxTokens: 10, contextShift: { keep: 4 } }).contextShift).toEqual({ keep: 4 });
    expect(validateGenerateOptions({ contextShift: false }).contextShift).toBe(false);
  });

  it('refuse wrong values, naming the parameter', () => {
    expect(() => validateGenerateOptions({ cachePrompt: 'yes' })).toThrow(/options\.cachePrompt/);
    expect(() => validateGenerateOptions({ maxTokens: 5, contextShift: 3 })).toThrow(TypeError);
    expect(() => validateGenerateOptions({ maxTokens: 5, contextShift: { keep: -1 } })).toThrow(/options\.contextShift\.keep/);
    expect(() => validateGenerateOptions({ maxTokens: 5, contextShift: { discard: 2 } })).toThrow(/discard/);
    // A shifting window never fills: without maxTokens nothing would end the generation.
    expect(() => validateGenerateOptions({ contextShift: true })).toThrow(/options\.maxTokens must be set with contextShift/);
  });

  it('contextShiftKeep: -1 when off, 1 by default, else keep', () => {
    expect(contextShiftKeep(undefined)).toBe(-1);
    expect(contextShiftKeep(false)).toBe(-1);
    expect(contextShiftKeep(true)).toBe(1);
    expect(contextShiftKeep({})).toBe(1);
    expect(contextShiftKeep({ keep: 0 })).toBe(0);
    expect(contextShiftKeep({ keep: 7 })).toBe(7);
  });
});
