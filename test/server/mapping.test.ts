// The server's pure parts, without the addon: OpenAI fields to GenerateOptions, the fields refused
// as unsupported (and their "off" values accepted), messages to chat-template messages, and every
// library error to its HTTP status, OpenAI type and code.
import { describe, expect, it } from 'vitest';
import { ContextError, CudaLlamaError, DisposedError, ErrorCode } from '../../lib/errors.js';
import { HttpError, errorHeaders, toHttpError } from '../../lib/server/errors.js';
import { chatMessages, generateOptions, rejectUnsupported } from '../../lib/server/openai-schema.js';
import { rangeError, typeError } from '../../lib/validate.js';

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
    expect(generateOptions({ model: 'm', max_completion_tokens: 3, temperature: null, stop: [] })).toEqual({ maxTokens: 3 });
    expect(() => generateOptions({ model: 'm', max_tokens: 3, max_completion_tokens: 4 })).toThrow(/differ/);
  });

  it('refuses what it does not do, naming each field, and accepts the values that mean off', () => {
    expect(() =>
      rejectUnsupported({ n: 1, logprobs: false, tools: [], tool_choice: 'none', response_format: { type: 'text' } }),
    ).not.toThrow();
    const error = (() => {
      try {
        rejectUnsupported({ n: 2, logprobs: true, logit_bias: { '1': 2 } });
      } catch (e) {
        return e as HttpError;
      }
    })();
    expect(error).toBeInstanceOf(HttpError);
    expect(error!.statusCode).toBe(400);
    expect(error!.message).toMatch(/^unsupported fields n, logprobs, logit_bias/);
    expect(error!.param).toBe('n');
  });

  it('takes text content and parts, maps developer to system, refuses tools, images and extra fields', () => {
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
    expect(() => chatMessages({ model: 'm', messages: [{ role: 'tool', content: 'x' }] })).toThrow(/tool calling/);
    expect(() => chatMessages({ model: 'm', messages: [{ role: 'user', content: [{ type: 'image_url' }] }] })).toThrow(/only text parts/);
    const named = { role: 'user', content: 'x', name: 'bob' } as { role: string; content: string };
    expect(() => chatMessages({ model: 'm', messages: [named] })).toThrow(/unsupported field name/);
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

  it('anything else is a 500 that SDKs may retry', () => {
    const error = toHttpError(new Error('boom'));
    expect(error.statusCode).toBe(500);
    expect(error.code).toBe('internal_error');
  });
});
