// The server end to end with the official `openai` client on 127.0.0.1: chat and text completions,
// streaming and not, a stream the client breaks out of frees its sequence, 32 concurrent streams all
// finish on 4 sequences, a resent conversation reuses its cached prefix, and /metrics is Prometheus text.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, createServer, type LlamaModel, type LlamaServer } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';

let model: LlamaModel;
let server: LlamaServer;
let url: string;
let client: OpenAI;
const id = 'tiny';

beforeAll(async () => {
  model = await Llama.load(await syntheticModel('tiny'), { gpu: 'cpu', contextSize: 512, sequences: 4, threads: 2 });
  server = createServer(model, { alias: id });
  url = await server.listen({ port: 0 });
  client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 });
});

afterAll(async () => {
  await server?.close();
  await model?.dispose();
});

async function metricsText(): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** One sample's value from Prometheus text, or undefined. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('chat completions', () => {
  it('response_format holds on a model whose template markers are not vocabulary tokens (llama-server refuses it: 400)', async () => {
    // ChatML on a SentencePiece vocabulary: llama.cpp's prefill drops the generation prompt's first
    // token, " <"; the server aligns the grammar with that (native/chat_templates.cc).
    const schema = {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 8 } },
      required: ['city'],
      additionalProperties: false,
    };
    let finished = 0;
    for (const seed of [1, 2, 3]) {
      const res = await client.chat.completions.create({
        model: id,
        messages: [{ role: 'user', content: 'A city, as JSON' }],
        max_tokens: 40,
        temperature: 1,
        seed,
        response_format: { type: 'json_schema', json_schema: { name: 'city', schema, strict: true } },
      });
      if (res.choices[0]!.finish_reason !== 'stop') continue;
      finished++;
      // The JSON alone: llama.cpp's parser leaves out a ```json fence the grammar allows.
      expect(JSON.parse(res.choices[0]!.message.content!)).toEqual({ city: expect.any(String) });
    }
    expect(finished).toBeGreaterThan(0);
  });

  it('answers with the message, usage with cached tokens and timings', async () => {
    const res = await client.chat.completions.create({
      model: id,
      messages: [{ role: 'user', content: 'Hello there' }],
      max_tokens: 6,
      temperature: 0,
    });
    expect(res.object).toBe('chat.completion');
    expect(res.model).toBe(id);
    expect(res.choices).toHaveLength(1);
    expect(res.choices[0]!.message.role).toBe('assistant');
    expect(typeof res.choices[0]!.message.content).toBe('string');
    expect(['stop', 'length']).toContain(res.choices[0]!.finish_reason);
    expect(res.usage!.completion_tokens).toBeGreaterThan(0);
    expect(res.usage!.total_tokens).toBe(res.usage!.prompt_tokens + res.usage!.completion_tokens);
    expect(res.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThanOrEqual(0);
    const timings = (res as unknown as { timings: Record<string, number> }).timings;
    expect(Object.keys(timings).sort()).toEqual([
      'first_token_ms',
      'generation_ms',
      'prompt_ms',
      'prompt_tokens_per_second',
      'queue_ms',
      'tokens_per_second',
      'total_ms',
    ]);
  });

  it('streams role, content pieces, a finish reason and the usage; the text is the non-streamed one', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'Count to three' },
    ];
    const whole = await client.chat.completions.create({ model: id, messages, max_tokens: 8, temperature: 0 });
    const stream = await client.chat.completions.create({
      model: id,
      messages,
      max_tokens: 8,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let role: string | undefined;
    let finish: string | null | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      expect(chunk.object).toBe('chat.completion.chunk');
      if (chunk.choices.length === 0) {
        usage = chunk.usage;
        continue;
      }
      role ??= chunk.choices[0]!.delta.role;
      text += chunk.choices[0]!.delta.content ?? '';
      finish = chunk.choices[0]!.finish_reason ?? finish;
    }
    expect(role).toBe('assistant');
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    expect(usage!.completion_tokens).toBe(whole.usage!.completion_tokens);
  });

  it('reuses the cached prefix of a resent conversation', async () => {
    const messages = [{ role: 'user' as const, content: 'Tell me about the history of the old city by the river' }];
    const first = await client.chat.completions.create({ model: id, messages, max_tokens: 6, temperature: 0 });
    const resent = [
      ...messages,
      { role: 'assistant' as const, content: first.choices[0]!.message.content ?? '' },
      { role: 'user' as const, content: 'And then?' },
    ];
    const second = await client.chat.completions.create({ model: id, messages: resent, max_tokens: 6, temperature: 0 });
    expect(second.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThan(0);
    expect(second.usage!.prompt_tokens_details!.cached_tokens).toBeLessThan(second.usage!.prompt_tokens);
  });
});

describe('text completions', () => {
  it('answers with the text and usage', async () => {
    const res = await client.completions.create({ model: id, prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
    expect(res.object).toBe('text_completion');
    expect(typeof res.choices[0]!.text).toBe('string');
    expect(res.usage!.completion_tokens).toBeGreaterThan(0);
  });

  it('streams the same text', async () => {
    const whole = await client.completions.create({ model: id, prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
    const stream = await client.completions.create({ model: id, prompt: 'Once upon a time', max_tokens: 5, temperature: 0, stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(whole.choices[0]!.text);
  });

  it('takes a prompt of token ids', async () => {
    const { tokens } = (await (
      await fetch(`${url}/tokenize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ content: 'Once upon a time', add_special: true }),
      })
    ).json()) as { tokens: number[] };
    const byIds = await client.completions.create({ model: id, prompt: tokens, max_tokens: 5, temperature: 0 });
    const byText = await client.completions.create({ model: id, prompt: 'Once upon a time', max_tokens: 5, temperature: 0 });
    expect(byIds.choices[0]!.text).toBe(byText.choices[0]!.text);
  });
});

describe('the engine behind it', () => {
  it('a stream the client breaks out of frees its sequence', async () => {
    const stream = await client.chat.completions.create({
      model: id,
      messages: [{ role: 'user', content: 'Go on forever' }],
      max_tokens: 400,
      temperature: 0,
      stream: true,
    });
    let pieces = 0;
    for await (const _chunk of stream) {
      if (++pieces === 2) break;
    }
    await until(async () => sample(await metricsText(), 'cuda_llama_requests_running') === 0, 'requests_running 0');
    // The sequence is free: a new request runs at once.
    const after = await client.completions.create({ model: id, prompt: 'Hi', max_tokens: 2 });
    expect(after.usage!.completion_tokens).toBeGreaterThan(0);
  });

  it('a client that leaves a non-streamed request frees its sequence and counts as 499', async () => {
    const controller = new AbortController();
    const request = fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: id, prompt: 'hold', max_tokens: 480, temperature: 0 }),
      signal: controller.signal,
    }).catch((e: unknown) => e);
    await until(async () => sample(await metricsText(), 'cuda_llama_requests_running') === 1, 'the request to run');
    controller.abort();
    expect(await request).toBeInstanceOf(Error);
    await until(async () => sample(await metricsText(), 'cuda_llama_requests_running') === 0, 'requests_running 0');
    expect(await metricsText()).toMatch(/cuda_llama_requests_total\{route="\/v1\/completions",status="499"\} 1/);
  });

  it('32 concurrent streams on 4 sequences all finish', async () => {
    const runs = Array.from({ length: 32 }, async (_, i) => {
      const stream = await client.chat.completions.create({
        model: id,
        messages: [{ role: 'user', content: `Request number ${i}` }],
        max_tokens: 4,
        temperature: 0,
        stream: true,
      });
      let finish: string | null = null;
      for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
      return finish;
    });
    const finishes = await Promise.all(runs);
    expect(finishes.every((f) => f === 'stop' || f === 'length')).toBe(true);
    const text = await metricsText();
    expect(sample(text, 'cuda_llama_requests_running')).toBe(0);
    expect(sample(text, 'cuda_llama_requests_waiting')).toBe(0);
  });
});

describe('other endpoints', () => {
  it('/v1/models lists the alias; /health is ok', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([id]);
    expect((await client.models.retrieve(id)).id).toBe(id);
    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
  });

  it('/tokenize and /detokenize round-trip', async () => {
    const post = (path: string, body: unknown) =>
      fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then((r) =>
        r.json(),
      );
    const { tokens } = (await post('/tokenize', { content: 'Hello world' })) as { tokens: number[] };
    expect(tokens).toEqual(model.tokenize('Hello world', { addSpecial: false, parseSpecial: true }));
    expect(await post('/detokenize', { tokens })).toEqual({ content: model.detokenize(tokens) });
  });

  it('/metrics is Prometheus text with the cuda_llama_ series', async () => {
    const text = await metricsText();
    const names = new Set<string>();
    for (const line of text.split('\n')) {
      if (line === '') continue;
      if (line.startsWith('#')) {
        expect(line).toMatch(/^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* /);
        continue;
      }
      // name{label="value",...} number; Prometheus reads NaN in any case (prom-client writes "Nan")
      const match =
        /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|[Nn][Aa][Nn]|[+-]Inf)$/.exec(line);
      expect(match, line).not.toBeNull();
      names.add(match![1]!);
    }
    for (const name of [
      'cuda_llama_requests_total',
      'cuda_llama_requests_running',
      'cuda_llama_requests_waiting',
      'cuda_llama_prompt_tokens_total',
      'cuda_llama_prompt_tokens_cached_total',
      'cuda_llama_generation_tokens_total',
      'cuda_llama_time_to_first_token_seconds_bucket',
      'cuda_llama_inter_token_latency_seconds_bucket',
      'cuda_llama_request_duration_seconds_bucket',
      'cuda_llama_queue_time_seconds_bucket',
      'cuda_llama_kv_cache_usage_ratio',
      'cuda_llama_kv_cache_parked_sessions',
      'cuda_llama_kv_cache_parked_bytes',
    ])
      expect(names, name).toContain(name);
    expect(sample(text, 'cuda_llama_generation_tokens_total')).toBeGreaterThan(0);
    // Earlier requests left their tokens in the sequences' KV cache.
    const usage = sample(text, 'cuda_llama_kv_cache_usage_ratio')!;
    expect(usage).toBeGreaterThan(0);
    expect(usage).toBeLessThanOrEqual(1);
    expect(text).toMatch(/cuda_llama_requests_total\{route="\/v1\/chat\/completions",status="200"\} [1-9]/);
  });

  it('/metrics has the NVML readings per GPU and the throttle reasons as labels', async () => {
    const fake = createServer(model, {
      telemetry: () => ({
        available: true,
        driverVersion: '580.00',
        cudaDriverVersion: '13.0',
        devices: [
          {
            index: 0,
            name: 'Fake GPU',
            computeCapability: '9.0',
            smClockMHz: 1980,
            memoryClockMHz: 2619,
            maxSmClockMHz: 1980,
            powerW: 350.5,
            powerLimitW: 700,
            temperatureC: 61,
            utilizationGpu: 97,
            utilizationMemory: 40,
            throttleReasons: ['swPowerCap'],
            throttled: true,
            memoryTotal: 1e11,
            memoryFree: 5e10,
            pciBusId: '0000:01:00.0',
          },
        ],
      }),
    });
    const fakeUrl = await fake.listen({ port: 0 });
    try {
      const text = await (await fetch(`${fakeUrl}/metrics`)).text();
      expect(text).toContain('cuda_llama_gpu_sm_clock_hertz{gpu="0",name="Fake GPU"} 1980000000');
      expect(text).toContain('cuda_llama_gpu_power_watts{gpu="0",name="Fake GPU"} 350.5');
      expect(text).toContain('cuda_llama_gpu_power_limit_watts{gpu="0",name="Fake GPU"} 700');
      expect(text).toContain('cuda_llama_gpu_temperature_celsius{gpu="0",name="Fake GPU"} 61');
      expect(text).toContain('cuda_llama_gpu_utilization_ratio{gpu="0",name="Fake GPU"} 0.97');
      expect(text).toContain('cuda_llama_gpu_throttle_reason{gpu="0",name="Fake GPU",reason="swPowerCap"} 1');
      expect(text).toContain('cuda_llama_gpu_throttle_reason{gpu="0",name="Fake GPU",reason="hwThermalSlowdown"} 0');
    } finally {
      await fake.close();
    }
  });
});
