// JSON Schemas for structured output (lib/structured/json-schema.ts): the schemas llama.cpp's
// grammar conversion enforces exactly are accepted (and Ajv agrees with a sample value), every
// kind of schema it would not hold the output to is ERR_JSON_SCHEMA naming the keyword and its
// JSON pointer, and schemaViolation reads results back.
import { describe, expect, it } from 'vitest';
import { CudaLlamaError, ErrorCode, JsonSchemaError } from '../../lib/errors.js';
import {
  MAX_SCHEMA_BYTES,
  MAX_SCHEMA_DEPTH,
  checkJsonSchema,
  compileValidator,
  schemaViolation,
  type JsonSchema,
} from '../../lib/structured/json-schema.js';

const WHERE = 'options.jsonSchema';

/** The error checkJsonSchema throws for `schema`, or undefined. */
function refusal(schema: unknown): JsonSchemaError | undefined {
  try {
    checkJsonSchema(schema, WHERE);
  } catch (error) {
    return error as JsonSchemaError;
  }
  return undefined;
}

function show(value: unknown): string {
  try {
    return String(JSON.stringify(value)).slice(0, 200);
  } catch {
    return String(value);
  }
}

/** Asserts the refusal: ERR_JSON_SCHEMA, the pointer in the message and in details, and what the message must say. */
function expectRefused(schema: unknown, pointer: string, says: RegExp | string) {
  const error = refusal(schema);
  expect(error, `accepted: ${show(schema)}`).toBeInstanceOf(CudaLlamaError);
  expect(error).toBeInstanceOf(JsonSchemaError);
  expect(error!.code).toBe(ErrorCode.JSON_SCHEMA);
  expect(error!.code).toBe('ERR_JSON_SCHEMA');
  expect(error!.message.startsWith(WHERE)).toBe(true);
  if (pointer !== '') expect(error!.message).toContain(`${WHERE} at ${pointer}:`);
  expect(error!.message).toMatch(typeof says === 'string' ? new RegExp(says.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) : says);
  expect(error!.details?.pointer).toBe(pointer);
  expect(error!.remedy?.length).toBeGreaterThan(0);
}

/** `schema` as property "x" of an object, so that refusals carry a pointer below the root. */
const inProperty = (schema: JsonSchema): JsonSchema => ({ type: 'object', properties: { x: schema } });

describe('checkJsonSchema accepts what the grammar enforces exactly', () => {
  const tree: JsonSchema = {
    $defs: {
      node: {
        type: 'object',
        properties: { label: { type: 'string' }, children: { type: 'array', items: { $ref: '#/$defs/node' } } },
        required: ['label', 'children'],
        additionalProperties: false,
      },
    },
    $ref: '#/$defs/node',
  };
  const animals: JsonSchema = {
    $defs: {
      cat: { type: 'object', properties: { kind: { const: 'cat' }, lives: { type: 'integer' } }, required: ['kind', 'lives'] },
      dog: { type: 'object', properties: { kind: { const: 'dog' }, good: { type: 'boolean' } }, required: ['kind'] },
    },
    oneOf: [{ $ref: '#/$defs/cat' }, { $ref: '#/$defs/dog' }],
  };
  const supported: [string, JsonSchema, unknown][] = [
    ['an empty schema', {}, { any: ['thing'] }],
    ['an enum without a type', { enum: ['red', 'green', 1, null] }, 'green'],
    ['an enum of strings', { type: 'string', enum: ['a', 'b'] }, 'b'],
    ['an enum under a type union', { type: ['string', 'null'], enum: ['a', null] }, null],
    ['an integer enum under type number', { type: 'number', enum: [1, 2.5] }, 2.5],
    ['a const', { const: 42 }, 42],
    ['a const object', { const: { a: [1, 'b'] } }, { a: [1, 'b'] }],
    [
      'nested objects with required and optional fields and additionalProperties false',
      {
        type: 'object',
        properties: {
          name: { type: 'string' },
          address: {
            type: 'object',
            properties: { city: { type: 'string' }, zip: { type: 'string' } },
            required: ['city'],
            additionalProperties: false,
          },
          nickname: { type: ['string', 'null'] },
        },
        required: ['name', 'address'],
        additionalProperties: false,
      },
      { name: 'Ada', address: { city: 'London' } },
    ],
    ['an object with an additionalProperties schema', { type: 'object', additionalProperties: { type: 'integer' } }, { a: 1, b: 2 }],
    ['a bare object', { type: 'object' }, { anything: true }],
    ['an array with minItems and maxItems', { type: 'array', items: { type: 'integer' }, minItems: 1, maxItems: 3 }, [1, 2]],
    ['uniqueItems false', { type: 'array', items: { type: 'string' }, uniqueItems: false }, ['a', 'a']],
    ['a tuple as an items array', { type: 'array', items: [{ type: 'string' }, { type: 'integer' }] }, ['a', 1]],
    ['a tuple as prefixItems', { type: 'array', prefixItems: [{ type: 'string' }, { type: 'boolean' }] }, ['a', true]],
    [
      'prefixItems under draft 2020-12',
      { $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'array', prefixItems: [{ type: 'null' }] },
      [null],
    ],
    ['anyOf', { anyOf: [{ type: 'string', maxLength: 3 }, { type: 'null' }] }, 'abc'],
    ['oneOf of distinct types', { oneOf: [{ type: 'string' }, { type: 'integer' }, { type: 'boolean' }] }, 7],
    ['oneOf told apart by a const discriminator (through $ref)', animals, { kind: 'dog', good: true }],
    [
      'oneOf told apart by an inline discriminator',
      {
        oneOf: [
          { type: 'object', properties: { op: { const: 'add' }, n: { type: 'integer' } }, required: ['op', 'n'] },
          { type: 'object', properties: { op: { const: 'clear' } }, required: ['op'] },
        ],
      },
      { op: 'clear' },
    ],
    [
      '$ref into $defs',
      { $defs: { name: { type: 'string', minLength: 1 } }, type: 'object', properties: { first: { $ref: '#/$defs/name' } } },
      { first: 'Ada' },
    ],
    [
      '$ref into definitions (draft-07)',
      { definitions: { id: { type: 'integer', minimum: 1 } }, type: 'array', items: { $ref: '#/definitions/id' } },
      [1, 2],
    ],
    ['a recursive $ref', tree, { label: 'root', children: [{ label: 'leaf', children: [] }] }],
    [
      'allOf merging objects (one through $ref)',
      {
        $defs: { b: { type: 'object', properties: { b: { type: 'integer' } } } },
        allOf: [{ properties: { a: { type: 'string' } }, required: ['a'] }, { $ref: '#/$defs/b' }],
      },
      { a: 'x', b: 1 },
    ],
    ['integer minimum and maximum', { type: 'integer', minimum: 0, maximum: 10 }, 10],
    ['integer exclusive bounds with an integer between', { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 2 }, 1],
    ['fractional integer bounds around an integer', { type: 'integer', minimum: 0.5, maximum: 1.5 }, 1],
    ['a negative integer range', { type: 'integer', minimum: -5, maximum: -1 }, -3],
    ['string minLength and maxLength', { type: 'string', minLength: 2, maxLength: 8 }, 'abcd'],
    ['equal minLength and maxLength', { type: 'string', minLength: 3, maxLength: 3 }, 'abc'],
    ['the pattern ^[a-z]{2,5}-[0-9]+$', { type: 'string', pattern: '^[a-z]{2,5}-[0-9]+$' }, 'ab-12'],
    ['the pattern ^(?:ab|cd)*$', { type: 'string', pattern: '^(?:ab|cd)*$' }, 'abcdab'],
    ['format time', { type: 'string', format: 'time' }, '23:59:59.123+02:00'],
    ['format uuid', { type: 'string', format: 'uuid' }, '123e4567-e89b-12d3-a456-426614174000'],
    [
      'annotations',
      {
        $schema: 'http://json-schema.org/draft-07/schema#',
        $id: 'https://example.com/person.json',
        $comment: 'for the tests',
        title: 'Person',
        description: 'A person',
        type: 'object',
        properties: {
          name: { type: 'string', title: 'Name', description: 'Full name', default: 'Ada', examples: ['Ada', 'Grace'] },
          age: { type: 'integer', deprecated: true, readOnly: true, writeOnly: false },
        },
      },
      { name: 'Grace', age: 85 },
    ],
  ];

  it.each(supported)('accepts %s, and Ajv agrees with a sample value', (_, schema, sample) => {
    expect(checkJsonSchema(schema, WHERE)).toBe(schema);
    expect(schemaViolation(schema, sample, WHERE)).toBeUndefined();
  });
});

describe('checkJsonSchema refuses, naming the keyword and its JSON pointer', () => {
  it('an unknown keyword', () => {
    expectRefused(inProperty({ type: 'string', foo: 1 }), '/properties/x/foo', 'the keyword "foo" is not supported');
  });

  it('escapes "/" and "~" of property names in the pointer', () => {
    expectRefused({ properties: { 'a/b~c': { type: 'string', foo: 1 } } }, '/properties/a~1b~0c/foo', '"foo"');
  });

  const refused: [string, unknown][] = [
    ['not', { type: 'string' }],
    ['if', { type: 'string' }],
    ['then', { type: 'string' }],
    ['else', { type: 'string' }],
    ['patternProperties', { '^a': { type: 'string' } }],
    ['propertyNames', { maxLength: 3 }],
    ['minProperties', 1],
    ['maxProperties', 3],
    ['dependentRequired', { a: ['b'] }],
    ['dependentSchemas', { a: { required: ['b'] } }],
    ['dependencies', { a: ['b'] }],
    ['contains', { type: 'string' }],
    ['minContains', 1],
    ['maxContains', 2],
    ['uniqueItems', true],
    ['multipleOf', 5],
    ['unevaluatedProperties', false],
    ['unevaluatedItems', false],
    ['contentEncoding', 'base64'],
    ['contentMediaType', 'application/json'],
    ['$dynamicRef', '#node'],
    ['$recursiveRef', '#'],
    ['$anchor', 'node'],
  ];
  it.each(refused)('the refused keyword %s', (keyword, value) => {
    expectRefused(inProperty({ [keyword]: value }), `/properties/x/${keyword}`, `the keyword "${keyword}" is not supported`);
  });

  it.each(['date', 'date-time', 'email', 'uri', 'ipv4'])('the format %s', (format) => {
    expectRefused(inProperty({ type: 'string', format }), '/properties/x/format', `the format "${format}" is not supported`);
  });

  it('says why date formats are refused', () => {
    expectRefused(inProperty({ type: 'string', format: 'date' }), '/properties/x/format', /impossible dates/);
  });

  it('minimum on type number', () => {
    const schema = { type: 'object', properties: { age: { type: 'number', minimum: 0 } } };
    expectRefused(schema, '/properties/age/minimum', /minimum is enforced for "type": "integer" only/);
  });

  it('exclusiveMaximum on a type union, and a bound without a type', () => {
    expectRefused(inProperty({ type: ['integer', 'null'], exclusiveMaximum: 3 }), '/properties/x/exclusiveMaximum', /exclusiveMaximum/);
    expectRefused(inProperty({ maximum: 3 }), '/properties/x/maximum', /maximum is enforced/);
  });

  it('a bound that is not a number', () => {
    expectRefused(inProperty({ type: 'integer', minimum: '1' }), '/properties/x/minimum', 'minimum must be a number');
  });

  it('minLength above maxLength', () => {
    expectRefused(inProperty({ type: 'string', minLength: 5, maxLength: 2 }), '/properties/x', 'minLength 5 is above maxLength 2');
  });

  it('minItems above maxItems', () => {
    expectRefused(inProperty({ type: 'array', items: {}, minItems: 4, maxItems: 1 }), '/properties/x', 'minItems 4 is above maxItems 1');
  });

  it('a length or count that is not a non-negative integer', () => {
    expectRefused(inProperty({ type: 'string', maxLength: -1 }), '/properties/x/maxLength', /maxLength must be an integer from 0 to/);
    expectRefused(inProperty({ type: 'array', minItems: 1.5 }), '/properties/x/minItems', /minItems must be an integer/);
  });

  it.each([
    [{ type: 'integer', exclusiveMinimum: 1, exclusiveMaximum: 2 }, '2 > 1'],
    [{ type: 'integer', minimum: 1.2, maximum: 1.8 }, '2 > 1'],
    [{ type: 'integer', minimum: 3, maximum: 2 }, '3 > 2'],
  ])('integer bounds with no integer between: %j', (schema, bounds) => {
    expectRefused(inProperty(schema), '/properties/x', `no integer lies between the bounds (${bounds})`);
  });

  it('integer bounds beyond 2^53', () => {
    expectRefused(inProperty({ type: 'integer', minimum: 2 ** 60 }), '/properties/x', /bounds beyond/);
  });

  it('required naming an undeclared property', () => {
    expectRefused(
      { type: 'object', properties: { a: { type: 'string' } }, required: ['a', 'b'] },
      '/required',
      'required names "b", which properties does not declare',
    );
    expectRefused(inProperty({ type: 'object', required: ['z'] }), '/properties/x/required', /required names "z"/);
  });

  it('a const or enum value not of the declared type', () => {
    expectRefused(inProperty({ type: 'string', const: 5 }), '/properties/x', 'the value 5 is not of type string');
    expectRefused(inProperty({ type: 'integer', enum: [1, 2.5] }), '/properties/x', 'the value 2.5 is not of type integer');
    expectRefused(inProperty({ type: ['string', 'null'], enum: ['a', 1] }), '/properties/x', 'the value 1 is not of type string or null');
  });

  it('an empty enum, or one that is not an array', () => {
    expectRefused(inProperty({ enum: [] }), '/properties/x/enum', 'enum must be a non-empty array');
    expectRefused(inProperty({ enum: 'a' }), '/properties/x/enum', 'enum must be a non-empty array');
  });

  it.each([
    ['two strings', [{ type: 'string' }, { type: 'string', maxLength: 3 }]],
    ['integer inside number', [{ type: 'number' }, { type: 'integer' }]],
    ['an alternative with no type', [{ type: 'string' }, { enum: [1] }]],
    [
      'objects with the same discriminator',
      [
        { type: 'object', properties: { k: { const: 'a' } }, required: ['k'] },
        { type: 'object', properties: { k: { const: 'a' }, v: { type: 'integer' } }, required: ['k'] },
      ],
    ],
    [
      'objects whose discriminator is optional',
      [
        { type: 'object', properties: { k: { const: 'a' } } },
        { type: 'object', properties: { k: { const: 'b' } } },
      ],
    ],
  ])('an overlapping oneOf: %s', (_, alternatives) => {
    expectRefused(inProperty({ oneOf: alternatives }), '/properties/x/oneOf', 'oneOf is enforced as anyOf');
  });

  it('anyOf beside oneOf, and an empty anyOf', () => {
    expectRefused(inProperty({ anyOf: [{ type: 'string' }], oneOf: [{ type: 'null' }] }), '/properties/x', 'both anyOf and oneOf');
    expectRefused(inProperty({ anyOf: [] }), '/properties/x/anyOf', 'anyOf must be a non-empty array');
  });

  it('allOf of members that are not objects', () => {
    expectRefused(
      inProperty({ allOf: [{ type: 'string' }, { maxLength: 3 }] }),
      '/properties/x/allOf/0',
      'llama.cpp merges allOf only for objects',
    );
    expectRefused(
      inProperty({ allOf: [{ properties: { a: { type: 'string' } }, additionalProperties: false }] }),
      '/properties/x/allOf/0',
      'merges allOf only for objects',
    );
  });

  it('allOf declaring a property in two members', () => {
    expectRefused(
      { allOf: [{ properties: { a: { type: 'string' } } }, { properties: { a: { type: 'string' }, b: { type: 'integer' } } }] },
      '/allOf/1',
      'the property "a" is in two allOf members',
    );
  });

  it('allOf beside other keywords, or empty', () => {
    expectRefused(inProperty({ properties: { b: {} }, allOf: [{ properties: { a: {} } }] }), '/properties/x', 'allOf beside properties');
    expectRefused(inProperty({ allOf: [] }), '/properties/x/allOf', 'allOf must be a non-empty array');
  });

  it('$ref to another document, or to a pointer that is not there', () => {
    expectRefused(inProperty({ $ref: 'https://example.com/schema.json' }), '/properties/x/$ref', 'does not point into this schema');
    expectRefused(inProperty({ $ref: 'other.json#/$defs/a' }), '/properties/x/$ref', 'does not point into this schema');
    expectRefused({ $defs: { a: { type: 'string' } }, ...inProperty({ $ref: '#/$defs/b' }) }, '/properties/x/$ref', '"#/$defs/b"');
    expectRefused(inProperty({ $ref: 5 }), '/properties/x/$ref', 'does not point into this schema');
  });

  it('oneOf and allOf whose members are not schemas, or point nowhere, are refused (not a crash)', () => {
    expectRefused(inProperty({ oneOf: [null, { type: 'string' }] }), '/properties/x/oneOf/0', 'a schema must be an object');
    expectRefused(inProperty({ oneOf: [{ type: 'string' }, 3] }), '/properties/x/oneOf/1', 'a schema must be an object');
    expectRefused(inProperty({ allOf: [null] }), '/properties/x/allOf/0', 'a schema must be an object');
    expectRefused(inProperty({ oneOf: [{ $ref: '#/$defs/none' }, { type: 'string' }] }), '/properties/x/oneOf/0/$ref', '"#/$defs/none"');
    expectRefused(inProperty({ allOf: [{ $ref: '#/$defs/none' }] }), '/properties/x/allOf/0/$ref', '"#/$defs/none"');
    // A $ref into a value, not a schema.
    expectRefused(
      { $defs: { a: { type: 'string', default: { x: 1 } } }, ...inProperty({ oneOf: [{ $ref: '#/$defs/a/default' }] }) },
      '/properties/x/oneOf/0/$ref',
      'does not point at a schema',
    );
  });

  it('$ref beside other keywords', () => {
    expectRefused(
      { $defs: { a: { type: 'string' } }, ...inProperty({ $ref: '#/$defs/a', maxLength: 3 }) },
      '/properties/x',
      '$ref beside maxLength',
    );
  });

  it('anyOf and oneOf beside other keywords', () => {
    expectRefused(inProperty({ type: 'string', anyOf: [{ maxLength: 3 }, { minLength: 5 }] }), '/properties/x', 'anyOf beside type');
    expectRefused(
      inProperty({ oneOf: [{ type: 'string' }, { type: 'null' }], default: null, minLength: 1 }),
      '/properties/x',
      'oneOf beside minLength',
    );
  });

  it('items and prefixItems together', () => {
    expectRefused(
      inProperty({ type: 'array', items: { type: 'string' }, prefixItems: [{ type: 'string' }] }),
      '/properties/x',
      'both items and prefixItems',
    );
  });

  it('minItems or maxItems beside a tuple', () => {
    expectRefused(
      inProperty({ type: 'array', items: [{ type: 'string' }], minItems: 1 }),
      '/properties/x',
      'minItems/maxItems beside a tuple',
    );
    expectRefused(
      inProperty({ type: 'array', prefixItems: [{ type: 'string' }], maxItems: 1 }),
      '/properties/x',
      'minItems/maxItems beside a tuple',
    );
  });

  it('pattern beside minLength or maxLength', () => {
    expectRefused(inProperty({ type: 'string', pattern: '^[a-z]+$', minLength: 2 }), '/properties/x', 'pattern beside minLength/maxLength');
  });

  it('format beside pattern or a length', () => {
    expectRefused(inProperty({ type: 'string', format: 'uuid', pattern: '^[a-f0-9-]+$' }), '/properties/x', 'format beside pattern');
    expectRefused(
      inProperty({ type: 'string', format: 'time', maxLength: 30 }),
      '/properties/x',
      'format beside pattern/minLength/maxLength',
    );
  });

  it('a pattern the grammar cannot enforce, with checkPattern’s reason', () => {
    expectRefused(inProperty({ type: 'string', pattern: '^.*$' }), '/properties/x/pattern', 'the pattern "^.*$" uses "."');
    expectRefused(inProperty({ type: 'string', pattern: 'abc' }), '/properties/x/pattern', /is not anchored/);
    expectRefused(inProperty({ type: 'string', pattern: 5 }), '/properties/x/pattern', 'pattern must be a string');
  });

  it('an unknown type', () => {
    expectRefused(inProperty({ type: 'strnig' }), '/properties/x/type', '"type" must be one of');
    expectRefused(inProperty({ type: [] }), '/properties/x/type', '"type" must be one of');
  });

  it('a boolean schema, except as additionalProperties', () => {
    expectRefused({ type: 'object', properties: { a: true } }, '/properties/a', 'a schema must be an object');
    expectRefused({ type: 'array', items: false }, '/items', 'a schema must be an object');
    expectRefused(true, '', 'must be a JSON Schema object');
    expect(() => checkJsonSchema({ type: 'object', additionalProperties: false }, WHERE)).not.toThrow();
    expect(() => checkJsonSchema({ type: 'object', additionalProperties: true }, WHERE)).not.toThrow();
  });

  it('$defs that is not an object of schemas', () => {
    expectRefused({ $defs: [] }, '/$defs', 'must be an object of schemas');
    expectRefused({ definitions: { a: 'string' } }, '/definitions/a', 'a schema must be an object');
  });

  it(`nesting deeper than MAX_SCHEMA_DEPTH (${MAX_SCHEMA_DEPTH})`, () => {
    let deep: JsonSchema = { type: 'string' };
    for (let i = 0; i < MAX_SCHEMA_DEPTH + 1; i++) deep = { type: 'object', properties: { p: deep } };
    expectRefused(deep, '/properties/p'.repeat(MAX_SCHEMA_DEPTH + 1), `nested deeper than ${MAX_SCHEMA_DEPTH} levels`);
    let fits: JsonSchema = { type: 'string' };
    for (let i = 0; i < MAX_SCHEMA_DEPTH; i++) fits = { type: 'object', properties: { p: fits } };
    expect(() => checkJsonSchema(fits, WHERE)).not.toThrow();
  });

  it(`a schema over MAX_SCHEMA_BYTES (${MAX_SCHEMA_BYTES}) as JSON`, () => {
    expectRefused({ type: 'string', description: 'x'.repeat(MAX_SCHEMA_BYTES) }, '', `is larger than ${MAX_SCHEMA_BYTES / 1024} KiB`);
  });

  it('a value that is not a JSON object: a function, a cycle, a BigInt, an array, null', () => {
    const cycle: Record<string, unknown> = { type: 'object' };
    cycle.properties = { self: cycle };
    for (const value of [() => ({}), cycle, { type: 'integer', default: 1n }, [], null, 'string']) {
      expectRefused(value, '', 'must be a JSON Schema object (plain JSON');
    }
  });

  it('a schema that Ajv itself refuses', () => {
    expectRefused({ type: 'string', title: 5 }, '', /is not a valid JSON Schema: .*title must be string/);
    expectRefused(
      { type: 'object', properties: { a: { type: 'string' } }, required: ['a', 'a'] },
      '',
      /is not a valid JSON Schema: .*duplicate items/,
    );
  });
});

describe('checkJsonSchema refuses what llama.cpp ignores beside a keyword it follows', () => {
  // common/json-schema.cpp build_node: const/enum win over everything but $ref and anyOf/oneOf, and
  // anyOf/oneOf win over const/enum; whatever else is there is dropped from the grammar.
  it('const or enum beside anyOf', () => {
    expectRefused(inProperty({ const: 'a', anyOf: [{ type: 'string' }, { type: 'integer' }] }), '/properties/x', 'const beside anyOf');
    expectRefused(inProperty({ enum: ['a'], oneOf: [{ type: 'string' }, { type: 'integer' }] }), '/properties/x', 'enum beside oneOf');
  });

  it('enum beside a constraint it would not hold the values to', () => {
    expectRefused(inProperty({ type: 'string', enum: ['a', 'bb'], maxLength: 1 }), '/properties/x', 'enum beside maxLength');
    expectRefused(inProperty({ type: 'integer', enum: [1, 7], maximum: 5 }), '/properties/x', 'enum beside maximum');
  });

  it('const beside enum', () => {
    expectRefused(inProperty({ const: 'a', enum: ['b'] }), '/properties/x', 'const beside enum');
  });

  // common/json-schema.cpp build_integer: minimum wins over exclusiveMinimum (and maximum over exclusiveMaximum).
  it('minimum beside exclusiveMinimum, and maximum beside exclusiveMaximum', () => {
    expectRefused(
      inProperty({ type: 'integer', minimum: 0, exclusiveMinimum: 5, maximum: 10 }),
      '/properties/x/exclusiveMinimum',
      'exclusiveMinimum beside minimum',
    );
    expectRefused(
      inProperty({ type: 'integer', maximum: 10, exclusiveMaximum: 3 }),
      '/properties/x/exclusiveMaximum',
      'exclusiveMaximum beside maximum',
    );
  });

  // build_node: {"type": "string", "allOf": [...]} is converted as the allOf's merged object.
  it('allOf under a type other than object', () => {
    expectRefused(
      inProperty({ type: 'string', allOf: [{ properties: { a: { type: 'string' } } }] }),
      '/properties/x/type',
      /allOf.*"object"/,
    );
  });

  // src/llama-grammar.cpp MAX_REPETITION_THRESHOLD: a repetition {m,n} with n above 2000 is read as {m,}.
  it('a maxLength or maxItems above what the grammar parser bounds', () => {
    expectRefused(
      inProperty({ type: 'string', maxLength: 5000 }),
      '/properties/x/maxLength',
      /maxLength must be an integer from 0 to 2000/,
    );
    expectRefused(inProperty({ type: 'array', maxItems: 2001 }), '/properties/x/maxItems', /maxItems must be an integer from 0 to 2000/);
    expect(() => checkJsonSchema(inProperty({ type: 'string', maxLength: 2000 }), WHERE)).not.toThrow();
  });

  it('$ref to something that is not a schema of this document (a default value, an enum array)', () => {
    expectRefused(
      {
        type: 'object',
        properties: { a: { $ref: '#/properties/b/default' }, b: { type: 'object', default: { type: 'integer', multipleOf: 5 } } },
      },
      '/properties/a/$ref',
      'does not point at a schema',
    );
    expectRefused(
      { type: 'object', properties: { a: { $ref: '#/properties/b/enum' }, b: { enum: ['x'] } } },
      '/properties/a/$ref',
      'does not point at a schema',
    );
    expect(() =>
      checkJsonSchema({ type: 'object', properties: { a: { $ref: '#/properties/b' }, b: { enum: ['x'] } } }, WHERE),
    ).not.toThrow();
  });
});

describe('schemaViolation', () => {
  const person: JsonSchema = {
    type: 'object',
    properties: { name: { type: 'string' }, age: { type: 'integer', minimum: 0 } },
    required: ['name', 'age'],
    additionalProperties: false,
  };

  it('returns undefined for a value that matches', () => {
    expect(schemaViolation(person, { name: 'Ada', age: 36 }, WHERE)).toBeUndefined();
    expect(schemaViolation({ type: 'string', format: 'uuid' }, '123E4567-E89B-12D3-A456-426614174000', WHERE)).toBeUndefined();
    expect(schemaViolation({ type: 'string', format: 'time' }, '19:00:00Z', WHERE)).toBeUndefined();
    expect(schemaViolation({ type: 'array', prefixItems: [{ type: 'string' }, { type: 'integer' }] }, ['a', 1], WHERE)).toBeUndefined();
  });

  it('says where and why a value does not match', () => {
    expect(schemaViolation(person, { name: 'Ada', age: -1 }, WHERE)).toBe('/age must be >= 0');
    expect(schemaViolation(person, { name: 'Ada' }, WHERE)).toMatch(/^\/ must have required property 'age'/);
    expect(schemaViolation(person, { name: 'Ada', age: 1, extra: 1 }, WHERE)).toMatch(/must NOT have additional properties/);
    expect(schemaViolation(person, 'Ada', WHERE)).toBe('/ must be object');
  });

  it('checks the formats it accepts', () => {
    expect(schemaViolation({ type: 'string', format: 'uuid' }, 'not-a-uuid', WHERE)).toBe('/ must match format "uuid"');
    // llama.cpp's time grammar always writes a time zone; Ajv's "time" requires one.
    expect(schemaViolation({ type: 'string', format: 'time' }, '12:00:00', WHERE)).toBe('/ must match format "time"');
    expect(schemaViolation({ type: 'string', format: 'time' }, '24:00:00Z', WHERE)).toBe('/ must match format "time"');
  });

  it('checks tuples and patterns', () => {
    expect(schemaViolation({ type: 'array', prefixItems: [{ type: 'string' }, { type: 'integer' }] }, ['a', 'b'], WHERE)).toBe(
      '/1 must be integer',
    );
    expect(schemaViolation({ type: 'string', pattern: '^[a-z]{2,5}-[0-9]+$' }, 'a-1', WHERE)).toMatch(/must match pattern/);
  });

  it('compiles each schema once (cached by its JSON)', () => {
    expect(compileValidator({ type: 'integer', maximum: 3 }, WHERE)).toBe(compileValidator({ type: 'integer', maximum: 3 }, WHERE));
  });
});
