// Tool calling, structured output, log probabilities, n completions and the llama-server/vLLM
// extensions end to end through the official `openai` client, on a random-weight model with a
// native tool-call format (Qwen 2.5's template): calls held to their parameters (checked with Ajv
// here), a multi-turn tool conversation that reuses its cached prefix, streamed tool-call deltas
// in OpenAI's shape, JSON response formats, logprobs in the chat and the legacy shapes, and
// malformed conversations answered with a 400 naming the field, after which the server still works.
import { Ajv } from 'ajv';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, createServer, type GenerateOptions, type LlamaModel, type LlamaServer } from '../../lib/index.js';
import { TEST_TOOLS, toolFamilyModel } from '../helpers/tool-families.js';

type Message = OpenAI.Chat.Completions.ChatCompletionMessageParam;
type Chunk = OpenAI.Chat.Completions.ChatCompletionChunk;

const id = 'qwen';
let model: LlamaModel;
let server: LlamaServer;
let url: string;
let client: OpenAI;

const ajv = new Ajv({ strict: false });
const validators = new Map(TEST_TOOLS.map((t) => [t.name, ajv.compile(t.parameters)]));
const tools: OpenAI.Chat.Completions.ChatCompletionTool[] = TEST_TOOLS.map((t) => ({ type: 'function', function: t }));
const question: Message[] = [{ role: 'user', content: 'What is the weather in Paris, and what is 2 + 3?' }];

beforeAll(async () => {
  model = await Llama.load(await toolFamilyModel('qwen-2.5'), { gpu: 'cpu', contextSize: 4096, sequences: 4, warmup: false });
  server = createServer(model, { alias: id });
  url = await server.listen({ port: 0 });
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
});

afterAll(async () => {
  await server?.close();
  await model?.dispose();
});

/** A call's name is a tool's and its arguments are JSON that validates against the tool's parameters. */
function expectValidCall(name: string, args: string): void {
  const validate = validators.get(name);
  expect(validate, `${name} is a tool`).toBeDefined();
  const parsed: unknown = JSON.parse(args);
  expect(validate!(parsed), `${args}: ${JSON.stringify(validate!.errors)}`).toBe(true);
}

/** The function calls of a reply (the SDK's union also has custom tools, which we never answer with). */
function functionCalls(message: OpenAI.Chat.Completions.ChatCompletionMessage) {
  return (message.tool_calls ?? []).map((call) => {
    expect(call.type).toBe('function');
    if (call.type !== 'function') throw new Error('not a function call');
    return call;
  });
}

/** Posts JSON with fetch: for fields the SDK's types do not have, and for answers that are errors. */
async function post(path: string, body: Record<string, unknown>) {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  return {
    status: res.status,
    body: JSON.parse(text) as Record<string, unknown> & { error?: { message: string; param: string | null; code: string | null } },
  };
}

/** Every `data:` event of a streamed request (fetch, for fields the SDK's types do not have). */
async function postStream(path: string, body: Record<string, unknown>): Promise<Record<string, unknown>[]> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
  });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events = (await res.text())
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice('data: '.length));
  expect(events.at(-1)).toBe('[DONE]');
  return events.slice(0, -1).map((e) => JSON.parse(e) as Record<string, unknown>);
}

async function collect(stream: AsyncIterable<Chunk>): Promise<Chunk[]> {
  const chunks: Chunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

/** Streamed tool calls put back together, checking OpenAI's shape: index, id, type and name first, then argument fragments. */
function assembleCalls(chunks: Chunk[], choice = 0) {
  const calls: { id: string; name: string; arguments: string }[] = [];
  for (const chunk of chunks) {
    for (const c of chunk.choices) {
      if (c.index !== choice) continue;
      for (const part of c.delta.tool_calls ?? []) {
        if (part.index === calls.length) {
          expect(part.id).toMatch(/\S/);
          expect(part.type).toBe('function');
          expect(part.function?.name).toMatch(/\S/);
          expect(part.function?.arguments).toBe('');
          calls.push({ id: part.id!, name: part.function!.name!, arguments: '' });
        } else {
          expect(part.index).toBeLessThan(calls.length);
          expect(Object.keys(part).sort()).toEqual(['function', 'index']);
          expect(Object.keys(part.function!)).toEqual(['arguments']);
          calls[part.index]!.arguments += part.function!.arguments;
        }
      }
    }
  }
  return calls;
}

/** The finish reasons of a stream, by choice index. */
function finishReasons(chunks: Chunk[]): Map<number, string> {
  const out = new Map<number, string>();
  for (const chunk of chunks) for (const c of chunk.choices) if (c.finish_reason) out.set(c.index, c.finish_reason);
  return out;
}

type ChatParams = OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;

/**
 * A request that must answer with one call to a tool (tool_choice 'required' unless `extra` says
 * otherwise). parallel_tool_calls false: a random model given the choice goes on adding calls until
 * max_tokens, slowly (most of its tokens are refused by the grammar).
 */
const forcedCall = (seed: number, extra: Partial<ChatParams> = {}): ChatParams => ({
  model: id,
  messages: question,
  tools,
  tool_choice: 'required',
  parallel_tool_calls: false,
  max_tokens: 1000,
  temperature: 1,
  seed,
  ...extra,
});

const normalRequest = async () => {
  const res = await client.chat.completions.create({ model: id, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, seed: 1 });
  expect(res.choices).toHaveLength(1);
  expect(res.usage!.completion_tokens).toBeGreaterThan(0);
};

describe('tool calls', () => {
  it("tool_choice 'required' without parallel calls: one call that validates, content null, finish_reason tool_calls", async () => {
    const res = await client.chat.completions.create(forcedCall(11));
    const choice = res.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.role).toBe('assistant');
    expect(choice.message.content).toBeNull();
    const calls = functionCalls(choice.message);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.id).toMatch(/\S/);
    expect(TEST_TOOLS.map((t) => t.name)).toContain(calls[0]!.function.name);
    expectValidCall(calls[0]!.function.name, calls[0]!.function.arguments);
  });

  it('a named tool_choice: every call is that function (two completions of it)', async () => {
    const res = await client.chat.completions.create(forcedCall(1, { tool_choice: { type: 'function', function: { name: 'add' } }, n: 2 }));
    expect(res.choices.map((c) => c.index)).toEqual([0, 1]);
    for (const choice of res.choices) {
      expect(choice.finish_reason).toBe('tool_calls');
      const calls = functionCalls(choice.message);
      expect(calls).toHaveLength(1);
      expect(calls[0]!.function.name).toBe('add');
      expectValidCall('add', calls[0]!.function.arguments);
    }
  });

  it('a multi-turn tool conversation: the calls and their results go back, and the prefix of turn 1 is reused', async () => {
    const first = await client.chat.completions.create(forcedCall(21));
    const assistant = first.choices[0]!.message;
    const calls = functionCalls(assistant);
    expect(calls).toHaveLength(1);
    const results: Message[] = calls.map((call) => ({
      role: 'tool',
      tool_call_id: call.id,
      content: JSON.stringify({ result: 'sunny, 21 C' }),
    }));
    const second = await client.chat.completions.create({
      model: id,
      messages: [...question, assistant, ...results],
      tools,
      tool_choice: 'none',
      max_tokens: 4,
      temperature: 1,
      seed: 22,
    });
    expect(second.choices[0]!.message.tool_calls).toBeUndefined();
    expect(typeof second.choices[0]!.message.content).toBe('string');
    expect(['stop', 'length']).toContain(second.choices[0]!.finish_reason);
    expect(second.usage!.prompt_tokens).toBeGreaterThan(first.usage!.prompt_tokens);
    expect(second.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThan(0);
  });

  it('the same conversation streamed', async () => {
    const first = await collect(await client.chat.completions.create({ ...forcedCall(31), stream: true }));
    const calls = assembleCalls(first);
    expect(calls).toHaveLength(1);
    expect(finishReasons(first).get(0)).toBe('tool_calls');
    const assistant: Message = {
      role: 'assistant',
      content: null,
      tool_calls: calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } })),
    };
    const results: Message[] = calls.map((c) => ({ role: 'tool', tool_call_id: c.id, content: '42' }));
    const second = await collect(
      await client.chat.completions.create({
        model: id,
        messages: [...question, assistant, ...results],
        tools,
        tool_choice: 'none',
        max_tokens: 4,
        temperature: 1,
        seed: 32,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    expect(second.every((c) => c.choices.every((choice) => choice.delta.tool_calls === undefined))).toBe(true);
    expect(['stop', 'length']).toContain(finishReasons(second).get(0));
    const usage = second.at(-1)!.usage!;
    expect(second.at(-1)!.choices).toEqual([]);
    expect(usage.prompt_tokens_details!.cached_tokens).toBeGreaterThan(0);
  });

  it('streamed calls: index, id, type and name first, then argument fragments that add up to valid JSON; finish_reason tool_calls; usage last', async () => {
    // Two completions (n: 2), each with its call: the deltas of each choice are its own.
    const chunks = await collect(
      await client.chat.completions.create({ ...forcedCall(41, { n: 2 }), stream: true, stream_options: { include_usage: true } }),
    );
    const ids: string[] = [];
    for (const index of [0, 1]) {
      const calls = assembleCalls(chunks, index);
      expect(calls).toHaveLength(1);
      for (const call of calls) expectValidCall(call.name, call.arguments);
      ids.push(...calls.map((c) => c.id));
      // The choice's last chunk carries the finish reason; none before it does.
      const own = chunks.flatMap((c) => c.choices.filter((choice) => choice.index === index));
      expect(own.at(-1)!.finish_reason).toBe('tool_calls');
      expect(own.slice(0, -1).every((choice) => choice.finish_reason === null)).toBe(true);
      expect(
        own.every((choice) => choice.delta.content === undefined || choice.delta.content === null || choice.delta.content.trim() === ''),
      ).toBe(true);
    }
    expect(new Set(ids).size).toBe(2);
    // The usage chunk comes last, with no choices.
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage!.completion_tokens).toBeGreaterThan(0);
    expect(last.usage!.total_tokens).toBe(last.usage!.prompt_tokens + last.usage!.completion_tokens);
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });
});

describe('response formats', () => {
  const schema = {
    type: 'object',
    properties: { city: { type: 'string', maxLength: 12 }, count: { type: 'integer', minimum: 0, maximum: 99 }, ok: { type: 'boolean' } },
    required: ['city', 'count', 'ok'],
    additionalProperties: false,
  };

  it('json_schema: the content is JSON that validates', async () => {
    const validate = ajv.compile(schema);
    for (const seed of [1, 2]) {
      const res = await client.chat.completions.create({
        model: id,
        messages: [{ role: 'user', content: 'A city and a count, as JSON' }],
        response_format: { type: 'json_schema', json_schema: { name: 'answer', schema, strict: true } },
        max_tokens: 500,
        temperature: 1,
        seed,
      });
      expect(res.choices[0]!.finish_reason).toBe('stop');
      const value: unknown = JSON.parse(res.choices[0]!.message.content!);
      expect(validate(value), `${res.choices[0]!.message.content} ${JSON.stringify(validate.errors)}`).toBe(true);
    }
  });

  it('json_object: the content is a JSON object', async () => {
    const res = await client.chat.completions.create({
      model: id,
      messages: [{ role: 'user', content: 'Anything, as JSON' }],
      response_format: { type: 'json_object' },
      max_tokens: 1000,
      temperature: 1,
      seed: 3,
    });
    expect(res.choices[0]!.finish_reason).toBe('stop');
    const value: unknown = JSON.parse(res.choices[0]!.message.content!);
    expect(value).toBeTypeOf('object');
    expect(value).not.toBeNull();
    expect(Array.isArray(value)).toBe(false);
  });
  it('json_schema cut short by max_tokens: finish_reason length and parse_error says so (streamed: on the last chunk)', async () => {
    const body = {
      model: id,
      messages: [{ role: 'user', content: 'A city and a count, as JSON' }],
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema } },
      max_tokens: 3,
      temperature: 1,
      seed: 4,
    };
    const { status, body: reply } = await post('/v1/chat/completions', body);
    expect(status).toBe(200);
    const choice = (reply.choices as { finish_reason: string; message: Record<string, unknown> }[])[0]!;
    expect(choice.finish_reason).toBe('length');
    expect(choice.message.parse_error).toMatch(/cut short/);
    expect(choice.message).not.toHaveProperty('tool_call_errors');

    const chunks = await postStream('/v1/chat/completions', body);
    const last = chunks.findLast((c) => (c.choices as unknown[]).length > 0)!;
    const end = (last.choices as { finish_reason: string; delta: Record<string, unknown> }[])[0]!;
    expect(end.finish_reason).toBe('length');
    expect(end.delta.parse_error).toBe(choice.message.parse_error);
    // Only the last chunk says it.
    expect(chunks.filter((c) => JSON.stringify(c).includes('parse_error'))).toHaveLength(1);
  });

  it('a reply that is whole has no parse_error or tool_call_errors', async () => {
    const { body: reply } = await post('/v1/chat/completions', {
      model: id,
      messages: [{ role: 'user', content: 'Anything, as JSON' }],
      response_format: { type: 'json_object' },
      max_tokens: 1000,
      temperature: 1,
      seed: 3,
    });
    const message = (reply.choices as { message: Record<string, unknown> }[])[0]!.message;
    expect(Object.keys(message).filter((k) => k === 'parse_error' || k === 'tool_call_errors')).toEqual([]);
  });
});

describe('log probabilities', () => {
  type ChatLogprob = OpenAI.Chat.Completions.ChatCompletionTokenLogprob;
  function expectChatLogprobs(entries: ChatLogprob[], count: number) {
    expect(entries).toHaveLength(count);
    for (const e of entries) {
      expect(typeof e.token).toBe('string');
      expect(e.logprob).toBeLessThanOrEqual(0);
      expect(Array.isArray(e.bytes)).toBe(true);
      expect(e.bytes!.every((b) => Number.isInteger(b) && b >= 0 && b < 256)).toBe(true);
      expect(e.top_logprobs).toHaveLength(3);
      for (const a of e.top_logprobs) {
        expect(typeof a.token).toBe('string');
        expect(a.logprob).toBeLessThanOrEqual(0);
      }
      // Alternatives come best first.
      const values = e.top_logprobs.map((a) => a.logprob);
      expect([...values].sort((a, b) => b - a)).toEqual(values);
    }
  }

  it('chat: one entry per completion token, with token, logprob, bytes and 3 alternatives', async () => {
    const res = await client.chat.completions.create({
      model: id,
      messages: [{ role: 'user', content: 'Say something' }],
      max_tokens: 6,
      temperature: 1,
      seed: 5,
      logprobs: true,
      top_logprobs: 3,
    });
    expectChatLogprobs(res.choices[0]!.logprobs!.content!, res.usage!.completion_tokens);
  });

  it('chat streamed: the chunks carry the entries, one per completion token', async () => {
    const chunks = await collect(
      await client.chat.completions.create({
        model: id,
        messages: [{ role: 'user', content: 'Say something' }],
        max_tokens: 6,
        temperature: 1,
        seed: 5,
        logprobs: true,
        top_logprobs: 3,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    const entries = chunks.flatMap((c) => c.choices.flatMap((choice) => choice.logprobs?.content ?? []));
    expectChatLogprobs(entries, chunks.at(-1)!.usage!.completion_tokens);
  });

  it('/v1/completions with logprobs: 2: the legacy shape', async () => {
    const res = await client.completions.create({
      model: id,
      prompt: 'Once upon a time',
      max_tokens: 6,
      temperature: 1,
      seed: 6,
      logprobs: 2,
    });
    const lp = res.choices[0]!.logprobs!;
    const n = res.usage!.completion_tokens;
    expect(lp.tokens).toHaveLength(n);
    expect(lp.token_logprobs).toHaveLength(n);
    expect(lp.top_logprobs).toHaveLength(n);
    expect(lp.text_offset).toHaveLength(n);
    expect(lp.token_logprobs!.every((l) => l <= 0)).toBe(true);
    for (const top of lp.top_logprobs!) {
      // Two alternatives whose text is the same fold into one key of the legacy shape.
      expect(Object.keys(top).length).toBeGreaterThanOrEqual(1);
      expect(Object.keys(top).length).toBeLessThanOrEqual(2);
      expect(Object.values(top).every((l) => l <= 0)).toBe(true);
    }
    expect(lp.text_offset![0]).toBe(0);
    for (let i = 1; i < n; i++) expect(lp.text_offset![i]).toBe(lp.text_offset![i - 1]! + lp.tokens![i - 1]!.length);
  });
});

describe('n completions', () => {
  it('n: 2: two choices; completion_tokens is their sum', async () => {
    const res = await client.chat.completions.create({
      model: id,
      messages: [{ role: 'user', content: 'Two answers' }],
      max_tokens: 5,
      temperature: 1,
      seed: 7,
      n: 2,
      logprobs: true,
    });
    expect(res.choices.map((c) => c.index)).toEqual([0, 1]);
    const perChoice = res.choices.map((c) => c.logprobs!.content!.length);
    expect(perChoice.every((k) => k > 0)).toBe(true);
    expect(res.usage!.completion_tokens).toBe(perChoice[0]! + perChoice[1]!);
    const text = await client.completions.create({ model: id, prompt: 'Two answers', max_tokens: 4, n: 2, seed: 7, logprobs: 0 });
    expect(text.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(text.usage!.completion_tokens).toBe(text.choices[0]!.logprobs!.tokens!.length + text.choices[1]!.logprobs!.tokens!.length);
  });

  it('n: 2 streamed: chunks for both indexes and two finish reasons', async () => {
    const chunks = await collect(
      await client.chat.completions.create({
        model: id,
        messages: [{ role: 'user', content: 'Two answers' }],
        max_tokens: 5,
        temperature: 1,
        seed: 8,
        n: 2,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    const indexes = new Set(chunks.flatMap((c) => c.choices.map((choice) => choice.index)));
    expect([...indexes].sort()).toEqual([0, 1]);
    const finishes = finishReasons(chunks);
    expect([...finishes.keys()].sort()).toEqual([0, 1]);
    for (const reason of finishes.values()) expect(['stop', 'length']).toContain(reason);
    for (const index of [0, 1]) {
      const roles = chunks.flatMap((c) => c.choices.filter((choice) => choice.index === index && choice.delta.role !== undefined));
      expect(roles).toHaveLength(1);
      expect(roles[0]!.delta.role).toBe('assistant');
    }
    expect(chunks.at(-1)!.usage!.completion_tokens).toBeGreaterThan(0);
  });
});

describe("llama-server's and vLLM's fields", () => {
  it('ignore_eos with max_tokens 12: exactly 12 tokens; streamed with continuous usage, every chunk counts them', async () => {
    const chat = { model: id, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 12, ignore_eos: true, temperature: 1, seed: 9 };
    const whole = await post('/v1/chat/completions', chat);
    expect(whole.status).toBe(200);
    expect((whole.body.usage as { completion_tokens: number }).completion_tokens).toBe(12);
    const text = await post('/v1/completions', { model: id, prompt: 'Hi', max_tokens: 12, ignore_eos: true, seed: 9 });
    expect((text.body.usage as { completion_tokens: number }).completion_tokens).toBe(12);

    const events = await postStream('/v1/chat/completions', {
      ...chat,
      stream_options: { include_usage: true, continuous_usage_stats: true },
    });
    let previous = 0;
    const promptTokens = (whole.body.usage as { prompt_tokens: number }).prompt_tokens;
    for (const event of events) {
      const usage = event.usage as { prompt_tokens: number; completion_tokens: number; total_tokens: number };
      expect(usage, JSON.stringify(event)).toBeTypeOf('object');
      expect(usage.prompt_tokens).toBe(promptTokens); // from the first chunk on, as vLLM reports it
      expect(usage.completion_tokens).toBeGreaterThanOrEqual(previous);
      expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
      previous = usage.completion_tokens;
    }
    expect(previous).toBe(12);
    const last = events.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(promptTokens).toBeGreaterThan(0);
  });

  it('min_tokens: no end before that many tokens', async () => {
    for (const seed of [1, 2, 3]) {
      const r = await post('/v1/completions', { model: id, prompt: 'Hi', max_tokens: 8, min_tokens: 8, seed });
      expect(r.status).toBe(200);
      expect((r.body.usage as { completion_tokens: number }).completion_tokens).toBe(8);
    }
  });

  it('include_stop_str_in_output keeps the stop string', async () => {
    const base = { model: id, prompt: 'The list: one, two,', max_tokens: 16, temperature: 0, ignore_eos: true };
    const free = await post('/v1/completions', base);
    const full = (free.body.choices as { text: string }[])[0]!.text;
    // A stop string from the middle of the greedy output: the same greedy run stops there.
    const at = [...full].findIndex((ch, i) => i >= 2 && /\S/.test(ch) && ch !== '\uFFFD');
    expect(at, JSON.stringify(full)).toBeGreaterThan(0);
    const stop = [...full][at]!;
    const before = full.slice(0, full.indexOf(stop));
    const without = await post('/v1/completions', { ...base, stop });
    const kept = await post('/v1/completions', { ...base, stop, include_stop_str_in_output: true });
    expect((without.body.choices as { text: string; finish_reason: string }[])[0]).toMatchObject({ text: before, finish_reason: 'stop' });
    expect((kept.body.choices as { text: string; finish_reason: string }[])[0]).toMatchObject({
      text: before + stop,
      finish_reason: 'stop',
    });
  });

  it('logit_bias by token id, and false, ban a token', async () => {
    const prompt = 'Once upon a time';
    const greedy = await model.generate(prompt, { temperature: 0, maxTokens: 3 });
    const first = greedy.tokens[0]!;
    for (const bias of [-100, false] as const) {
      const r = await post('/v1/completions', { model: id, prompt, max_tokens: 3, temperature: 0, logit_bias: { [String(first)]: bias } });
      expect(r.status).toBe(200);
      const banned = await model.generate(prompt, {
        temperature: 0,
        maxTokens: 3,
        logitBias: [{ token: first, bias: bias === -100 ? -100 : -Infinity }],
      });
      expect(banned.tokens[0]).not.toBe(first);
      expect((r.body.choices as { text: string }[])[0]!.text).toBe(banned.text);
    }
  });

  it("logit_bias by text (llama-server's) biases the text's tokens: the reply is the library's with that bias", async () => {
    const messages = [{ role: 'user' as const, content: 'Hi' }];
    const greedy = { maxTokens: 6, temperature: 0 };
    const without = await model.chat(messages, greedy);
    const expected = await model.chat(messages, { ...greedy, logitBias: [{ token: 'hello', bias: 100 }] });
    expect(expected.text).not.toBe(without.text);
    const r = await post('/v1/chat/completions', { model: id, messages, max_tokens: 6, temperature: 0, logit_bias: { hello: 100 } });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect((r.body.choices as { message: { content: string } }[])[0]!.message.content).toBe(expected.text);
  });

  it('cache_prompt false evaluates the whole prompt', async () => {
    const body = { model: id, prompt: 'A prompt that is sent twice, word for word', max_tokens: 2, temperature: 0 };
    await post('/v1/completions', body);
    const again = await post('/v1/completions', body);
    expect((again.body.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens).toBeGreaterThan(
      0,
    );
    const fresh = await post('/v1/completions', { ...body, cache_prompt: false });
    expect((fresh.body.usage as { prompt_tokens_details: { cached_tokens: number } }).prompt_tokens_details.cached_tokens).toBe(0);
  });

  it('the extra samplers are accepted', async () => {
    const extras: Record<string, unknown>[] = [
      { repetition_penalty: 1.1 },
      { repeat_penalty: 1.1, repeat_last_n: 32 },
      { dry_multiplier: 0.8, dry_base: 1.75, dry_allowed_length: 2, dry_penalty_last_n: 64, dry_sequence_breakers: ['\n'] },
      { xtc_probability: 0.5, xtc_threshold: 0.1 },
      { typical_p: 0.9 },
      { top_n_sigma: 1.5 },
      { mirostat: 2, mirostat_tau: 5, mirostat_eta: 0.1 },
      { skip_special_tokens: false },
      { grammar: 'root ::= [a-z]+' },
    ];
    for (const extra of extras) {
      const chat = await post('/v1/chat/completions', {
        model: id,
        messages: [{ role: 'user', content: 'Hi' }],
        max_tokens: 3,
        seed: 1,
        ...extra,
      });
      expect(chat.status, `${JSON.stringify(extra)}: ${JSON.stringify(chat.body)}`).toBe(200);
      const text = await post('/v1/completions', { model: id, prompt: 'Hi', max_tokens: 3, seed: 1, ...extra });
      expect(text.status, `${JSON.stringify(extra)}: ${JSON.stringify(text.body)}`).toBe(200);
    }
  });

  it("the extra samplers reach generation: the text is the library's with the mapped options, which differs from the text without", async () => {
    const prompt = 'Once upon a time';
    // Strong settings, so that each changes what a fixed seed gives. DRY and a text logit_bias on
    // greedy output: a random model repeats itself there, which DRY breaks (its first repeat here
    // comes after token 16, hence 32 tokens).
    const cases: { fields: Record<string, unknown>; options: GenerateOptions; greedy?: boolean; tokens?: number }[] = [
      { fields: { xtc_probability: 1, xtc_threshold: 0.01 }, options: { xtc: { probability: 1, threshold: 0.01 } } },
      { fields: { typical_p: 0.2 }, options: { typicalP: 0.2 } },
      { fields: { top_n_sigma: 0.2 }, options: { topNSigma: 0.2 } },
      { fields: { mirostat: 2, mirostat_tau: 1, mirostat_eta: 0.5 }, options: { mirostat: { version: 2, tau: 1, eta: 0.5 } } },
      {
        fields: { dry_multiplier: 3, dry_base: 2, dry_allowed_length: 1, dry_penalty_last_n: 64 },
        options: { dry: { multiplier: 3, base: 2, allowedLength: 1, penaltyLastN: 64 } },
        greedy: true,
        tokens: 32,
      },
      { fields: { logit_bias: { hello: 100 } }, options: { logitBias: [{ token: 'hello', bias: 100 }] }, greedy: true },
    ];
    for (const { fields, options, greedy = false, tokens = 16 } of cases) {
      const shared = { maxTokens: tokens, ignoreEos: true, seed: 5, ...(greedy ? { temperature: 0 } : {}) };
      const without = await model.generate(prompt, shared);
      const expected = await model.generate(prompt, { ...shared, ...options });
      expect(expected.text, `${JSON.stringify(fields)} changes the output`).not.toBe(without.text);
      const r = await post('/v1/completions', {
        model: id,
        prompt,
        max_tokens: tokens,
        ignore_eos: true,
        seed: 5,
        ...(greedy ? { temperature: 0 } : {}),
        ...fields,
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect((r.body.choices as { text: string }[])[0]!.text, JSON.stringify(fields)).toBe(expected.text);
    }
  });

  it('a grammar holds the output', async () => {
    const r = await post('/v1/completions', { model: id, prompt: 'Hi', max_tokens: 6, seed: 4, grammar: 'root ::= [a-z]{1,4} "!"' });
    expect((r.body.choices as { text: string }[])[0]!.text).toMatch(/^[a-z]{1,4}!$/);
  });

  it('fields without effect are accepted', async () => {
    const ignored = {
      store: true,
      metadata: { team: 'a' },
      service_tier: 'auto',
      user: 'someone',
      prompt_cache_key: 'k',
      safety_identifier: 's',
    };
    const messages = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello', refusal: null }, // as OpenAI's own replies carry it
      { role: 'user', content: 'Bye' },
    ];
    const chat = await post('/v1/chat/completions', { model: id, messages, max_tokens: 2, ...ignored });
    expect(chat.status, JSON.stringify(chat.body)).toBe(200);
    const refusal = await post('/v1/chat/completions', {
      model: id,
      messages: [{ role: 'assistant', content: '', refusal: 'No.' }],
      max_tokens: 2,
    });
    expect(refusal.status).toBe(400);
    expect(refusal.body).toMatchObject({ error: { param: 'messages[0].refusal' } });
    const text = await post('/v1/completions', { model: id, prompt: 'Hi', max_tokens: 2, ...ignored });
    expect(text.status, JSON.stringify(text.body)).toBe(200);
  });

  it('what stays unsupported is a 400 naming the field', async () => {
    const chat = { model: id, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 };
    const cases: [string, Record<string, unknown>, string][] = [
      ['/v1/chat/completions', { ...chat, functions: [{ name: 'f', parameters: {} }] }, 'functions'],
      ['/v1/chat/completions', { ...chat, function_call: 'auto' }, 'function_call'],
      ['/v1/chat/completions', { ...chat, audio: { voice: 'alloy', format: 'mp3' } }, 'audio'],
      ['/v1/chat/completions', { ...chat, modalities: ['text', 'audio'] }, 'modalities'],
      ['/v1/completions', { model: id, prompt: 'Hi', echo: true }, 'echo'],
      ['/v1/completions', { model: id, prompt: 'Hi', best_of: 2 }, 'best_of'],
      ['/v1/completions', { model: id, prompt: 'Hi', suffix: 'end' }, 'suffix'],
    ];
    for (const [path, body, field] of cases) {
      const r = await post(path, body);
      expect(r.status, field).toBe(400);
      expect(r.body.error!.param).toBe(field);
      expect(r.body.error!.code).toBe('unsupported_field');
      expect(r.body.error!.message).toContain(field);
    }
    // Their "off" values are accepted.
    const off = await post('/v1/completions', { model: id, prompt: 'Hi', max_tokens: 2, echo: false, best_of: 1, suffix: '' });
    expect(off.status, JSON.stringify(off.body)).toBe(200);
    const chatOff = await post('/v1/chat/completions', { ...chat, modalities: ['text'], functions: [], function_call: 'none' });
    expect(chatOff.status, JSON.stringify(chatOff.body)).toBe(200);
  });
});

describe('malformed conversations are 400s naming the field; the server goes on', () => {
  const call = { id: 'call_1', type: 'function', function: { name: 'add', arguments: '{"a":1,"b":2}' } };
  const cases: { what: string; path?: string; body: Record<string, unknown>; param: string; code: string }[] = [
    {
      what: 'a tool result for no earlier call',
      body: {
        messages: [
          { role: 'user', content: 'Add' },
          { role: 'assistant', content: null, tool_calls: [call] },
          { role: 'tool', tool_call_id: 'call_2', content: '3' },
        ],
        tools,
      },
      param: 'messages[2].tool_call_id',
      code: 'invalid_value',
    },
    {
      what: 'call arguments that are not JSON',
      body: {
        messages: [
          { role: 'user', content: 'Add' },
          {
            role: 'assistant',
            content: null,
            tool_calls: [call, { ...call, id: 'call_2', function: { name: 'add', arguments: '{"a":' } }],
          },
        ],
        tools,
      },
      param: 'messages[1].tool_calls[1].function.arguments',
      code: 'invalid_value',
    },
    {
      what: 'a named tool_choice naming no tool',
      body: { messages: [{ role: 'user', content: 'Hi' }], tools, tool_choice: { type: 'function', function: { name: 'multiply' } } },
      param: 'tool_choice.function.name',
      code: 'invalid_value',
    },
    {
      what: "tool_choice 'required' without tools",
      body: { messages: [{ role: 'user', content: 'Hi' }], tool_choice: 'required' },
      param: 'tool_choice',
      code: 'invalid_value',
    },
    {
      what: 'an unsupported keyword in the parameters of a tool',
      body: {
        messages: [{ role: 'user', content: 'Hi' }],
        tools: [
          tools[0],
          {
            type: 'function',
            function: { name: 'odd', parameters: { type: 'object', properties: { x: { type: 'integer', multipleOf: 2 } } } },
          },
        ],
        tool_choice: 'required',
      },
      param: 'tools[1].function.parameters',
      code: 'ERR_JSON_SCHEMA',
    },
    {
      what: 'an unsupported keyword in response_format',
      body: {
        messages: [{ role: 'user', content: 'Hi' }],
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', not: { required: ['a'] } } } },
      },
      param: 'response_format.json_schema.schema',
      code: 'ERR_JSON_SCHEMA',
    },
    {
      what: 'an unknown key in response_format.json_schema',
      body: {
        messages: [{ role: 'user', content: 'Hi' }],
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' }, strcit: true } },
      },
      param: 'response_format.json_schema.strcit',
      code: 'unsupported_field',
    },
    {
      what: "response_format json_object and llama-server's json_schema together",
      body: { messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'json_object' }, json_schema: { type: 'object' } },
      param: 'json_schema',
      code: 'invalid_value',
    },
    {
      what: 'an unknown key in a tool',
      body: { messages: [{ role: 'user', content: 'Hi' }], tools: [tools[0], { ...tools[1], cache_control: {} }] },
      param: 'tools[1].cache_control',
      code: 'unsupported_field',
    },
    {
      what: 'a name on a message that is not a tool result',
      body: { messages: [{ role: 'user', content: 'Hi', name: 'bob' }] },
      param: 'messages[0].name',
      code: 'invalid_value',
    },
    { what: 'n above the sequences', body: { messages: [{ role: 'user', content: 'Hi' }], n: 5 }, param: 'n', code: 'invalid_value' },
    {
      what: 'ignore_eos without max_tokens',
      body: { messages: [{ role: 'user', content: 'Hi' }], ignore_eos: true, max_tokens: null },
      param: 'max_tokens', // the library names the field that is missing
      code: 'invalid_value',
    },
    {
      what: 'a logit_bias out of range',
      path: '/v1/completions',
      body: { prompt: 'Hi', logit_bias: { '5': 500 } },
      param: 'logit_bias',
      code: 'invalid_value',
    },
    {
      what: 'an xtc_threshold out of range',
      body: { messages: [{ role: 'user', content: 'Hi' }], xtc_probability: 0.5, xtc_threshold: 2 },
      param: 'xtc_threshold',
      code: 'invalid_value',
    },
    {
      what: 'a grammar with a syntax error',
      body: { messages: [{ role: 'user', content: 'Hi' }], grammar: 'root ::= ("a" ' },
      param: 'grammar',
      code: 'ERR_GRAMMAR',
    },
    {
      what: 'an llguidance grammar',
      path: '/v1/completions',
      body: { prompt: 'Hi', grammar: '%llguidance {}\nstart: "a"' },
      param: 'grammar',
      code: 'ERR_GRAMMAR',
    },
  ];

  it.each(cases)('$what', async ({ path = '/v1/chat/completions', body, param, code }) => {
    for (const stream of [false, true]) {
      const r = await post(path, { model: id, max_tokens: 4, ...body, stream });
      expect(r.status, JSON.stringify(r.body)).toBe(400);
      expect(r.body.error!.param).toBe(param);
      expect(r.body.error!.code).toBe(code);
    }
    await normalRequest();
  });
});
