// Structured output on a random-weight model: seeded sampling at temperature 1, where nothing but
// the grammar keeps the output in shape. Every output of every schema parses and validates (with
// Ajv and its formats, apart from the library's own check); a GBNF grammar holds the output; a
// reasoning model thinks within its budget and the JSON lands in the answer, never in the
// reasoning; n completions share one prompt evaluation.
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, type JsonSchema, type LlamaModel } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';
import { toolFamilyModel } from '../helpers/tool-families.js';

const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => Ajv;
const ajv = addFormats(new Ajv({ strict: false }));

/** The conformance set: each kind of constraint llama.cpp's grammar enforces, alone and together. */
const SCHEMAS: Record<string, JsonSchema> = {
  enum: { enum: ['red', 'green', 'blue', 42, null, true] },
  'nested objects': {
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 10 },
      address: {
        type: 'object',
        properties: { city: { type: 'string', maxLength: 8 }, zip: { type: 'integer', minimum: 10000, maximum: 99999 } },
        required: ['city'],
        additionalProperties: false,
      },
    },
    required: ['name', 'address'],
    additionalProperties: false,
  },
  'arrays with bounds': {
    type: 'object',
    properties: {
      tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, minItems: 1, maxItems: 3 },
      scores: { type: 'array', items: { type: 'integer', minimum: -5, maximum: 5 }, maxItems: 4 },
    },
    required: ['tags', 'scores'],
    additionalProperties: false,
  },
  'required and optional fields': {
    type: 'object',
    properties: {
      id: { type: 'integer', minimum: 0, maximum: 999 },
      note: { type: 'string', maxLength: 6 },
      flag: { type: 'boolean' },
      nothing: { type: 'null' },
    },
    required: ['id'],
    additionalProperties: false,
  },
  anyOf: {
    anyOf: [
      {
        type: 'object',
        properties: { kind: { const: 'circle' }, r: { type: 'integer', minimum: 1, maximum: 9 } },
        required: ['kind', 'r'],
        additionalProperties: false,
      },
      {
        type: 'object',
        properties: { kind: { const: 'square' }, side: { type: 'number' } },
        required: ['kind', 'side'],
        additionalProperties: false,
      },
      { type: 'array', items: { type: 'boolean' }, maxItems: 2 },
    ],
  },
  'string lengths': {
    type: 'object',
    properties: { short: { type: 'string', maxLength: 2 }, exact: { type: 'string', minLength: 3, maxLength: 3 } },
    required: ['short', 'exact'],
    additionalProperties: false,
  },
  patterns: {
    type: 'object',
    properties: {
      code: { type: 'string', pattern: '^[A-Z]{2}-[0-9]{3}$' },
      choice: { type: 'string', pattern: '^(?:yes|no|maybe)$' },
      word: { type: 'string', pattern: '^[a-z]{1,12}(?:_[a-z0-9]{1,6}){0,2}$' },
    },
    required: ['code', 'choice', 'word'],
    additionalProperties: false,
  },
  'refs, tuples and formats': {
    $defs: { point: { type: 'array', items: [{ type: 'integer' }, { type: 'integer' }] } },
    type: 'object',
    properties: {
      from: { $ref: '#/$defs/point' },
      to: { $ref: '#/$defs/point' },
      id: { type: 'string', format: 'uuid' },
      at: { type: 'string', format: 'time' },
    },
    required: ['from', 'to', 'id', 'at'],
    additionalProperties: false,
  },
};

describe('JSON schema conformance (seeded sampling at temperature 1)', () => {
  let model: LlamaModel;
  beforeAll(async () => {
    model = await Llama.load(await syntheticModel('tiny'), { gpu: 'cpu', contextSize: 1024, sequences: 4, warmup: false });
  });
  afterAll(async () => {
    await model?.dispose();
  });

  it.each(Object.keys(SCHEMAS))('%s: every output parses and validates', async (name) => {
    const schema = SCHEMAS[name]!;
    const validate = ajv.compile(schema);
    for (const seed of [1, 5, 9]) {
      // Four completions a call (n): the prompt once, each its own seed.
      const result = await model.generate('{"answer": ', { jsonSchema: schema, temperature: 1, seed, n: 4, maxTokens: 700 });
      for (const choice of result.choices!) {
        expect(choice.stopReason, `${name} seed ${seed}: ${choice.text}`).toBe('eos');
        const value: unknown = JSON.parse(choice.text);
        expect(validate(value), `${name}: ${choice.text} ${JSON.stringify(validate.errors)}`).toBe(true);
        expect(choice.parsed).toEqual(value);
        expect(choice.parseError).toBeUndefined();
      }
    }
  });

  it('n completions evaluate the prompt once: the others get a copy of its KV cache', async () => {
    const result = await model.generate('Tell me a story about a dog and a cat.', {
      temperature: 1,
      seed: 3,
      n: 3,
      maxTokens: 6,
      cachePrompt: false,
    });
    const choices = result.choices!;
    expect(choices).toHaveLength(3);
    expect(choices[0]).toMatchObject({ text: result.text, tokens: result.tokens, cacheSource: 'evaluated' });
    for (const choice of choices.slice(1)) {
      expect(choice.cacheSource).toBe('shared');
      expect(choice.promptTokens).toBe(result.promptTokens);
    }
    expect(new Set(choices.map((c) => c.tokens.join(','))).size).toBeGreaterThan(1); // each its own seed
  });

  it('a GBNF grammar holds the output', async () => {
    const grammar = 'root ::= "(" [0-9]{1,3} " " ("+" | "-") " " [0-9]{1,3} ")" [.!]?';
    for (const seed of [1, 2, 3, 4]) {
      const { text, stopReason } = await model.generate('x', { grammar, temperature: 1, seed, maxTokens: 40 });
      expect(stopReason).toBe('eos');
      expect(text).toMatch(/^\([0-9]{1,3} [+-] [0-9]{1,3}\)[.!]?$/);
    }
  });
});

describe('a reasoning model with a JSON response format', () => {
  let model: LlamaModel;
  beforeAll(async () => {
    // DeepSeek R1's template opens the thinking block in the prompt: the model always thinks first.
    model = await Llama.load(await toolFamilyModel('deepseek-r1'), { gpu: 'cpu', contextSize: 4096, warmup: false });
  });
  afterAll(async () => {
    await model?.dispose();
  });

  it('thinks within its budget, then answers with the JSON, which never lands in the reasoning', async () => {
    const schema = SCHEMAS['nested objects']!;
    const validate = ajv.compile(schema);
    for (const seed of [1, 2, 3]) {
      const result = await model.chat([{ role: 'user', content: 'Give me a person as JSON.' }], {
        responseFormat: { type: 'json_schema', schema },
        reasoning: { enabled: true, budget: 8 },
        temperature: 1,
        seed,
        maxTokens: 800,
      });
      expect(result.parseError, result.rawText).toBeUndefined();
      expect(validate(result.parsed)).toBe(true);
      expect(JSON.parse(result.text)).toEqual(result.parsed);
      expect(result.reasoning).not.toContain(result.text.trim());
      expect(result.reasoning).not.toBe('');
      expect(model.tokenize(result.reasoning, { addSpecial: false }).length).toBeLessThanOrEqual(10);
    }
  });
});
