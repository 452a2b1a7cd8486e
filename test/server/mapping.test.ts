// The server's pure parts, without the addon: OpenAI, llama-server and vLLM fields to the library's
// options (sampling, log probabilities, n, response formats, tools, reasoning), the fields still
// refused as unsupported (and their "off" values accepted), messages with tool calls and results to
// chat-template messages, and every library error to its HTTP status, OpenAI type, code and the
// request field it names.
import { describe, expect, it } from 'vitest';
import { ContextError, CudaLlamaError, DisposedError, ErrorCode } from '../../lib/errors.js';
import { HttpError, errorHeaders, toHttpError } from '../../lib/server/errors.js';
import {
  chatMessages,
  chatOptions,
  completionOptions,
  generateOptions,
  rejectUnsupported,
  type ChatCompletionBody,
} from '../../lib/server/openai-schema.js';
import { GrammarError, JsonSchemaError } from '../../lib/errors.js';
import { rangeError, rejectUnknownKeys, typeError } from '../../lib/validate.js';

/** What `fn` throws, as an HttpError. */
function thrown(fn: () => unknown): HttpError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(HttpError);
    return error as HttpError;
  }
  throw new Error('expected a throw');
}

const chat = (extra: Record<string, unknown>): ChatCompletionBody => ({
  model: 'm',
  messages: [{ role: 'user', content: 'Hi' }],
  ...extra,
});

describe('request fields to the library', () => {
  it('maps every sampling field and leaves nulls out', () => {
    expect(
      generateOptions({
        model: 'm',
        max_tokens: 5,
        temperature: 0.2,
        top_p: 0.9,
        top_k: 10,
        min_p: 0.1,
        seed: 7,
        stop: ['\n'],
        presence_penalty: 0.5,
        frequency_penalty: -1,
      }),
    ).toEqual({
      maxTokens: 5,
      temperature: 0.2,
      topP: 0.9,
      topK: 10,
      minP: 0.1,
      seed: 7,
      stop: ['\n'],
      presencePenalty: 0.5,
      frequencyPenalty: -1,
    });
    expect(generateOptions({ model: 'm', max_completion_tokens: 3, temperature: null, stop: [], n: 1, logit_bias: null })).toEqual({
      maxTokens: 3,
    });
    expect(thrown(() => generateOptions({ model: 'm', max_tokens: 3, max_completion_tokens: 4 })).message).toMatch(/differ/);
  });

  it("maps llama-server's and vLLM's samplers and switches to the library's", () => {
    expect(
      generateOptions({
        model: 'm',
        repetition_penalty: 1.1,
        repeat_last_n: 32,
        typical_p: 0.9,
        top_n_sigma: 1.5,
        xtc_probability: 0.5,
        xtc_threshold: 0.2,
        dry_multiplier: 0.8,
        dry_base: 1.5,
        dry_allowed_length: 3,
        dry_penalty_last_n: 128,
        dry_sequence_breakers: ['\n', ';'],
        mirostat: 2,
        mirostat_tau: 4,
        mirostat_eta: 0.2,
        ignore_eos: true,
        min_tokens: 4,
        cache_prompt: false,
        include_stop_str_in_output: true,
        skip_special_tokens: false,
        grammar: 'root ::= "a"',
        n: 3,
      }),
    ).toEqual({
      repeatPenalty: 1.1,
      repeatLastN: 32,
      typicalP: 0.9,
      topNSigma: 1.5,
      xtc: { probability: 0.5, threshold: 0.2 },
      dry: { multiplier: 0.8, base: 1.5, allowedLength: 3, penaltyLastN: 128, sequenceBreakers: ['\n', ';'] },
      mirostat: { version: 2, tau: 4, eta: 0.2 },
      ignoreEos: true,
      minTokens: 4,
      cachePrompt: false,
      includeStopString: true,
      skipSpecialTokens: false,
      grammar: 'root ::= "a"',
      n: 3,
    });
    expect(generateOptions({ model: 'm', repeat_penalty: 1.2 })).toEqual({ repeatPenalty: 1.2 });
    expect(generateOptions({ model: 'm', repeat_penalty: 1.2, repetition_penalty: 1.2 })).toEqual({ repeatPenalty: 1.2 });
    expect(thrown(() => generateOptions({ model: 'm', repeat_penalty: 1.2, repetition_penalty: 1.3 })).param).toBe('repeat_penalty');
    expect(generateOptions({ model: 'm', mirostat: 1 })).toEqual({ mirostat: { version: 1 } });
    expect(generateOptions({ model: 'm', xtc_probability: 0.3 })).toEqual({ xtc: { probability: 0.3 } });
    expect(generateOptions({ model: 'm', dry_multiplier: 0.5 })).toEqual({ dry: { multiplier: 0.5 } });
    // The values that mean "off" in llama-server and vLLM: no option at all.
    expect(
      generateOptions({
        model: 'm',
        top_n_sigma: -1,
        dry_multiplier: 0,
        dry_base: 2,
        mirostat: 0,
        mirostat_tau: 5,
        ignore_eos: false,
        cache_prompt: true,
        include_stop_str_in_output: false,
        skip_special_tokens: true,
        grammar: '',
      }),
    ).toEqual({});
    const mirostat = thrown(() => generateOptions({ model: 'm', mirostat: 3 }));
    expect([mirostat.statusCode, mirostat.param, mirostat.code]).toEqual([400, 'mirostat', 'invalid_value']);
  });

  it('logit_bias: token ids, texts (llama-server) and false to ban', () => {
    // In the object's key order, which JavaScript gives integer keys first (the order does not matter: biases add up).
    expect(generateOptions({ model: 'm', logit_bias: { '12': -100, hello: 5, '3': false } })).toEqual({
      logitBias: [
        { token: 3, bias: -Infinity },
        { token: 12, bias: -100 },
        { token: 'hello', bias: 5 },
      ],
    });
    // A number-like text that is not a plain id is a text.
    expect(generateOptions({ model: 'm', logit_bias: { '012': 1 } })).toEqual({ logitBias: [{ token: '012', bias: 1 }] });
    expect(generateOptions({ model: 'm', logit_bias: {} })).toEqual({});
    const wrong = thrown(() => generateOptions({ model: 'm', logit_bias: { '7': true } }));
    expect([wrong.statusCode, wrong.param]).toEqual([400, 'logit_bias.7']);
  });

  it("/v1/completions: logprobs is a count of alternatives; json_schema is llama-server's", () => {
    expect(completionOptions({ model: 'm', prompt: 'x', logprobs: 2 })).toEqual({ logprobs: true, topLogprobs: 2 });
    expect(completionOptions({ model: 'm', prompt: 'x', logprobs: 0 })).toEqual({ logprobs: true, topLogprobs: 0 });
    expect(completionOptions({ model: 'm', prompt: 'x', logprobs: null })).toEqual({});
    const schema = { type: 'object', properties: { a: { type: 'integer' } } };
    expect(completionOptions({ model: 'm', prompt: 'x', json_schema: schema })).toEqual({ jsonSchema: schema });
  });

  it('chat: logprobs and top_logprobs; top_logprobs alone is refused', () => {
    expect(chatOptions(chat({ logprobs: true, top_logprobs: 3 }))).toEqual({ logprobs: true, topLogprobs: 3 });
    expect(chatOptions(chat({ logprobs: true }))).toEqual({ logprobs: true });
    expect(chatOptions(chat({ logprobs: false, top_logprobs: 0 }))).toEqual({});
    expect(thrown(() => chatOptions(chat({ top_logprobs: 2 }))).param).toBe('top_logprobs');
  });

  it('response_format: text, json_object (with a schema, as llama-server), json_schema, and the top-level json_schema', () => {
    const schema = { type: 'object', properties: { a: { type: 'string' } } };
    expect(chatOptions(chat({ response_format: { type: 'text' } }))).toEqual({});
    expect(chatOptions(chat({ response_format: null }))).toEqual({});
    expect(chatOptions(chat({ response_format: { type: 'json_object' } }))).toEqual({ responseFormat: { type: 'json_object' } });
    expect(chatOptions(chat({ response_format: { type: 'json_object', schema } }))).toEqual({
      responseFormat: { type: 'json_object', schema },
    });
    expect(
      chatOptions(chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema, strict: true, description: 'd' } } })),
    ).toEqual({
      responseFormat: { type: 'json_schema', schema, name: 'x', strict: true },
    });
    expect(chatOptions(chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } }))).toEqual({
      responseFormat: { type: 'json_schema', schema, name: 'x' },
    });
    // null is the SDK's "not set"; a wrong type goes on to the library, which names it.
    expect(chatOptions(chat({ response_format: { type: 'json_schema', json_schema: { schema, name: null, strict: null } } }))).toEqual({
      responseFormat: { type: 'json_schema', schema },
    });
    expect(chatOptions(chat({ response_format: { type: 'json_schema', json_schema: { schema, strict: 'yes' } } }))).toEqual({
      responseFormat: { type: 'json_schema', schema, strict: 'yes' },
    });
    expect(chatOptions(chat({ response_format: { type: 'json_schema', schema } }))).toEqual({
      responseFormat: { type: 'json_schema', schema },
    });
    expect(chatOptions(chat({ json_schema: schema }))).toEqual({ responseFormat: { type: 'json_schema', schema } });
    // response_format text asks for no format, so llama-server's json_schema holds (as it does there).
    expect(chatOptions(chat({ response_format: { type: 'text' }, json_schema: schema }))).toEqual({
      responseFormat: { type: 'json_schema', schema },
    });
    expect(thrown(() => chatOptions(chat({ response_format: { type: 'json_schema', json_schema: { name: 'x' } } }))).param).toBe(
      'response_format.json_schema.schema',
    );
    expect(thrown(() => chatOptions(chat({ response_format: { type: 'yaml' } }))).param).toBe('response_format.type');
  });

  it('response_format: an unknown key, two formats, or a schema sent twice is a 400 naming the field', () => {
    const schema = { type: 'object' };
    const cases: [Record<string, unknown>, string, string][] = [
      [{ response_format: { type: 'text', schema } }, 'response_format.schema', 'unsupported_field'],
      [{ response_format: { type: 'json_object', json_schema: { schema } } }, 'response_format.json_schema', 'unsupported_field'],
      [{ response_format: { type: 'json_object', strict: true } }, 'response_format.strict', 'unsupported_field'],
      [{ response_format: { type: 'json_schema', json_schema: { schema }, name: 'x' } }, 'response_format.name', 'unsupported_field'],
      [
        { response_format: { type: 'json_schema', json_schema: { schema, strcit: true } } },
        'response_format.json_schema.strcit',
        'unsupported_field',
      ],
      [{ response_format: { type: 'json_schema', json_schema: { schema }, schema } }, 'response_format.schema', 'invalid_value'],
      [{ response_format: { type: 'json_schema', json_schema: 'x' } }, 'response_format.json_schema', 'invalid_value'],
      [{ response_format: { type: 'json_object' }, json_schema: schema }, 'json_schema', 'invalid_value'],
      [{ response_format: { type: 'json_schema', json_schema: { schema } }, json_schema: schema }, 'json_schema', 'invalid_value'],
    ];
    for (const [fields, param, code] of cases) {
      const error = thrown(() => chatOptions(chat(fields)));
      expect([error.statusCode, error.param, error.code], JSON.stringify(fields)).toEqual([400, param, code]);
      expect(error.message).toContain(param);
    }
  });

  it('tools and tool_choice: strings, a named function, parallel_tool_calls', () => {
    const tools = [{ type: 'function', function: { name: 'add', parameters: { type: 'object' } } }];
    expect(chatOptions(chat({ tools }))).toEqual({ tools });
    expect(chatOptions(chat({ tools: [] }))).toEqual({});
    for (const choice of ['auto', 'none', 'required'] as const) {
      expect(chatOptions(chat({ tools, tool_choice: choice }))).toEqual({ tools, toolChoice: choice });
    }
    expect(chatOptions(chat({ tools, tool_choice: { type: 'function', function: { name: 'add' } }, parallel_tool_calls: false }))).toEqual({
      tools,
      toolChoice: { name: 'add' },
      parallelToolCalls: false,
    });
    // A named tool that is not among the tools is the library's to refuse (errors.ts names it tool_choice.function.name).
    expect(chatOptions(chat({ tools, tool_choice: { type: 'function', function: { name: 'other' } } })).toolChoice).toEqual({
      name: 'other',
    });
    // 'auto' and 'none' mean nothing without tools; 'required' and a name cannot be met.
    expect(chatOptions(chat({ tool_choice: 'none' }))).toEqual({ toolChoice: 'none' });
    expect(chatOptions(chat({ tools: [], tool_choice: 'auto' }))).toEqual({ toolChoice: 'auto' });
    for (const choice of ['required', { type: 'function', function: { name: 'add' } }]) {
      const error = thrown(() => chatOptions(chat({ tool_choice: choice })));
      expect([error.statusCode, error.param, error.code]).toEqual([400, 'tool_choice', 'invalid_value']);
    }
    expect(thrown(() => chatOptions(chat({ tools, tool_choice: 'any' }))).param).toBe('tool_choice');
    expect(thrown(() => chatOptions(chat({ tools, tool_choice: { type: 'function' } }))).param).toBe('tool_choice');
  });

  it('reasoning: reasoning_effort, enable_thinking in chat_template_kwargs, the budget', () => {
    expect(chatOptions(chat({ reasoning_effort: 'none' }))).toEqual({ reasoning: { enabled: false } });
    expect(chatOptions(chat({ reasoning_effort: 'high' }))).toEqual({ chatTemplateKwargs: { reasoning_effort: 'high' } });
    expect(chatOptions(chat({ chat_template_kwargs: { enable_thinking: true, custom: [1] } }))).toEqual({
      reasoning: { enabled: true },
      chatTemplateKwargs: { custom: [1] },
    });
    expect(chatOptions(chat({ chat_template_kwargs: { enable_thinking: false } }))).toEqual({ reasoning: { enabled: false } });
    expect(thrown(() => chatOptions(chat({ chat_template_kwargs: { enable_thinking: 'yes' } }))).param).toBe(
      'chat_template_kwargs.enable_thinking',
    );
    expect(chatOptions(chat({ reasoning_budget: 100 }))).toEqual({ reasoning: { budget: 100 } });
    expect(chatOptions(chat({ reasoning_budget_tokens: 50, reasoning_budget_message: 'Enough.' }))).toEqual({
      reasoning: { budget: 50, budgetMessage: 'Enough.' },
    });
    expect(chatOptions(chat({ thinking_budget_tokens: 0 }))).toEqual({ reasoning: { budget: 0 } });
    expect(chatOptions(chat({ reasoning_budget: -1 }))).toEqual({}); // llama-server's "no budget"
    expect(chatOptions(chat({ reasoning_budget: 10, reasoning_budget_tokens: 10 }))).toEqual({ reasoning: { budget: 10 } });
    expect(thrown(() => chatOptions(chat({ reasoning_budget: 10, reasoning_budget_tokens: 20 }))).param).toBe('reasoning_budget_tokens');
    expect(chatOptions(chat({ reasoning_effort: 'low', chat_template_kwargs: { enable_thinking: true }, reasoning_budget: 8 }))).toEqual({
      reasoning: { enabled: true, budget: 8 },
      chatTemplateKwargs: { reasoning_effort: 'low' },
    });
  });

  it('refuses what it does not do, naming each field, and accepts the values that mean off', () => {
    expect(() =>
      rejectUnsupported({
        functions: [],
        function_call: 'none',
        echo: false,
        best_of: 1,
        suffix: '',
        modalities: ['text'],
        audio: null,
        prediction: null,
        web_search_options: null,
      }),
    ).not.toThrow();
    const error = thrown(() => rejectUnsupported({ echo: true, best_of: 2, suffix: 'x' }));
    expect(error.statusCode).toBe(400);
    expect(error.code).toBe('unsupported_field');
    expect(error.message).toMatch(/^unsupported fields echo, best_of, suffix /);
    expect(error.param).toBe('echo');
    const cases: [string, unknown][] = [
      ['functions', [{ name: 'f' }]],
      ['function_call', 'auto'],
      ['modalities', ['text', 'audio']],
      ['audio', { voice: 'alloy' }],
      ['prediction', { type: 'content', content: 'x' }],
      ['web_search_options', {}],
    ];
    for (const [field, value] of cases) {
      const one = thrown(() => rejectUnsupported({ [field]: value }));
      expect(one.param).toBe(field);
      expect(one.message).toMatch(new RegExp(`^unsupported field ${field} `));
    }
  });

  it('takes text content and parts, maps developer to system, refuses images and extra fields', () => {
    expect(
      chatMessages({
        model: 'm',
        messages: [
          { role: 'developer', content: 'Be brief' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'a' },
              { type: 'text', text: 'b' },
            ],
          },
          { role: 'assistant', content: null },
        ],
      }),
    ).toEqual([
      { role: 'system', content: 'Be brief' },
      { role: 'user', content: 'ab' },
      { role: 'assistant', content: '' },
    ]);
    const image = thrown(() => chatMessages({ model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url' }] }] }));
    expect([image.message, image.param, image.code]).toEqual([
      "messages[0].content[0] of type 'image_url': only text parts are supported",
      'messages[0].content[0].type',
      'unsupported_field',
    ]);
    const extra = { role: 'user', content: 'x', audio: {} } as { role: string; content: string };
    const refused = thrown(() => chatMessages({ model: 'm', messages: [extra] }));
    expect([refused.param, refused.code]).toEqual(['messages[0].audio', 'unsupported_field']);
  });

  it('messages with tool calls, tool results and reasoning', () => {
    expect(
      chatMessages({
        model: 'm',
        messages: [
          { role: 'user', content: 'Add 1 and 2' },
          {
            role: 'assistant',
            content: null,
            reasoning_content: 'I should add.',
            tool_calls: [
              { id: 'call_1', type: 'function', function: { name: 'add', arguments: '{"a":1,"b":2}' } },
              { id: 'call_2', function: { name: 'add', arguments: { a: 3, b: 4 } } },
              { id: 'call_3', type: 'function', function: { name: 'now' } },
            ],
          },
          { role: 'tool', tool_call_id: 'call_1', content: '3', name: 'add' },
          { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: '7' }] },
          { role: 'assistant', content: 'Done', reasoning_content: '', tool_calls: [] },
        ],
      }),
    ).toEqual([
      { role: 'user', content: 'Add 1 and 2' },
      {
        role: 'assistant',
        content: '',
        reasoning: 'I should add.',
        toolCalls: [
          { id: 'call_1', name: 'add', arguments: '{"a":1,"b":2}' },
          { id: 'call_2', name: 'add', arguments: { a: 3, b: 4 } },
          { id: 'call_3', name: 'now', arguments: '{}' },
        ],
      },
      { role: 'tool', content: '3', toolCallId: 'call_1', name: 'add' },
      { role: 'tool', content: '7', toolCallId: 'call_2' },
      { role: 'assistant', content: 'Done' },
    ]);
    const call = { id: 'c', type: 'custom', function: { name: 'f' } };
    const wrongType = thrown(() => chatMessages({ model: 'm', messages: [{ role: 'assistant', content: null, tool_calls: [call] }] }));
    expect(wrongType.param).toBe('messages[0].tool_calls[0].type');
    // A name beside a message that is not a tool result goes to the library, which refuses it by name
    // (no template renders it there): never dropped without a word.
    expect(chatMessages({ model: 'm', messages: [{ role: 'user', content: 'x', name: 'bob' }] })).toEqual([
      { role: 'user', content: 'x', name: 'bob' },
    ]);
  });
});

describe('errors to HTTP', () => {
  it('a prompt over the context is a 400 with the counts', () => {
    const error = toHttpError(
      new ContextError(ErrorCode.CONTEXT_FULL, 'prompt has 300 tokens; the context holds 256', {
        details: { promptTokens: 300, contextSize: 256 },
      }),
    );
    expect(error.statusCode).toBe(400);
    expect(error.body()).toEqual({
      error: {
        message: 'prompt has 300 tokens; the context holds 256',
        type: 'invalid_request_error',
        param: 'messages',
        code: 'ERR_CONTEXT_FULL',
        prompt_tokens: 300,
        context_size: 256,
      },
    });
    expect(errorHeaders(error)).toEqual({ 'x-should-retry': 'false' });
  });

  it('each library code keeps its code, with a status that says whether retrying helps', () => {
    expect(toHttpError(new CudaLlamaError(ErrorCode.CHAT_TEMPLATE, 'bad template')).statusCode).toBe(400);
    const disposed = toHttpError(new DisposedError('model'));
    expect(disposed.statusCode).toBe(503);
    expect(errorHeaders(disposed)).toEqual({ 'retry-after': '1' });
    const decode = toHttpError(new ContextError(ErrorCode.DECODE, 'llama_decode failed', { status: -3 }));
    expect(decode.statusCode).toBe(500);
    expect(decode.code).toBe('ERR_DECODE');
    expect(decode.type).toBe('server_error');
    expect(errorHeaders(decode)).toEqual({});
  });

  it("the library's argument errors are 400s naming the request field", () => {
    const top = toHttpError(rangeError('options.topP', 'a number above 0 and at most 1', 0));
    expect(top.statusCode).toBe(400);
    expect(top.param).toBe('top_p');
    expect(toHttpError(typeError('options.stop[1]', 'a non-empty string', '')).param).toBe('stop[1]');
    expect(toHttpError(rangeError('options.maxTokens', 'at least 1', 0)).param).toBe('max_tokens');
  });

  it("a library error's path becomes the request field: tools, messages, response formats, nested samplers", () => {
    const cases: [string, string][] = [
      ['options.tools[0].parameters', 'tools[0].function.parameters'],
      ['options.tools[1].function.parameters', 'tools[1].function.parameters'],
      ['options.tools[1].function.parameters.type', 'tools[1].function.parameters.type'],
      ['options.tools[0].function.name', 'tools[0].function.name'],
      ['options.tools', 'tools'],
      ['options.toolChoice.name', 'tool_choice.function.name'],
      ['options.toolChoice', 'tool_choice'],
      ['options.parallelToolCalls', 'parallel_tool_calls'],
      ['messages[2].toolCallId', 'messages[2].tool_call_id'],
      ['messages[1].toolCalls[0].arguments', 'messages[1].tool_calls[0].function.arguments'],
      ['messages[1].toolCalls', 'messages[1].tool_calls'],
      ['messages[3].reasoning', 'messages[3].reasoning_content'],
      ['messages[0].name', 'messages[0].name'],
      ['options.responseFormat.schema', 'response_format.json_schema.schema'],
      ['options.responseFormat', 'response_format'],
      ['options.responseFormat.name', 'response_format.json_schema.name'],
      ['options.responseFormat.strict', 'response_format.json_schema.strict'],
      ['options.jsonSchema', 'json_schema'],
      ['options.grammar', 'grammar'],
      ['options.chatTemplateKwargs.bos_token', 'chat_template_kwargs.bos_token'],
      ['options.minTokens', 'min_tokens'],
      ['options.ignoreEos', 'ignore_eos'],
      ['options.n', 'n'],
      ['options.topLogprobs', 'top_logprobs'],
      ['options.logitBias[0].token', 'logit_bias'],
      ['options.logitBias[1].bias', 'logit_bias'],
      ['options.typicalP', 'typical_p'],
      ['options.topNSigma', 'top_n_sigma'],
      ['options.xtc.probability', 'xtc_probability'],
      ['options.xtc.threshold', 'xtc_threshold'],
      ['options.dry.base', 'dry_base'],
      ['options.dry.allowedLength', 'dry_allowed_length'],
      ['options.dry.penaltyLastN', 'dry_penalty_last_n'],
      ['options.dry.sequenceBreakers[1]', 'dry_sequence_breakers[1]'],
      ['options.mirostat.tau', 'mirostat_tau'],
      ['options.mirostat.eta', 'mirostat_eta'],
      ['options.reasoning.budget', 'reasoning_budget'],
      ['options.reasoning.budgetMessage', 'reasoning_budget_message'],
    ];
    for (const [path, param] of cases) {
      const error = toHttpError(rangeError(path, 'something else', 0));
      expect([error.statusCode, error.code, error.param], path).toEqual([400, 'invalid_value', param]);
    }
    // A path the server has no name for is no param at all, rather than a wrong one: the thinking
    // switch comes from chat_template_kwargs.enable_thinking or reasoning_effort, not reasoning_budget.
    expect(toHttpError(rangeError('options.contextShift', 'off', true)).param).toBeNull();
    expect(toHttpError(typeError('options.reasoning.enabled', 'a boolean', 'yes')).param).toBeNull();
    expect(toHttpError(typeError('options.reasoning', 'an object', 1)).param).toBeNull();
  });

  it('a key the library does not know, inside an object passed on whole, is a 400 naming it (never a 500)', () => {
    let caught: unknown;
    try {
      rejectUnknownKeys('options.tools[1]', { type: 'function', function: {}, extra: 1 }, ['type', 'function']);
    } catch (error) {
      caught = error;
    }
    const error = toHttpError(caught);
    expect([error.statusCode, error.code, error.param]).toEqual([400, 'unsupported_field', 'tools[1].extra']);
    expect(errorHeaders(error)).toEqual({ 'x-should-retry': 'false' });
  });

  it('a refused JSON schema or grammar is a 400 with its code, naming the field', () => {
    const tool = toHttpError(
      new JsonSchemaError(
        ErrorCode.JSON_SCHEMA,
        'options.tools[0].function.parameters at /properties/x/multipleOf: the keyword "multipleOf" is not supported',
        {
          details: { pointer: '/properties/x/multipleOf' },
        },
      ),
    );
    expect([tool.statusCode, tool.code, tool.param, tool.type]).toEqual([
      400,
      'ERR_JSON_SCHEMA',
      'tools[0].function.parameters',
      'invalid_request_error',
    ]);
    const format = toHttpError(
      new JsonSchemaError(ErrorCode.JSON_SCHEMA, 'options.responseFormat.schema at /not: the keyword "not" is not supported'),
    );
    expect([format.statusCode, format.code, format.param]).toEqual([400, 'ERR_JSON_SCHEMA', 'response_format.json_schema.schema']);
    const grammar = toHttpError(new GrammarError(ErrorCode.GRAMMAR, 'options.grammar starts with %llguidance'));
    expect([grammar.statusCode, grammar.code, grammar.param]).toEqual([400, 'ERR_GRAMMAR', 'grammar']);
    expect(errorHeaders(grammar)).toEqual({ 'x-should-retry': 'false' });
  });

  it('anything else is a 500 that SDKs may retry', () => {
    const error = toHttpError(new Error('boom'));
    expect(error.statusCode).toBe(500);
    expect(error.code).toBe('internal_error');
  });
});
