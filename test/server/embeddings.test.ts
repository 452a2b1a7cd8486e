// POST /v1/embeddings with the official `openai` client (float, base64 and the client's own base64
// default, every input shape, usage), POST /v1/rerank and /rerank with fetch, the 400s (dimensions,
// a text over the batch, a model without embeddings, pooling none, chat on an embedding model,
// rerank without a ranking head), the embedding counters, and embeddings next to chat on one model.
import { Writable } from 'node:stream';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, createServer, type LlamaModel, type LlamaServer, type ServerOptions } from '../../lib/index.js';
import { EmbeddingLine } from '../../lib/server/embeddings.js';
import { shapes, type SyntheticShapeName } from '../../lib/gguf/synthetic-model.js';
import { syntheticModel } from '../helpers/models.js';

const id = 'tiny';
const opened: { model: LlamaModel; server: LlamaServer }[] = [];
/** Every server's request log lines (pino JSON). */
const logs: Record<string, unknown>[] = [];
const logStream = new Writable({
  write(chunk: Buffer, _encoding, done) {
    for (const line of chunk.toString().split('\n')) if (line.startsWith('{')) logs.push(JSON.parse(line) as Record<string, unknown>);
    done();
  },
});

async function serve(shape: string, options: Parameters<typeof Llama.load>[1] = {}, serverOptions: ServerOptions = {}) {
  const model = await Llama.load(await syntheticModel(shape as SyntheticShapeName), {
    gpu: 'cpu',
    contextSize: 512,
    threads: 2,
    ...options,
  });
  const server = createServer(model, { alias: id, logger: { level: 'info', stream: logStream }, ...serverOptions });
  const url = await server.listen({ port: 0 });
  opened.push({ model, server });
  return { model, url, client: new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120_000 }) };
}

afterAll(async () => {
  for (const { model, server } of opened) {
    await server.close();
    await model.dispose();
  }
});

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

async function post<T = ErrorBody>(url: string, path: string, body: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as T };
}

function expect400(r: { status: number; body: ErrorBody }, code: string, param: string | null = null, message?: RegExp) {
  expect(r.status, JSON.stringify(r.body)).toBe(400);
  expect(r.body.error.type).toBe('invalid_request_error');
  expect(r.body.error.code).toBe(code);
  expect(r.body.error.param).toBe(param);
  if (message) expect(r.body.error.message).toMatch(message);
}

function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

const has = (shape: string) => shape in shapes;
for (const shape of ['tinyBert', 'tinyQwen3Reranker']) {
  // Visible in the run's output: these shapes come with the synthetic embedding models.
  if (!has(shape)) console.warn(`embeddings.test.ts: synthetic shape ${shape} is not there yet; its tests are skipped`);
}

describe('a generative model with embeddings (--embeddings)', () => {
  let model: LlamaModel;
  let url: string;
  let client: OpenAI;

  beforeAll(async () => {
    ({ model, url, client } = await serve('tiny', { embeddings: true, sequences: 2 }));
  });

  it('answers in OpenAI shape, with usage the texts’ token counts', async () => {
    const res = await client.embeddings.create({ model: id, input: ['hello world', 'a second text'], encoding_format: 'float' });
    expect(res.object).toBe('list');
    expect(res.model).toBe(id);
    expect(res.data.map((d) => [d.object, d.index])).toEqual([
      ['embedding', 0],
      ['embedding', 1],
    ]);
    const direct = await model.embed(['hello world', 'a second text']);
    for (const [i, d] of res.data.entries()) {
      expect(d.embedding).toHaveLength(model.info.embeddingOutputSize);
      expect(d.embedding).toEqual(Array.from(direct.embeddings[i]!));
      expect(Math.hypot(...d.embedding)).toBeCloseTo(1, 5);
    }
    const tokens = direct.tokenCounts.reduce((a, b) => a + b, 0);
    expect(res.usage).toEqual({ prompt_tokens: tokens, total_tokens: tokens });
  });

  it('base64 is the float vector as little-endian float32 bytes (and the client decodes its default base64 to the same)', async () => {
    const input = 'the same text three ways';
    const float = await client.embeddings.create({ model: id, input, encoding_format: 'float' });
    const raw = await post<{ data: { embedding: string }[] }>(url, '/v1/embeddings', { model: id, input, encoding_format: 'base64' });
    expect(raw.status).toBe(200);
    const bytes = Buffer.from(raw.body.data[0]!.embedding, 'base64');
    expect(bytes.length).toBe(4 * float.data[0]!.embedding.length);
    const decoded = Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
    expect(decoded).toEqual(float.data[0]!.embedding);
    const byDefault = await client.embeddings.create({ model: id, input });
    expect(byDefault.data[0]!.embedding).toEqual(float.data[0]!.embedding);
  });

  it('takes a string, strings, token ids and arrays of token ids', async () => {
    const ids = model.tokenize('hello world', { addSpecial: true });
    const [text, fromIds] = (await model.embed(['hello world', ids])).embeddings.map((v) => Array.from(v));
    const one = await client.embeddings.create({ model: id, input: 'hello world', encoding_format: 'float' });
    expect(one.data).toHaveLength(1);
    expect(one.data[0]!.embedding).toEqual(text);
    const tokens = await client.embeddings.create({ model: id, input: ids, encoding_format: 'float' });
    expect(tokens.data).toHaveLength(1);
    expect(tokens.data[0]!.embedding).toEqual(fromIds);
    expect(tokens.usage.prompt_tokens).toBe(ids.length);
    const many = await client.embeddings.create({ model: id, input: [ids, ids.slice(0, 2)], encoding_format: 'float' });
    expect(many.data).toHaveLength(2);
    expect(many.usage.prompt_tokens).toBe(ids.length + 2);
    const mixed = await post<{ data: { embedding: number[] }[] }>(url, '/v1/embeddings', { model: id, input: ['hello world', ids] });
    expect(mixed.body.data.map((d) => d.embedding)).toEqual([text, fromIds]);
  });

  it('dimensions: the model’s own size is accepted, any other a 400 naming it', async () => {
    const size = model.info.embeddingOutputSize;
    const res = await client.embeddings.create({ model: id, input: 'x', dimensions: size, encoding_format: 'float' });
    expect(res.data[0]!.embedding).toHaveLength(size);
    expect400(
      await post(url, '/v1/embeddings', { model: id, input: 'x', dimensions: 32 }),
      'unsupported_value',
      'dimensions',
      /Matryoshka/,
    );
  });

  it('a text over the batch is a 400 naming its index, never truncated', async () => {
    const long = new Array<number>(600).fill(100);
    expect400(
      await post(url, '/v1/embeddings', { model: id, input: ['short', long] }),
      'ERR_TEXT_TOO_LONG',
      'input',
      /^input\[1\] has 600 tokens; this model embeds at most 512/,
    );
    expect400(await post(url, '/v1/embeddings', { model: id, input: 'word '.repeat(600) }), 'ERR_TEXT_TOO_LONG', 'input', /^input\[0\]/);
  });

  it('refuses malformed input, token ids outside the vocabulary, unknown fields and another model', async () => {
    for (const input of ['', [], [''], ['a', 1], [[]], [1.5], [-1], { text: 'a' }]) {
      expect400(
        await post(url, '/v1/embeddings', { model: id, input }),
        'invalid_type',
        'input',
        /^input must be a non-empty string, an array/,
      );
    }
    expect400(await post(url, '/v1/embeddings', { model: id, input: [[1, 99_999]] }), 'invalid_value', 'input[0][1]');
    expect400(await post(url, '/v1/embeddings', { model: id, input: [5, 99_999] }), 'invalid_value', 'input[1]');
    expect400(await post(url, '/v1/embeddings', { model: id, input: 'a', encoding_format: 'int8' }), 'invalid_type', 'encoding_format');
    expect400(await post(url, '/v1/embeddings', { model: id, input: 'a', truncate: true }), 'invalid_type', 'truncate');
    const accepted = await post(url, '/v1/embeddings', { model: id, input: 'a', user: 'someone' });
    expect(accepted.status).toBe(200);
    const wrong = await post(url, '/v1/embeddings', { model: 'other', input: 'a' });
    expect(wrong.status).toBe(404);
    expect(wrong.body.error.code).toBe('model_not_found');
  });

  it('rerank on a model without a ranking head is a 400 on both routes', async () => {
    for (const path of ['/v1/rerank', '/rerank']) {
      expect400(await post(url, path, { query: 'q', documents: ['a', 'b'] }), 'ERR_NO_RANKING_HEAD', null, /no ranking head/);
    }
  });

  it('counts embedded texts and tokens; the request log record has them', async () => {
    const before = await (await fetch(`${url}/metrics`)).text();
    const res = await client.embeddings.create({ model: id, input: ['one', 'two', 'three'], encoding_format: 'float' });
    const after = await (await fetch(`${url}/metrics`)).text();
    const texts = 'cuda_llama_embedding_texts_total{kind="embeddings"}';
    const tokens = 'cuda_llama_embedding_tokens_total{kind="embeddings"}';
    expect(sample(after, texts) - sample(before, texts)).toBe(3);
    expect(sample(after, tokens) - sample(before, tokens)).toBe(res.usage.prompt_tokens);
    expect(after).toMatch(/cuda_llama_requests_total\{route="\/v1\/embeddings",status="200"\} \d+/);
    const line = logs.findLast((l) => l.msg === 'request' && l.route === '/v1/embeddings' && l.status === 200);
    expect(line?.promptTokens).toBe(res.usage.prompt_tokens);
  });

  it('embeddings and chat on one server run side by side and both complete', async () => {
    const chats = Array.from({ length: 2 }, (_, i) =>
      client.chat.completions.create({ model: id, messages: [{ role: 'user', content: `Hello ${i}` }], max_tokens: 24, temperature: 0 }),
    );
    const embeds = Array.from({ length: 6 }, (_, i) =>
      client.embeddings.create({ model: id, input: [`text ${i}`, `another ${i}`], encoding_format: 'float' }),
    );
    const [chatResults, embedResults] = await Promise.all([Promise.all(chats), Promise.all(embeds)]);
    for (const c of chatResults) expect(c.choices[0]!.message.content).toEqual(expect.any(String));
    for (const e of embedResults) expect(e.data).toHaveLength(2);
    // Equal to one request alone: requests do not mix their texts.
    const alone = await client.embeddings.create({ model: id, input: ['text 3', 'another 3'], encoding_format: 'float' });
    expect(embedResults[3]!.data.map((d) => d.embedding)).toEqual(alone.data.map((d) => d.embedding));
  });
});

describe('the embeddings line: one request at a time, and an abort answers at once', () => {
  const later = () => {
    let resolve!: (value: string) => void;
    const promise = new Promise<string>((r) => (resolve = r));
    return { promise, resolve };
  };

  it('runs requests in arrival order; one aborted while it waits never runs', async () => {
    const line = new EmbeddingLine();
    const first = later();
    const ran: string[] = [];
    const a = line.run(new AbortController().signal, () => (ran.push('a'), first.promise));
    const waiting = new AbortController();
    const b = line.run(waiting.signal, () => (ran.push('b'), Promise.resolve('b')));
    const c = line.run(new AbortController().signal, () => (ran.push('c'), Promise.resolve('c')));
    expect(line.inFlight).toBe(3);
    waiting.abort(new Error('gone'));
    await expect(b).rejects.toThrow('gone');
    first.resolve('a');
    expect(await a).toBe('a');
    expect(await c).toBe('c');
    expect(ran).toEqual(['a', 'c']);
    expect(line.inFlight).toBe(0);
  });

  it('an abort while running answers at once; the next request waits for the running work to finish', async () => {
    const line = new EmbeddingLine();
    const work = later();
    const running = new AbortController();
    const a = line.run(running.signal, () => work.promise);
    let nextStarted = false;
    const b = line.run(new AbortController().signal, () => ((nextStarted = true), Promise.resolve('b')));
    await Promise.resolve();
    running.abort(new Error('deadline'));
    await expect(a).rejects.toThrow('deadline');
    await new Promise((r) => setTimeout(r, 10));
    expect(nextStarted).toBe(false);
    work.resolve('a');
    expect(await b).toBe('b');
  });

  it('past --timeout an embeddings request is a 504', async () => {
    const { url } = await serve('tiny', { embeddings: true }, { timeout: 0.001 });
    const input = Array.from({ length: 64 }, (_, i) => `text number ${i} `.repeat(20));
    const r = await post(url, '/v1/embeddings', { model: id, input });
    expect(r.status).toBe(504);
    expect(r.body.error.code).toBe('timeout');
  });
});

describe('models that cannot answer', () => {
  it('a model loaded without embeddings: 400 saying to restart with --embeddings', async () => {
    const { url } = await serve('tiny');
    expect400(await post(url, '/v1/embeddings', { model: id, input: 'hi' }), 'ERR_NO_EMBEDDINGS', null, /--embeddings/);
  });

  it("pooling 'none' is not OpenAI-compatible: 400 naming --pooling", async () => {
    const { url } = await serve('tiny', { embeddings: true, pooling: 'none' });
    expect400(await post(url, '/v1/embeddings', { model: id, input: 'hi' }), 'unsupported_pooling', null, /--pooling mean, cls or last/);
  });

  it.skipIf(!has('tinyBert'))('an embedding model embeds; a chat or text completion is a 400 pointing at /v1/embeddings', async () => {
    const { url, client, model } = await serve('tinyBert');
    expect(model.info.embeddingModel).toBe(true);
    const res = await client.embeddings.create({ model: id, input: ['hello', 'world'], encoding_format: 'float' });
    expect(res.data).toHaveLength(2);
    const messages = [{ role: 'user', content: 'Hi' }];
    expect400(await post(url, '/v1/chat/completions', { model: id, messages }), 'ERR_EMBEDDINGS_ONLY', null, /POST \/v1\/embeddings/);
    expect400(await post(url, '/v1/chat/completions', { model: id, messages, stream: true }), 'ERR_EMBEDDINGS_ONLY');
    expect400(await post(url, '/v1/completions', { model: id, prompt: 'Hi' }), 'ERR_EMBEDDINGS_ONLY');
  });
});

describe.skipIf(!has('tinyQwen3Reranker'))('a reranker', () => {
  let model: LlamaModel;
  let url: string;

  beforeAll(async () => {
    ({ model, url } = await serve('tinyQwen3Reranker'));
  });

  const query = 'what is a panda?';
  const documents = ['hi', 'The giant panda is a bear species endemic to China.', 'pandas eat bamboo', 'paris is in france'];

  interface RerankResponse {
    model: string;
    object: string;
    usage: { prompt_tokens: number; total_tokens: number };
    results: { index: number; relevance_score: number; document?: { text: string } }[];
  }

  it('ranks the documents best first, with the library’s scores and usage, on both routes', async () => {
    const direct = await model.rerank(query, documents);
    for (const path of ['/v1/rerank', '/rerank']) {
      const r = await post<RerankResponse>(url, path, { model: id, query, documents });
      expect(r.status).toBe(200);
      expect(r.body.object).toBe('list');
      expect(r.body.model).toBe(id);
      expect(r.body.results).toEqual(direct.ranking.map(({ index, score }) => ({ index, relevance_score: score })));
      const scores = r.body.results.map((x) => x.relevance_score);
      expect(scores).toEqual([...scores].sort((a, b) => b - a));
      const tokens = direct.tokenCounts.reduce((a, b) => a + b, 0);
      expect(r.body.usage).toEqual({ prompt_tokens: tokens, total_tokens: tokens });
    }
  });

  it('top_n and return_documents', async () => {
    const r = await post<RerankResponse>(url, '/v1/rerank', { query, documents, top_n: 2, return_documents: true });
    expect(r.body.results).toHaveLength(2);
    for (const x of r.body.results) expect(x.document).toEqual({ text: documents[x.index] });
  });

  it('counts scored pairs under kind="rerank"; /v1/embeddings is a 400 pointing at /v1/rerank', async () => {
    const before = await (await fetch(`${url}/metrics`)).text();
    await post(url, '/v1/rerank', { query, documents });
    const after = await (await fetch(`${url}/metrics`)).text();
    const pairs = 'cuda_llama_embedding_texts_total{kind="rerank"}';
    expect(sample(after, pairs) - sample(before, pairs)).toBe(documents.length);
    expect400(await post(url, '/v1/embeddings', { model: id, input: 'hi' }), 'ERR_NO_EMBEDDINGS', null, /POST \/v1\/rerank/);
  });

  it('a query and document over the batch is a 400 naming the document', async () => {
    const r = await post(url, '/v1/rerank', { query, documents: ['fine', 'word '.repeat(600)] });
    expect400(r, 'ERR_TEXT_TOO_LONG', 'documents', /^documents\[1\] with the query has \d+ tokens/);
  });
});
