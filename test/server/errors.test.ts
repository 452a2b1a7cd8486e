// Every error the server answers, with its status and OpenAI's shape {"error":{"message","type","param","code"}}:
// malformed JSON, wrong types, unknown and still unsupported fields, a prompt over the context (never
// truncated), auth, unknown routes and models, an oversized body, a full queue, a deadline; 4xx
// responses carry x-should-retry: false.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, createServer, type LlamaModel, type LlamaServer } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';

const id = 'tiny';
let model: LlamaModel;
let open: LlamaServer;
let locked: LlamaServer;
let openUrl: string;
let lockedUrl: string;

beforeAll(async () => {
  // One sequence and a long window: a long generation holds the only sequence for seconds.
  model = await Llama.load(await syntheticModel('tiny'), { gpu: 'cpu', contextSize: 2048, sequences: 1, threads: 2 });
  open = createServer(model, { alias: id, maxQueue: 0, bodyLimit: 64 * 1024 });
  openUrl = await open.listen({ port: 0 });
  locked = createServer(model, { alias: id, apiKey: 'secret', timeout: 0.05 });
  lockedUrl = await locked.listen({ port: 0 });
});

afterAll(async () => {
  await open?.close();
  await locked?.close();
  await model?.dispose();
});

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null; prompt_tokens?: number; context_size?: number };
}

async function post(path: string, body: unknown, { url = openUrl, headers = {} as Record<string, string> } = {}) {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { res, status: res.status, body: JSON.parse(text) as ErrorBody };
}

/** The OpenAI error shape, and the retry advice that goes with a 4xx. */
function expectError(r: { res: Response; status: number; body: ErrorBody }, status: number, code?: string) {
  expect(r.status).toBe(status);
  expect(Object.keys(r.body)).toEqual(['error']);
  expect(typeof r.body.error.message).toBe('string');
  expect(typeof r.body.error.type).toBe('string');
  expect('param' in r.body.error && 'code' in r.body.error).toBe(true);
  if (code !== undefined) expect(r.body.error.code).toBe(code);
  if (status < 500) expect(r.res.headers.get('x-should-retry')).toBe('false');
  expect(r.res.headers.get('x-request-id')).toBeTruthy();
}

const chat = (extra: Record<string, unknown> = {}) => ({ model: id, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, ...extra });

describe('400: the request is wrong', () => {
  it('embeddings from a model loaded without them (embeddings.test.ts has the rest)', async () => {
    expectError(await post('/v1/embeddings', { model: id, input: 'Hi' }), 400, 'ERR_NO_EMBEDDINGS');
  });

  it('malformed JSON', async () => {
    const r = await post('/v1/chat/completions', '{"model": "tiny", "messages": [');
    expectError(r, 400);
    expect(r.body.error.type).toBe('invalid_request_error');
  });

  it('a field of the wrong type names it', async () => {
    const r = await post('/v1/chat/completions', chat({ temperature: 'hot' }));
    expectError(r, 400, 'invalid_type');
    expect(r.body.error.param).toBe('temperature');
    const messages = await post('/v1/chat/completions', { model: id, messages: 'Hi' });
    expectError(messages, 400, 'invalid_type');
    expect(messages.body.error.param).toBe('messages');
    const missing = await post('/v1/completions', { model: id });
    expectError(missing, 400, 'invalid_type');
    expect(missing.body.error.param).toBe('prompt');
  });

  it('an unknown field names it', async () => {
    const r = await post('/v1/chat/completions', chat({ temprature: 0.5 }));
    expectError(r, 400, 'invalid_type');
    expect(r.body.error.message).toContain('temprature');
  });

  it('what stays unsupported is refused, each field named; their "off" values and the implemented fields are accepted', async () => {
    const r = await post(
      '/v1/chat/completions',
      chat({ functions: [{ name: 'f', parameters: {} }], function_call: 'auto', modalities: ['audio'] }),
    );
    expectError(r, 400, 'unsupported_field');
    for (const field of ['functions', 'function_call', 'modalities']) expect(r.body.error.message).toContain(field);
    expect(r.body.error.param).toBe('functions');
    const echo = await post('/v1/completions', { model: id, prompt: 'Hi', echo: true, best_of: 2, suffix: '!' });
    expectError(echo, 400, 'unsupported_field');
    for (const field of ['echo', 'best_of', 'suffix']) expect(echo.body.error.message).toContain(field);
    expect(echo.body.error.param).toBe('echo');
    const audio = await post('/v1/chat/completions', chat({ audio: { voice: 'alloy', format: 'wav' } }));
    expectError(audio, 400, 'unsupported_field');
    expect(audio.body.error.param).toBe('audio');
    const penalty = await post('/v1/completions', {
      model: id,
      prompt: 'Hi',
      max_tokens: 2,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
    });
    expect(penalty.status).toBe(200);
    const outOfRange = await post('/v1/completions', { model: id, prompt: 'Hi', presence_penalty: 3 });
    expectError(outOfRange, 400, 'invalid_value');
    expect(outOfRange.body.error.message).toContain('presencePenalty');
    expect(outOfRange.body.error.param).toBe('presence_penalty');
    // Off values of what is refused, and what is implemented now (n, logprobs, logit_bias, tools).
    const tools = [{ type: 'function', function: { name: 'f', parameters: {} } }];
    const off = await post(
      '/v1/chat/completions',
      chat({
        functions: [],
        function_call: 'none',
        modalities: ['text'],
        audio: null,
        n: 1,
        logprobs: true,
        logit_bias: { '1': 5 },
        tools,
        tool_choice: 'none',
      }),
    );
    expect(off.status, JSON.stringify(off.body)).toBe(200);
    const text = await post('/v1/completions', {
      model: id,
      prompt: 'Hi',
      max_tokens: 2,
      echo: false,
      best_of: 1,
      suffix: null,
      logprobs: 1,
    });
    expect(text.status, JSON.stringify(text.body)).toBe(200);
  });

  it('a value the library refuses names the request field', async () => {
    const r = await post('/v1/chat/completions', chat({ top_p: 0 }));
    expectError(r, 400, 'invalid_value');
    expect(r.body.error.param).toBe('top_p');
  });

  it('a prompt longer than the context, with the token counts, streaming or not (never truncated)', async () => {
    const prompt = 'word '.repeat(2500);
    for (const stream of [false, true]) {
      const r = await post('/v1/completions', { model: id, prompt, stream });
      expectError(r, 400, 'ERR_CONTEXT_FULL');
      expect(r.res.headers.get('content-type')).toMatch(/^application\/json/);
      expect(r.body.error.context_size).toBe(2048);
      expect(r.body.error.prompt_tokens).toBeGreaterThan(2048);
      expect(r.body.error.message).toContain(`${r.body.error.prompt_tokens} tokens`);
    }
  });

  it('the official client sees a BadRequestError', async () => {
    const client = new OpenAI({ baseURL: `${openUrl}/v1`, apiKey: 'x', maxRetries: 0 });
    // n: 3 is implemented, but this model was loaded with one sequence.
    const error = await client.chat.completions
      .create({ model: id, messages: [{ role: 'user', content: 'Hi' }], n: 3 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).status).toBe(400);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('n');
  });
});

describe('other statuses', () => {
  it('401 for a missing or wrong key; the right key passes; /health needs none', async () => {
    expectError(await post('/v1/chat/completions', chat(), { url: lockedUrl }), 401, 'invalid_api_key');
    const wrong = await post('/v1/chat/completions', chat(), { url: lockedUrl, headers: { authorization: 'Bearer nope' } });
    expectError(wrong, 401, 'invalid_api_key');
    expect(wrong.body.error.type).toBe('authentication_error');
    expect((await fetch(`${lockedUrl}/health`)).status).toBe(200);
    const models = await fetch(`${lockedUrl}/v1/models`, { headers: { authorization: 'Bearer secret' } });
    expect(models.status).toBe(200);
    const client = new OpenAI({ baseURL: `${lockedUrl}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await expect(client.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('404 for an unknown route and for another model', async () => {
    const route = await post('/v1/nothing', {});
    expectError(route, 404, 'unknown_route');
    const get = await fetch(`${openUrl}/v2/models`);
    expect(get.status).toBe(404);
    expect(((await get.json()) as ErrorBody).error.type).toBe('not_found_error');
    const other = await post('/v1/chat/completions', chat({ model: 'gpt-4o' }));
    expectError(other, 404, 'model_not_found');
    expect(other.body.error.param).toBe('model');
  });

  it('413 for a body over the limit', async () => {
    const r = await post('/v1/completions', { model: id, prompt: 'x'.repeat(100 * 1024) });
    expectError(r, 413, 'body_too_large');
  });

  it('503 with Retry-After when the queue is full', async () => {
    // Holds the only sequence (maxQueue 0: nothing may wait) until the test breaks out.
    const controller = new AbortController();
    const res = await fetch(`${openUrl}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: id, prompt: 'hold', max_tokens: 2000, temperature: 0, stream: true }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    await reader.read(); // the first token: the request holds its sequence
    try {
      const full = await post('/v1/completions', { model: id, prompt: 'Hi', max_tokens: 2 });
      expectError(full, 503, 'queue_full');
      expect(full.res.headers.get('retry-after')).toBe('1');
      expect(full.body.error.type).toBe('unavailable_error');
    } finally {
      controller.abort();
    }
  });

  it('503 while the model loads (from a promise), then ready', async () => {
    let resolve!: (m: LlamaModel) => void;
    const pending = createServer(new Promise<LlamaModel>((r) => (resolve = r)), { alias: id });
    const url = await pending.listen({ port: 0 });
    try {
      const health = await fetch(`${url}/health`);
      expect(health.status).toBe(503);
      expect(health.headers.get('retry-after')).toBe('1');
      expect(await health.json()).toEqual({ status: 'loading' });
      expectError(await post('/v1/chat/completions', chat(), { url }), 503, 'model_not_ready');
      resolve(model);
      await new Promise((r) => setImmediate(r));
      expect((await fetch(`${url}/health`)).status).toBe(200);
      expect((await post('/v1/chat/completions', chat(), { url })).status).toBe(200);
    } finally {
      await pending.close();
    }
  });

  it('504 past the deadline', async () => {
    const r = await post(
      '/v1/completions',
      { model: id, prompt: 'hold', max_tokens: 2000, temperature: 0 },
      { url: lockedUrl, headers: { authorization: 'Bearer secret' } },
    );
    expectError(r, 504, 'timeout');
  });
});
