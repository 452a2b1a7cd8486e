// The grammar rows of lib/structured/grammar-guards.ts that are guarded in native/ (the sampler and
// the engine), each driven with input that reaches its llama.cpp line: a dead end under every
// sampler option ends that request with ERR_GRAMMAR and leaves its neighbours in the batch alone;
// an end-of-generation token is never accepted into an unfinished grammar. Also: the native
// %llguidance refusal behind lib's, the JSON grammar repairs (native/grammar.cc), and our
// grammarProblem agreeing with llama.cpp's own parser on what it refuses.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, type GenerateOptions, type LlamaModel } from '../../lib/index.js';
import { nativeBinary } from '../../lib/binding/load-native.js';
import type { NativeModel } from '../../lib/binding/native.js';
import { samplerParams } from '../../lib/sampling.js';
import { GRAMMAR_GUARDS } from '../../lib/structured/grammar-guards.js';
import { syntheticModel } from '../helpers/models.js';

let model: LlamaModel;
let native: NativeModel;
const prompt = 'Once upon a time there was a';
const word = 'Once';
/** A -Infinity bias on every token whose text starts the word: `root ::= "Once"` then allows no token at all. */
let deadEndBias: Record<number, number>;

beforeAll(async () => {
  const path = await syntheticModel('tiny');
  model = await Llama.load(path, { gpu: 'cpu', contextSize: 512, sequences: 4, warmup: false });
  native = await nativeBinary().addon.Model.load(path, { vocabOnly: true });
  deadEndBias = {};
  for (let id = 0; id < model.info.vocabSize; id++) {
    const text = model.detokenize([id]);
    if (text.length > 0 && word.startsWith(text)) deadEndBias[id] = -Infinity;
  }
});
afterAll(async () => {
  await model?.dispose();
  native?.dispose();
});

const guard = (id: string) => GRAMMAR_GUARDS.find((g) => g.id === id)!;

describe('a grammar with no way on (empty-stack, selected)', () => {
  it('the rows are guarded natively', () => {
    expect(guard('empty-stack').guardedIn).toBe('native/sampler.cc');
    expect(guard('selected').guardedIn).toBe('native/sampler.cc');
    expect(Object.keys(deadEndBias).length).toBeGreaterThan(0);
  });

  const samplers: [string, GenerateOptions][] = [
    ['greedy', { temperature: 0 }],
    ['greedy with log probabilities', { temperature: 0, logprobs: true, topLogprobs: 3 }],
    ['temperature', { temperature: 1, seed: 1 }],
    ['sampled with log probabilities', { temperature: 1, seed: 1, logprobs: true, topLogprobs: 3 }],
    ['topK 1', { temperature: 1, topK: 1 }],
    ['topP', { temperature: 1, topP: 0.1 }],
    ['minP', { temperature: 1, minP: 0.9 }],
    ['typicalP', { temperature: 1, typicalP: 0.1 }],
    ['topNSigma', { temperature: 1, topNSigma: 0.1 }],
    ['xtc', { temperature: 1, xtc: { probability: 1, threshold: 0.001 } }],
    ['dry', { temperature: 1, dry: { multiplier: 50, allowedLength: 1 } }],
    ['penalties', { temperature: 1, repeatPenalty: 1.5, frequencyPenalty: 1, presencePenalty: 1 }],
    ['mirostat v1', { mirostat: { version: 1 } }],
    ['mirostat v2', { mirostat: { version: 2 } }],
    ['minTokens', { temperature: 0, minTokens: 3 }],
  ];

  it.each(samplers)('%s: the request ends with ERR_GRAMMAR and its neighbour finishes', async (_name, options) => {
    const neighbour = model.generate(prompt, { temperature: 0, maxTokens: 8 });
    const dead = model.generate(prompt, { ...options, maxTokens: 8, grammar: `root ::= "${word}"`, logitBias: deadEndBias });
    const [deadResult, neighbourResult] = await Promise.allSettled([dead, neighbour]);
    expect(deadResult.status).toBe('rejected');
    expect((deadResult as PromiseRejectedResult).reason).toMatchObject({
      code: 'ERR_GRAMMAR',
      message: expect.stringMatching(/no token can continue/),
    });
    expect(neighbourResult.status).toBe('fulfilled');
    expect((neighbourResult as PromiseFulfilledResult<{ tokens: number[] }>).value.tokens).toHaveLength(8);
  });

  it('a dead end part way through: the text so far is not lost to a crash, and the model serves the next request', async () => {
    // "On" can be written, then nothing: every token with a "c" in it is banned.
    const bias: Record<number, number> = {};
    for (let id = 0; id < model.info.vocabSize; id++) {
      if (model.detokenize([id]).includes('c')) bias[id] = -Infinity;
    }
    const seen: string[] = [];
    await expect(
      model.generate(prompt, { temperature: 0, maxTokens: 8, grammar: 'root ::= "On" "ce"', logitBias: bias, onText: (t) => seen.push(t) }),
    ).rejects.toMatchObject({ code: 'ERR_GRAMMAR' });
    expect(seen.join('')).toBe('On');
    expect((await model.generate(prompt, { temperature: 0, maxTokens: 4, grammar: 'root ::= "On" "ce"' })).text).toBe('Once');
  });
});

describe('the end of generation and an unfinished grammar (eog-refused)', () => {
  it('the row is guarded in the engine', () => {
    expect(guard('eog-refused').guardedIn).toBe('native/engine.cc');
  });

  it('an end-of-generation token pushed up by a bias cannot end a grammar early', async () => {
    const result = await model.generate(prompt, {
      temperature: 0,
      maxTokens: 8,
      grammar: 'root ::= "ab" "cd"',
      logitBias: { [model.info.eosToken]: 100 },
    });
    expect(result).toMatchObject({ text: 'abcd', stopReason: 'eos' });
  });

  it('maxTokens can stop inside a grammar; the next request on the model is unharmed', async () => {
    const cut = await model.generate(prompt, { temperature: 0, maxTokens: 1, grammar: 'root ::= "x" "y" "z"' });
    expect(cut.stopReason).toBe('maxTokens');
    expect(cut.tokens).toHaveLength(1);
    expect(cut.text).not.toBe('');
    expect('xyz'.startsWith(cut.text)).toBe(true);
    expect((await model.generate(prompt, { temperature: 0, maxTokens: 8, grammar: 'root ::= "x" "y" "z"' })).text).toBe('xyz');
  });

  it('a finished grammar under ignoreEos or minTokens ends with end-of-generation, never past the grammar', async () => {
    for (const extra of [{ ignoreEos: true }, { minTokens: 6 }]) {
      const result = await model.generate(prompt, { temperature: 0, maxTokens: 8, grammar: 'root ::= "ok"', ...extra });
      expect(result).toMatchObject({ text: 'ok', stopReason: 'eos' });
    }
  });
});

describe('the native sampler behind lib', () => {
  const rawSampler = (text: string) =>
    new (nativeBinary().addon.Sampler)(
      native,
      samplerParams({ temperature: 0 }, { grammar: { text, kind: 'user', lazy: false, triggers: [], generationPrompt: '' } }),
    );

  it('refuses %llguidance itself (common_sampler_init would abort the process)', () => {
    expect(guard('llguidance').llamaCppSource).toMatch(/^common\/sampling\.cpp:/);
    expect(() => rawSampler('%llguidance {}\nstart: "a"')).toThrow(expect.objectContaining({ code: 'ERR_GRAMMAR' }));
  });

  it("grammarProblem agrees with llama.cpp's parser about what it refuses", () => {
    const { addon } = nativeBinary();
    const cases = [
      'root ::= "a"',
      'root ::= [a-z]+ ("," [a-z]+)*',
      'root ::= x\nx ::= "a" | "b" x',
      'root ::= "a',
      'root ::= undefined-rule',
      'start ::= "a"',
      'root ::= root "a"',
      'root ::= x\nx ::= y "a"\ny ::= x | "b"',
      'root ::= ("a" | )  root',
      'root ::= [a-',
      'root ::= "a"{2,3}',
      'root ::= <[1]> "a"',
      'root ::= "a" # comment\n',
      '',
    ];
    for (const text of cases) {
      const ours = addon.grammarProblem(native, text, 'root');
      let theirs: string | null = null;
      try {
        rawSampler(text).dispose();
      } catch (error) {
        theirs = String((error as Error).message);
      }
      expect({ text, refused: ours !== null }).toEqual({ text, refused: theirs !== null });
    }
  });
});

describe('JSON grammars as llama.cpp writes them, repaired (native/grammar.cc)', () => {
  const { addon } = nativeBinary();

  it('number exponents are bounded and \\u escapes name no lone surrogate', () => {
    const grammar = addon.jsonSchemaToGrammar(
      JSON.stringify({ type: 'object', properties: { n: { type: 'number' }, s: { type: 'string' } }, required: ['n', 's'] }),
    );
    // llama.cpp's exponent is any integral part (1e999999 is Infinity to JSON.parse); ours is two digits.
    expect(grammar).toMatch(/^number ::= .*\(\[eE\] \[-\+\]\? \[0-9\]\{1,2\}\)\?$/m);
    // \uD800-\uDFFF alone is not a character: JSON.parse takes it, but no UTF-8 text can hold it.
    expect(grammar).toMatch(/^char ::= .*\[dD\] \[0-7\] \[0-9a-fA-F\]\{2\}/m);
    expect(grammar).toMatch(/^char ::= \[\^"\\\\\\x7F\\x00-\\x1F\]/m);
  });

  it("a json_object reply's numbers have bounded exponents too (common's generic JSON grammar)", () => {
    const rendered = native.applyChatTemplate(null, [{ role: 'user', content: 'hi' }], { jsonSchema: JSON.stringify({ type: 'object' }) })!;
    expect(rendered.grammar).toMatch(/^json-number ::= .*\(\("e" \| "E"\) \[\+-\]\? \[0-9\]\{1,2\}\)\?$/m);
  });

  it("a response format works where the template's markers are not tokens of the vocabulary", async () => {
    // The test model's ChatML markers are plain text to its SentencePiece vocabulary: common's
    // prefill skips the generation prompt's first token, " <", and the grammar is aligned with that.
    expect(model.tokenize('<|im_start|>', { addSpecial: false }).length).toBeGreaterThan(1);
    const schema = { type: 'object', properties: { a: { type: 'string', maxLength: 5 } }, required: ['a'], additionalProperties: false };
    let finished = 0;
    for (const seed of [1, 2, 3]) {
      const reply = await model.chat([{ role: 'user', content: 'hi' }], {
        responseFormat: { type: 'json_schema', schema },
        temperature: 1,
        seed,
        maxTokens: 60,
      });
      if (reply.stopReason !== 'eos') continue;
      finished++;
      expect(reply.parsed).toEqual({ a: expect.any(String) });
    }
    expect(finished).toBeGreaterThan(0);
  });

  it('a schema-constrained reply is valid JSON for llama.cpp grammar and JSON.parse alike', async () => {
    const schema = { type: 'object', properties: { n: { type: 'number' }, s: { type: 'string', maxLength: 12 } }, required: ['n', 's'] };
    let finished = 0;
    for (const seed of [1, 2, 3, 4, 5]) {
      const result = await model.generate(prompt, { temperature: 1.5, seed, maxTokens: 80, jsonSchema: schema });
      if (result.stopReason !== 'eos') continue;
      finished++;
      expect(() => JSON.parse(result.text)).not.toThrow();
      expect(result.parsed).toMatchObject({ n: expect.any(Number), s: expect.any(String) });
    }
    expect(finished).toBeGreaterThan(0);
  });
});
