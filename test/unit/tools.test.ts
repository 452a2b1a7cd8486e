// Tool calling (lib/tools.ts): tool definitions and toolChoice are validated and named as OpenAI's
// function tools, a tool call is parsed and held to its tool's parameters, and the generic format's
// envelope schema admits exactly the replies the choice allows.
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { checkJsonSchema, schemaViolation } from '../../lib/structured/json-schema.js';
import {
  checkToolCall,
  genericEnvelopeSchema,
  genericSystemPrompt,
  newToolCallId,
  parseGenericReply,
  validateToolChoice,
  validateTools,
  type ToolChoice,
} from '../../lib/tools.js';

const weather = {
  name: 'get_weather',
  description: 'The weather in a city',
  parameters: {
    type: 'object',
    properties: { city: { type: 'string' }, unit: { enum: ['celsius', 'fahrenheit'] } },
    required: ['city'],
    additionalProperties: false,
  },
};
const time = { type: 'function', function: { name: 'get_time', description: 'The time now', parameters: {} } } as const;

function thrown(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a throw');
}

describe('validateTools', () => {
  it("accepts { name, description, parameters } and OpenAI's { type: 'function', function }", () => {
    const tools = validateTools([weather, time]);
    expect(tools).toEqual([
      { name: 'get_weather', description: 'The weather in a city', parameters: weather.parameters },
      { name: 'get_time', description: 'The time now', parameters: { type: 'object', properties: {}, additionalProperties: false } },
    ]);
  });

  it('defaults parameters to an object with nothing in it, and description to ""', () => {
    const [bare, empty] = validateTools([{ name: 'a' }, { name: 'b', parameters: {} }]);
    const none = { type: 'object', properties: {}, additionalProperties: false };
    expect(bare).toEqual({ name: 'a', description: '', parameters: none });
    expect(empty!.parameters).toEqual(none);
    expect(schemaViolation(bare!.parameters, {}, 'p')).toBeUndefined();
    expect(schemaViolation(bare!.parameters, { x: 1 }, 'p')).toMatch(/additional properties/);
  });

  it('accepts strict (OpenAI clients send it) and names with dots and dashes', () => {
    expect(validateTools([{ name: 'ns.tool-1_x', strict: true, parameters: weather.parameters }])[0]!.name).toBe('ns.tool-1_x');
    expect(validateTools([{ name: 'x'.repeat(64) }])).toHaveLength(1);
    expect(validateTools([])).toEqual([]);
  });

  it.each([
    ['not an array', { name: 'a' }, TypeError, /^options\.tools must be an array of tools/],
    ['a tool that is not an object', ['a'], TypeError, /^options\.tools\[0\] must be an object, got the string "a"/],
    ['a missing name', [{ description: 'x' }], TypeError, /^options\.tools\[0\]\.name must be a string, got undefined/],
    ['an empty name', [{ name: '' }], RangeError, /^options\.tools\[0\]\.name must be 1 to 64 letters, digits, _, - or \./],
    ['a name with a space', [{ name: 'get weather' }], RangeError, /^options\.tools\[0\]\.name must be 1 to 64/],
    ['a name of 65 characters', [{ name: 'x'.repeat(65) }], RangeError, /^options\.tools\[0\]\.name/],
    [
      'a name in the wrapper',
      [{ type: 'function', function: { name: 'a b' } }],
      RangeError,
      /^options\.tools\[0\]\.function\.name must be 1 to 64/,
    ],
    [
      'a duplicate name',
      [weather, { name: 'get_weather' }],
      RangeError,
      /^options\.tools\[1\]\.name must be a name no other tool has, got the string "get_weather"/,
    ],
    [
      'a duplicate across shapes',
      [{ name: 'get_time' }, time],
      RangeError,
      /^options\.tools\[1\]\.function\.name must be a name no other tool has/,
    ],
    ['a non-string description', [{ name: 'a', description: 5 }], TypeError, /^options\.tools\[0\]\.description must be a string/],
    ['a non-boolean strict', [{ name: 'a', strict: 'yes' }], TypeError, /^options\.tools\[0\]\.strict must be a boolean/],
    [
      'an unknown key',
      [{ name: 'a', params: {} }],
      TypeError,
      /^options\.tools\[0\]\.params is not an option; known options: name, description, parameters, strict/,
    ],
    [
      'an unknown key in the wrapper',
      [{ type: 'function', function: { name: 'a' }, extra: 1 }],
      TypeError,
      /^options\.tools\[0\]\.extra is not an option/,
    ],
    [
      'an unknown key in the function',
      [{ type: 'function', function: { name: 'a', args: {} } }],
      TypeError,
      /^options\.tools\[0\]\.function\.args is not an option/,
    ],
    [
      'a wrapper of another type',
      [{ type: 'retrieval', function: { name: 'a' } }],
      TypeError,
      /^options\.tools\[0\]\.type must be 'function', got the string "retrieval"/,
    ],
    ['a wrapper without function', [{ type: 'function' }], TypeError, /^options\.tools\[0\]\.function must be an object, got undefined/],
    ['a tool that is not an object', [undefined], TypeError, /^options\.tools\[0\] must be an object, got undefined/],
    [
      'parameters of type string',
      [{ name: 'a', parameters: { type: 'string' } }],
      RangeError,
      /^options\.tools\[0\]\.parameters\.type must be 'object' \(arguments are an object\)/,
    ],
    [
      'parameters of a type union',
      [{ name: 'a', parameters: { type: ['object', 'null'] } }],
      RangeError,
      /^options\.tools\[0\]\.parameters\.type must be 'object'/,
    ],
  ])('refuses %s', (_, input, type, message) => {
    const error = thrown(() => validateTools(input));
    expect(error).toBeInstanceOf(type);
    expect(error.message).toMatch(message);
  });

  it('refuses more than 128 tools', () => {
    const many = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `t${i}` }));
    expect(validateTools(many(128))).toHaveLength(128);
    const error = thrown(() => validateTools(many(129)));
    expect(error).toBeInstanceOf(RangeError);
    expect(error.message).toMatch(/^options\.tools must be at most 128 tools, got number 129/);
  });

  it('refuses parameters with a keyword llama.cpp does not enforce, as ERR_JSON_SCHEMA naming the tool', () => {
    const error = thrown(() =>
      validateTools([weather, { name: 'b', parameters: { type: 'object', properties: { n: { type: 'number', multipleOf: 2 } } } }]),
    );
    expect(error.code).toBe(ErrorCode.JSON_SCHEMA);
    expect(error.message).toMatch(
      /^options\.tools\[1\]\.parameters at \/properties\/n\/multipleOf: the keyword "multipleOf" is not supported/,
    );
    const wrapped = thrown(() =>
      validateTools([{ type: 'function', function: { name: 'a', parameters: { type: 'object', minProperties: 1 } } }]),
    );
    expect(wrapped.code).toBe('ERR_JSON_SCHEMA');
    expect(wrapped.message).toMatch(/^options\.tools\[0\]\.function\.parameters at \/minProperties/);
  });
});

describe('validateToolChoice', () => {
  const tools = validateTools([weather, time]);

  it("defaults to 'auto' and passes 'auto', 'none' and 'required'", () => {
    expect(validateToolChoice(undefined, tools)).toBe('auto');
    for (const choice of ['auto', 'none', 'required'] as const) expect(validateToolChoice(choice, tools)).toBe(choice);
  });

  it('passes { name } of a known tool, as a fresh object', () => {
    const input = { name: 'get_time' };
    const choice = validateToolChoice(input, tools);
    expect(choice).toEqual({ name: 'get_time' });
    expect(choice).not.toBe(input);
  });

  it('refuses an unknown name, listing the tools', () => {
    const error = thrown(() => validateToolChoice({ name: 'get_news' }, tools));
    expect(error).toBeInstanceOf(RangeError);
    expect(error.message).toMatch(
      /^options\.toolChoice\.name must be the name of one of options\.tools \(get_weather, get_time\), got the string "get_news"/,
    );
    expect(thrown(() => validateToolChoice({ name: 'x' }, [])).message).toMatch(/\(none given\)/);
  });

  it.each([
    ['another string', 'any', TypeError, /^options\.toolChoice must be 'auto', 'none', 'required' or \{ name \}/],
    ['null', null, TypeError, /^options\.toolChoice must be/],
    ['an array', ['auto'], TypeError, /^options\.toolChoice must be/],
    ["OpenAI's wire shape", { type: 'function', function: { name: 'get_time' } }, TypeError, /^options\.toolChoice\.type is not an option/],
    ['a name that is not a string', { name: 5 }, TypeError, /^options\.toolChoice\.name must be a string/],
  ])('refuses %s', (_, input, type, message) => {
    const error = thrown(() => validateToolChoice(input, tools));
    expect(error).toBeInstanceOf(type);
    expect(error.message).toMatch(message);
  });
});

describe('checkToolCall', () => {
  const tools = validateTools([weather, time]);

  it('returns the call with its arguments parsed', () => {
    const args = '{"city": "Paris", "unit": "celsius"}';
    expect(checkToolCall(tools, { name: 'get_weather', arguments: args }, 'call_1')).toEqual({
      call: { id: 'call_1', name: 'get_weather', arguments: args, parsed: { city: 'Paris', unit: 'celsius' } },
    });
  });

  it("reads '' arguments as '{}'", () => {
    expect(checkToolCall(tools, { name: 'get_time', arguments: '' }, 'c')).toEqual({
      call: { id: 'c', name: 'get_time', arguments: '{}', parsed: {} },
    });
    expect(checkToolCall(tools, { name: 'get_weather', arguments: '' }, 'c')).toEqual({
      error: "the arguments of get_weather do not match its parameters: / must have required property 'city'",
    });
  });

  it('returns an error for arguments that are not JSON', () => {
    const r = checkToolCall(tools, { name: 'get_weather', arguments: '{"city": Paris}' }, 'c');
    expect(r).toEqual({ error: expect.stringMatching(/^the arguments of get_weather are not JSON: /) });
  });

  it('returns an error for arguments that do not match the parameters', () => {
    expect(checkToolCall(tools, { name: 'get_weather', arguments: '{"city": "Paris", "unit": "kelvin"}' }, 'c')).toEqual({
      error: 'the arguments of get_weather do not match its parameters: /unit must be equal to one of the allowed values',
    });
    expect(checkToolCall(tools, { name: 'get_weather', arguments: '[]' }, 'c')).toEqual({
      error: 'the arguments of get_weather do not match its parameters: / must be object',
    });
    expect(checkToolCall(tools, { name: 'get_time', arguments: '{"tz": "UTC"}' }, 'c')).toMatchObject({
      error: expect.stringMatching(/additional properties/),
    });
  });

  it('returns an error for a tool that is not among the tools', () => {
    expect(checkToolCall(tools, { name: 'get_news', arguments: '{}' }, 'c')).toEqual({
      error: 'the model called "get_news", which is not among the tools',
    });
  });
});

describe('newToolCallId', () => {
  it('makes distinct OpenAI-style ids', () => {
    const a = newToolCallId();
    expect(a).toMatch(/^call_[0-9a-f]{24}$/);
    expect(newToolCallId()).not.toBe(a);
  });
});

describe('genericEnvelopeSchema', () => {
  const tools = validateTools([weather, time]);
  const call = (name: string, args: unknown = {}) => ({ name, arguments: args });
  const paris = call('get_weather', { city: 'Paris' });
  const now = call('get_time');

  /** Whether `reply` is a reply the envelope admits (and the envelope itself is a schema llama.cpp enforces). */
  function admits(choice: ToolChoice, parallel: boolean, reply: unknown): boolean {
    const schema = genericEnvelopeSchema(tools, choice, parallel);
    checkJsonSchema(schema, 'envelope');
    return schemaViolation(schema, reply, 'envelope') === undefined;
  }

  it("'required' admits one call to any tool, and only calls", () => {
    expect(admits('required', false, { tool_calls: [paris] })).toBe(true);
    expect(admits('required', false, { tool_calls: [now] })).toBe(true);
    expect(admits('required', false, { tool_calls: [] })).toBe(false);
    expect(admits('required', false, { response: 'hi' })).toBe(false);
    expect(admits('required', false, { tool_calls: [call('get_news')] })).toBe(false);
    expect(admits('required', false, { tool_calls: [call('get_weather', { town: 'Paris' })] })).toBe(false);
    expect(admits('required', false, { tool_calls: [paris], response: 'hi' })).toBe(false);
    expect(admits('required', false, { tool_calls: [{ ...paris, id: 'x' }] })).toBe(false);
  });

  it('admits two calls only when parallel', () => {
    expect(admits('required', false, { tool_calls: [paris, now] })).toBe(false);
    expect(admits('required', true, { tool_calls: [paris, now] })).toBe(true);
    expect(admits('required', true, { tool_calls: [paris, paris, now] })).toBe(true);
    expect(admits('auto', false, { tool_calls: [paris, now] })).toBe(false);
    expect(admits('auto', true, { tool_calls: [paris, now] })).toBe(true);
  });

  it("'auto' admits calls or a response, not both", () => {
    expect(admits('auto', false, { response: 'hi' })).toBe(true);
    expect(admits('auto', false, { tool_calls: [paris] })).toBe(true);
    expect(admits('auto', false, { response: 'hi', tool_calls: [paris] })).toBe(false);
    expect(admits('auto', false, { response: 5 })).toBe(false);
    expect(admits('auto', false, 'hi')).toBe(false);
  });

  it('a named choice admits calls to that tool only', () => {
    expect(admits({ name: 'get_weather' }, false, { tool_calls: [paris] })).toBe(true);
    expect(admits({ name: 'get_weather' }, false, { tool_calls: [now] })).toBe(false);
    expect(admits({ name: 'get_weather' }, false, { response: 'hi' })).toBe(false);
    expect(admits({ name: 'get_weather' }, true, { tool_calls: [paris, paris] })).toBe(true);
    expect(admits({ name: 'get_weather' }, true, { tool_calls: [paris, now] })).toBe(false);
  });

  it('holds the arguments of a tool whose parameters use $ref to its own $defs', () => {
    const withRefs = validateTools([
      {
        name: 'move',
        parameters: {
          type: 'object',
          $defs: { point: { type: 'object', properties: { x: { type: 'integer' }, y: { type: 'integer' } }, required: ['x', 'y'] } },
          properties: { from: { $ref: '#/$defs/point' }, to: { $ref: '#/$defs/point' } },
          required: ['from', 'to'],
        },
      },
      weather,
    ]);
    const point = { x: 1, y: 2 };
    for (const choice of ['required', 'auto', { name: 'move' }] as ToolChoice[]) {
      const schema = genericEnvelopeSchema(withRefs, choice, true);
      expect(() => checkJsonSchema(schema, 'envelope'), JSON.stringify(choice)).not.toThrow();
      expect(schemaViolation(schema, { tool_calls: [call('move', { from: point, to: point })] }, 'envelope')).toBeUndefined();
      expect(schemaViolation(schema, { tool_calls: [call('move', { from: point, to: { x: 1 } })] }, 'envelope')).toBeDefined();
    }
    // The tool's own schema is left as it was.
    expect(withRefs[0]!.parameters.properties).toEqual({ from: { $ref: '#/$defs/point' }, to: { $ref: '#/$defs/point' } });
  });
});

describe('genericSystemPrompt', () => {
  const tools = validateTools([weather, time]);

  it('lists the tools offered and says how to answer', () => {
    const prompt = genericSystemPrompt(tools, 'auto');
    expect(prompt).toContain(JSON.stringify({ name: 'get_weather', description: 'The weather in a city', parameters: weather.parameters }));
    expect(prompt).toContain('"name":"get_time"');
    expect(prompt).toContain('{"response": "..."}');
    const named = genericSystemPrompt(tools, { name: 'get_time' });
    expect(named).toContain('"name":"get_time"');
    expect(named).not.toContain('get_weather');
    expect(named).not.toContain('"response"');
  });
});

describe('parseGenericReply', () => {
  it('reads the calls, their arguments as JSON text', () => {
    expect(
      parseGenericReply('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}]}'),
    ).toEqual({
      calls: [
        { name: 'get_weather', arguments: '{"city":"Paris"}' },
        { name: 'get_time', arguments: '{}' },
      ],
      content: '',
    });
  });

  it('a call without a string name or an arguments object is not the envelope (the grammar requires both)', () => {
    for (const call of ['{"name": "get_time"}', '{"name": 1, "arguments": {}}', '{"name": "get_time", "arguments": "{}"}', '[]']) {
      expect(parseGenericReply(`{"tool_calls": [${call}]}`), call).toBeUndefined();
    }
    expect(parseGenericReply('{"tool_calls": [{"name": "get_time", "arguments": {}}]}')).toEqual({
      calls: [{ name: 'get_time', arguments: '{}' }],
      content: '',
    });
  });

  it('reads the response', () => {
    expect(parseGenericReply('{"response": "Hello!"}')).toEqual({ calls: [], content: 'Hello!' });
  });

  it.each([
    ['text that is not JSON', 'Hello!'],
    ['a truncated envelope', '{"tool_calls": [{"name": "get_time"'],
    ['a JSON string', '"Hello"'],
    ['null', 'null'],
    ['an object of neither shape', '{"answer": "hi"}'],
    ['a response that is not a string', '{"response": 5}'],
  ])('is undefined for %s', (_, text) => {
    expect(parseGenericReply(text)).toBeUndefined();
  });
});
