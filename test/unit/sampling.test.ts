// Sampling options (lib/sampling.ts): validation names the option and says what was expected,
// samplerParams fills every native parameter with its default or the caller's value, and
// resolveLogitBias turns ids and texts into the token ids and biases the sampler takes.
import { describe, expect, it, vi } from 'vitest';
import type { NativeGrammar } from '../../lib/binding/native.js';
import { resolveLogitBias, samplerParams, validateSamplingOptions, type SamplingOptions } from '../../lib/sampling.js';

function thrown(options: Record<string, unknown>): Error | undefined {
  try {
    validateSamplingOptions(options);
  } catch (error) {
    return error as Error;
  }
  return undefined;
}

describe('validateSamplingOptions', () => {
  it('accepts no options, and a complete valid set', () => {
    expect(() => validateSamplingOptions({})).not.toThrow();
    expect(() =>
      validateSamplingOptions({
        temperature: 0,
        topK: 0,
        topP: 1,
        minP: 0,
        typicalP: 0.5,
        topNSigma: 0,
        xtc: { probability: 0.5, threshold: 0.1 },
        dry: { multiplier: 0.8, base: 1, allowedLength: 2, penaltyLastN: 0, sequenceBreakers: ['\n', '###'] },
        mirostat: { tau: 5, eta: 0.1, version: 1 },
        repeatPenalty: 1.1,
        repeatLastN: 64,
        frequencyPenalty: -2,
        presencePenalty: 2,
        logitBias: { 0: -Infinity, 15043: 100, 7: -100 },
        seed: 2 ** 32 - 1,
        logprobs: true,
        topLogprobs: 20,
        // Options other than sampling ones are someone else's to check.
        maxTokens: 5,
      }),
    ).not.toThrow();
  });

  it.each([
    [{ xtc: { probability: 1 } }],
    [{ xtc: { probability: 0, threshold: 1 } }],
    [{ dry: { multiplier: 0 } }],
    [{ dry: { multiplier: 100, base: 100, sequenceBreakers: [] } }],
    [{ mirostat: {} }],
    [{ mirostat: { version: 2 } }],
    [{ logitBias: [] }],
    [
      {
        logitBias: [
          { token: 'hello', bias: 5 },
          { token: 3, bias: -Infinity },
        ],
      },
    ],
    [{ logitBias: { '0': 0 } }],
    [{ topLogprobs: 0 }],
    [{ logprobs: false }],
    [{ typicalP: 1, topNSigma: 100 }],
  ])('accepts %j', (options) => {
    expect(() => validateSamplingOptions(options)).not.toThrow();
  });

  it.each([
    // typicalP and topNSigma
    [{ typicalP: 0 }, RangeError, /options\.typicalP must be a finite number above 0 up to 1, got number 0/],
    [{ typicalP: 1.5 }, RangeError, /options\.typicalP/],
    [{ typicalP: '0.5' }, TypeError, /options\.typicalP must be a number, got the string "0\.5"/],
    [{ topNSigma: -1 }, RangeError, /options\.topNSigma must be a finite number from 0 to 100/],
    [{ topNSigma: 101 }, RangeError, /options\.topNSigma/],
    [{ topNSigma: Infinity }, RangeError, /options\.topNSigma/],
    [{ topNSigma: null }, TypeError, /options\.topNSigma must be a number, got null/],
    // xtc
    [{ xtc: 0.5 }, TypeError, /options\.xtc must be an object, got number 0\.5/],
    [{ xtc: {} }, TypeError, /options\.xtc\.probability must be a number from 0 to 1, got undefined/],
    [{ xtc: { probability: 1.1 } }, RangeError, /options\.xtc\.probability/],
    [{ xtc: { probability: -0.1 } }, RangeError, /options\.xtc\.probability/],
    [{ xtc: { probability: 0.5, threshold: 2 } }, RangeError, /options\.xtc\.threshold/],
    [{ xtc: { probability: 0.5, min: 2 } }, TypeError, /options\.xtc\.min is not an option/],
    // dry
    [{ dry: {} }, TypeError, /options\.dry\.multiplier must be a number from 0 to 100, got undefined/],
    [{ dry: { multiplier: -1 } }, RangeError, /options\.dry\.multiplier/],
    [{ dry: { multiplier: 1, base: 0.5 } }, RangeError, /options\.dry\.base must be a finite number from 1 to 100/],
    [{ dry: { multiplier: 1, allowedLength: 1.5 } }, RangeError, /options\.dry\.allowedLength must be an integer/],
    [{ dry: { multiplier: 1, penaltyLastN: -1 } }, RangeError, /options\.dry\.penaltyLastN/],
    [
      { dry: { multiplier: 1, sequenceBreakers: '\n' } },
      TypeError,
      /options\.dry\.sequenceBreakers must be an array of at most 64 strings/,
    ],
    [{ dry: { multiplier: 1, sequenceBreakers: Array(65).fill('x') } }, TypeError, /options\.dry\.sequenceBreakers must be an array/],
    [
      { dry: { multiplier: 1, sequenceBreakers: ['\n', 5] } },
      TypeError,
      /options\.dry\.sequenceBreakers\[1\] must be a string of 1 to 40 characters, got number 5/,
    ],
    [{ dry: { multiplier: 1, sequenceBreakers: [''] } }, TypeError, /options\.dry\.sequenceBreakers\[0\]/],
    [{ dry: { multiplier: 1, breakers: [] } }, TypeError, /options\.dry\.breakers is not an option/],
    // mirostat
    [{ mirostat: true }, TypeError, /options\.mirostat must be an object/],
    [{ mirostat: { version: 3 } }, RangeError, /options\.mirostat\.version must be 1 or 2, got number 3/],
    [{ mirostat: { version: '2' } }, TypeError, /options\.mirostat\.version must be 1 or 2, got the string "2"/],
    [{ mirostat: { tau: -1 } }, RangeError, /options\.mirostat\.tau/],
    [{ mirostat: { eta: 2 } }, RangeError, /options\.mirostat\.eta/],
    [{ mirostat: { mode: 2 } }, TypeError, /options\.mirostat\.mode is not an option/],
    // logitBias, keyed by ids
    [{ logitBias: 'x' }, TypeError, /options\.logitBias must be an object/],
    [
      { logitBias: { hello: 1 } },
      RangeError,
      /options\.logitBias\["hello"\] must be keyed by a token id.*use \[\{ token: text, bias \}\] for texts/,
    ],
    [{ logitBias: { '-1': 1 } }, RangeError, /options\.logitBias\["-1"\]/],
    [{ logitBias: { '01': 1 } }, RangeError, /options\.logitBias\["01"\]/],
    [{ logitBias: { 5: 101 } }, RangeError, /options\.logitBias\[5\] must be a number from -100 to 100, or -Infinity, got number 101/],
    [{ logitBias: { 5: Infinity } }, RangeError, /options\.logitBias\[5\]/],
    [{ logitBias: { 5: NaN } }, RangeError, /options\.logitBias\[5\]/],
    [{ logitBias: { 5: '1' } }, TypeError, /options\.logitBias\[5\] must be a number/],
    // logitBias, a list of { token, bias }
    [{ logitBias: [5] }, TypeError, /options\.logitBias\[0\] must be an object/],
    [{ logitBias: [{ token: '', bias: 1 }] }, RangeError, /options\.logitBias\[0\]\.token must be a token id or a non-empty text/],
    [{ logitBias: [{ token: -1, bias: 1 }] }, RangeError, /options\.logitBias\[0\]\.token must be an integer from 0/],
    [{ logitBias: [{ token: 1.5, bias: 1 }] }, RangeError, /options\.logitBias\[0\]\.token/],
    [
      { logitBias: [{ bias: 1 }] },
      TypeError,
      /options\.logitBias\[0\]\.token must be an integer token id or a non-empty text, got undefined/,
    ],
    [{ logitBias: [{ token: true, bias: 1 }] }, TypeError, /options\.logitBias\[0\]\.token must be an integer/],
    [{ logitBias: [{ token: 1, bias: -101 }] }, RangeError, /options\.logitBias\[0\]\.bias/],
    [{ logitBias: [{ token: 1 }] }, TypeError, /options\.logitBias\[0\]\.bias must be a number/],
    [{ logitBias: [{ token: 1, bias: 1, weight: 2 }] }, TypeError, /options\.logitBias\[0\]\.weight is not an option/],
    // logprobs
    [{ topLogprobs: 3 }, RangeError, /options\.topLogprobs must be set together with logprobs: true, got number 3/],
    [{ topLogprobs: 3, logprobs: false }, RangeError, /options\.topLogprobs must be set together with logprobs: true/],
    [{ logprobs: true, topLogprobs: 21 }, RangeError, /options\.topLogprobs must be an integer from 0 to 20, got number 21/],
    [{ logprobs: true, topLogprobs: -1 }, RangeError, /options\.topLogprobs/],
    [{ logprobs: 1 }, TypeError, /options\.logprobs must be a boolean/],
    // the rest
    [{ temperature: -0.1 }, RangeError, /options\.temperature/],
    [{ topP: 0 }, RangeError, /options\.topP must be a finite number above 0/],
    [{ topK: 1.5 }, RangeError, /options\.topK must be an integer/],
    [{ seed: 2 ** 32 }, RangeError, /options\.seed/],
    [{ frequencyPenalty: 3 }, RangeError, /options\.frequencyPenalty/],
  ])('refuses %j', (options, type, message) => {
    const error = thrown(options);
    expect(error).toBeInstanceOf(type);
    expect(error!.message).toMatch(message);
  });

  it('gives Node-style codes', () => {
    expect((thrown({ typicalP: 'x' }) as { code?: string }).code).toBe('ERR_INVALID_ARG_TYPE');
    expect((thrown({ typicalP: 2 }) as { code?: string }).code).toBe('ERR_OUT_OF_RANGE');
    expect((thrown({ xtc: { probability: 0.1, x: 1 } }) as { code?: string }).code).toBe('ERR_INVALID_ARG_VALUE');
  });
});

describe('samplerParams', () => {
  it('fills every parameter with its default', () => {
    const { seed, ...params } = samplerParams({});
    expect(params).toEqual({
      temperature: 0.8,
      topK: 40,
      topP: 0.95,
      minP: 0.05,
      typicalP: 1,
      topNSigma: -1,
      xtcProbability: 0,
      xtcThreshold: 0.1,
      repeatPenalty: 1,
      repeatLastN: 64,
      frequencyPenalty: 0,
      presencePenalty: 0,
      dryMultiplier: 0,
      dryBase: 1.75,
      dryAllowedLength: 2,
      dryPenaltyLastN: 64,
      drySequenceBreakers: ['\n', ':', '"', '*'],
      mirostat: 0,
      mirostatTau: 5,
      mirostatEta: 0.1,
      logprobs: -1,
    });
    expect(Number.isInteger(seed)).toBe(true);
    expect(seed).toBeGreaterThanOrEqual(0);
    expect(seed).toBeLessThan(2 ** 32);
  });

  it('maps each option', () => {
    const options: SamplingOptions = {
      temperature: 0,
      topK: 5,
      topP: 0.5,
      minP: 0.1,
      typicalP: 0.9,
      topNSigma: 2,
      xtc: { probability: 0.3, threshold: 0.2 },
      dry: { multiplier: 0.8, base: 2, allowedLength: 3, penaltyLastN: 128, sequenceBreakers: ['###'] },
      mirostat: { tau: 4, eta: 0.2, version: 1 },
      repeatPenalty: 1.1,
      repeatLastN: 32,
      frequencyPenalty: 0.5,
      presencePenalty: -0.5,
      seed: 42,
      logprobs: true,
      topLogprobs: 3,
    };
    expect(samplerParams(options)).toEqual({
      temperature: 0,
      topK: 5,
      topP: 0.5,
      minP: 0.1,
      typicalP: 0.9,
      topNSigma: 2,
      xtcProbability: 0.3,
      xtcThreshold: 0.2,
      repeatPenalty: 1.1,
      repeatLastN: 32,
      frequencyPenalty: 0.5,
      presencePenalty: -0.5,
      dryMultiplier: 0.8,
      dryBase: 2,
      dryAllowedLength: 3,
      dryPenaltyLastN: 128,
      drySequenceBreakers: ['###'],
      mirostat: 1,
      mirostatTau: 4,
      mirostatEta: 0.2,
      seed: 42,
      logprobs: 3,
    });
  });

  it('defaults the parts of xtc, dry and mirostat the caller left out', () => {
    const p = samplerParams({ xtc: { probability: 0.5 }, dry: { multiplier: 1 }, mirostat: {} });
    expect(p).toMatchObject({ xtcProbability: 0.5, xtcThreshold: 0.1, dryMultiplier: 1, dryBase: 1.75, dryAllowedLength: 2 });
    expect(p).toMatchObject({ mirostat: 2, mirostatTau: 5, mirostatEta: 0.1 });
  });

  it('maps logprobs: off, on without alternatives, on with alternatives', () => {
    expect(samplerParams({ logprobs: false, topLogprobs: 3 }).logprobs).toBe(-1);
    expect(samplerParams({ logprobs: true }).logprobs).toBe(0);
    expect(samplerParams({ logprobs: true, topLogprobs: 3 }).logprobs).toBe(3);
  });

  it('passes what lib resolved with the model, and leaves out what it did not', () => {
    const logitBias = { tokens: Int32Array.of(1), biases: Float32Array.of(-Infinity) };
    const grammar: NativeGrammar = { text: 'root ::= "a"', kind: 'user', lazy: false, triggers: [], generationPrompt: '' };
    const p = samplerParams({}, { logitBias, grammar });
    expect(p.logitBias).toBe(logitBias);
    expect(p.grammar).toBe(grammar);
    expect('reasoningBudget' in p).toBe(false);
    expect('logitBias' in samplerParams({})).toBe(false);
    expect('grammar' in samplerParams({})).toBe(false);
  });
});

describe('resolveLogitBias', () => {
  const tokenize = vi.fn((text: string) => Array.from(text, (c) => c.charCodeAt(0)));

  it('is undefined without a bias, or with one that names no token', () => {
    expect(resolveLogitBias(undefined, 1000, tokenize)).toBeUndefined();
    expect(resolveLogitBias({}, 1000, tokenize)).toBeUndefined();
    expect(resolveLogitBias([], 1000, tokenize)).toBeUndefined();
    expect(resolveLogitBias([{ token: 'x', bias: 1 }], 1000, () => [])).toBeUndefined();
  });

  it('passes ids through, from a record keyed by ids', () => {
    const r = resolveLogitBias({ 5: 2.5, 17: -Infinity }, 1000, tokenize)!;
    expect(Array.from(r.tokens)).toEqual([5, 17]);
    expect(Array.from(r.biases)).toEqual([2.5, -Infinity]);
    expect(r.tokens).toBeInstanceOf(Int32Array);
    expect(r.biases).toBeInstanceOf(Float32Array);
  });

  it('tokenizes texts with the given tokenizer, every token getting the bias; ids pass through', () => {
    tokenize.mockClear();
    const r = resolveLogitBias(
      [
        { token: 'ab', bias: -Infinity },
        { token: 7, bias: 3 },
      ],
      1000,
      tokenize,
    )!;
    expect(tokenize).toHaveBeenCalledExactlyOnceWith('ab');
    expect(Array.from(r.tokens)).toEqual([97, 98, 7]);
    expect(Array.from(r.biases)).toEqual([-Infinity, -Infinity, 3]);
    expect(r.biases[0]).toBe(-Infinity);
  });

  it('keeps a token named twice twice (llama.cpp adds the biases)', () => {
    const r = resolveLogitBias(
      [
        { token: 4, bias: 1 },
        { token: 4, bias: 2 },
      ],
      10,
      tokenize,
    )!;
    expect(Array.from(r.tokens)).toEqual([4, 4]);
    expect(Array.from(r.biases)).toEqual([1, 2]);
  });

  it('refuses ids at or above the vocabulary size, naming the entry', () => {
    expect(() => resolveLogitBias({ 10: 1 }, 10, tokenize)).toThrow(RangeError);
    expect(() => resolveLogitBias({ 10: 1 }, 10, tokenize)).toThrow(
      /options\.logitBias\[10\] must be a token id below the model's vocabulary size \(10\), got number 10/,
    );
    expect(() => resolveLogitBias({ 9: 1 }, 10, tokenize)).not.toThrow();
    expect(() =>
      resolveLogitBias(
        [
          { token: 3, bias: 1 },
          { token: 12, bias: 1 },
        ],
        10,
        tokenize,
      ),
    ).toThrow(/options\.logitBias\[1\]\.token/);
    expect(() => resolveLogitBias([{ token: 'a', bias: 1 }], 10, tokenize)).toThrow(/options\.logitBias\[0\]\.token .*got number 97/);
  });
});
