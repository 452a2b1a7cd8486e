// Two CPU replicas of a synthetic model behind one server (lib/server/replicas.ts): the file is loaded
// once and the second replica forks the first (one set of weights, two contexts), requests spread by
// load, a conversation keeps its replica and its cached tokens, and an injected fatal decode on
// replica 0 (the one that loaded the weights) while requests run: its running ones get
// replica_failed, the one that had not started completes on replica 1, /health says degraded, and
// the reload brings replica 0 back as a fork of replica 1, without loading the file again. With every
// replica failed, requests get no_replica.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, createServer, type LlamaServer } from '../../lib/index.js';
import { sharedWeights } from '../../lib/model.js';
import { ReplicaPool } from '../../lib/server/replicas.js';
import { injectDecodeFault } from '../../lib/internal/fault.js';
import { syntheticModel } from '../helpers/models.js';

const id = 'tiny';
const load = { gpu: 'cpu' as const, contextSize: 1024, sequences: 2, threads: 1 };
let pool: ReplicaPool;
let server: LlamaServer;
let url: string;
/** Loads of the file by the pool (its loader); forks are not loads. */
let fileLoads = 0;

beforeAll(async () => {
  pool = new ReplicaPool(await syntheticModel('tiny'), { replicas: 2, load, reloadDelayMs: 1000 }, (path, options) => {
    fileLoads++;
    return Llama.load(path, options);
  });
  await pool.ready;
  server = createServer(pool, { alias: id, pingInterval: 3600 });
  url = await server.listen({ port: 0 });
});

afterAll(async () => {
  await server?.close();
  await pool?.dispose();
});

const post = (path: string, body: unknown) =>
  fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function health(): Promise<{ status: string; replicas: { replica: number; device: string; state: string; lastError?: string }[] }> {
  return (await fetch(`${url}/health`)).json() as never;
}

async function until(check: () => Promise<boolean> | boolean, what: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A streamed text completion read event by event: its replica (from the header), its first event, its end. */
function stream(prompt: string, maxTokens: number) {
  let sawFirst!: () => void;
  const first = new Promise<void>((resolve) => (sawFirst = resolve));
  const response = post('/v1/completions', { model: id, prompt, max_tokens: maxTokens, ignore_eos: true, temperature: 0, stream: true });
  const done = (async () => {
    const res = await response;
    const replica = res.headers.get('x-replica');
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    for (;;) {
      const { done: end, value } = await reader.read();
      if (end) break;
      text += decoder.decode(value, { stream: true });
      if (text.includes('data: ')) sawFirst();
    }
    sawFirst();
    const events = text
      .split('\n\n')
      .filter((e) => e.startsWith('data: '))
      .map((e) => e.slice(6));
    const last = events.at(-1);
    return {
      status: res.status,
      replica,
      completed: last === '[DONE]',
      error: last && last !== '[DONE]' ? JSON.parse(last).error : undefined,
    };
  })();
  return { replica: response.then((r) => r.headers.get('x-replica')), first, done };
}

describe('shared weights', () => {
  it('the second replica on the CPU forks the first: the file is loaded once, the weights held by both', () => {
    const [zero, one] = pool.replicas.map((r) => r.model!);
    expect(fileLoads).toBe(1);
    expect(pool.replicas.map((r) => r.sharesWeightsWith)).toEqual([undefined, 0]);
    const weights = sharedWeights(zero!);
    expect(sharedWeights(one!)).toBe(weights);
    expect(weights.references).toBe(2);
    expect(one).not.toBe(zero);
    expect(one!.info).toEqual(zero!.info);
    expect(one!.contextInfo).toEqual(zero!.contextInfo);
  });
});

describe('routing', () => {
  it('spreads concurrent requests by load: two long requests land on different replicas', async () => {
    const [a, b] = await Promise.all(
      ['Once upon a time in a land far away', 'The quarterly report shows that revenue'].map((prompt) =>
        post('/v1/completions', { model: id, prompt, max_tokens: 48, ignore_eos: true, temperature: 0 }),
      ),
    );
    expect(a!.status).toBe(200);
    expect(b!.status).toBe(200);
    expect(new Set([a!.headers.get('x-replica'), b!.headers.get('x-replica')])).toEqual(new Set(['0', '1']));
    const metrics = await (await fetch(`${url}/metrics`)).text();
    for (const replica of ['0', '1']) {
      expect(metrics).toMatch(new RegExp(`cuda_llama_generation_tokens_total\\{replica="${replica}",device="CPU"\\} [1-9]`));
      expect(metrics).toContain(`cuda_llama_replica_up{replica="${replica}",device="CPU"} 1`);
      expect(metrics).toContain(`cuda_llama_kv_cache_usage_ratio{replica="${replica}",device="CPU"}`);
    }
    expect(metrics).toMatch(/cuda_llama_requests_total\{route="\/v1\/completions",status="200",replica="0",device="CPU"\} [1-9]/);
  });

  it('keeps a multi-turn chat on its replica, which reuses the cached turns', async () => {
    const messages = [{ role: 'user', content: 'Tell me about the history of the old city by the river' }];
    const first = await post('/v1/chat/completions', { model: id, messages, max_tokens: 8, temperature: 0 });
    const turn1 = (await first.json()) as { choices: { message: { content: string } }[] };
    const replica = first.headers.get('x-replica');
    for (const next of ['And then?', 'What happened after that?']) {
      messages.push({ role: 'assistant', content: turn1.choices[0]!.message.content }, { role: 'user', content: next });
      const res = await post('/v1/chat/completions', { model: id, messages, max_tokens: 8, temperature: 0 });
      const body = (await res.json()) as {
        choices: { message: { content: string } }[];
        usage: { prompt_tokens_details: { cached_tokens: number } };
      };
      expect(res.headers.get('x-replica')).toBe(replica);
      expect(body.usage.prompt_tokens_details.cached_tokens).toBeGreaterThan(0);
      turn1.choices[0]!.message.content = body.choices[0]!.message.content;
    }
  });
});

describe('failover', () => {
  it('a fatal decode on replica 0: running requests get replica_failed, waiting ones finish on replica 1, and replica 0 comes back', async () => {
    // Three long requests per replica: two run in its two sequences, one waits in its engine.
    const prompts = ['Alpha', 'Bravo', 'Charlie', 'Delta', 'Echo', 'Foxtrot'].map((w) => `${w} is the word that starts this story`);
    const streams = prompts.map((p) => stream(p, 600));
    const onZero = async () => {
      const replicas = await Promise.all(
        streams.map((s) => Promise.race([s.first.then(() => s.replica), new Promise((r) => setImmediate(() => r(null)))])),
      );
      return replicas.filter((r) => r === '0').length;
    };
    // Both of replica 0's sequences are generating (their first events are out); its third request waits.
    await until(async () => (await onZero()) === 2, "replica 0's two running streams");
    expect(pool.replicas[0]!.load).toBe(3);
    injectDecodeFault(pool.replicas[0]!.model!);

    const failedSoFar: unknown[] = [];
    for (const s of streams) void s.done.then((r) => r.error !== undefined && failedSoFar.push(r));
    await until(() => failedSoFar.length === 2, "replica 0's running requests to fail");
    // Right after: the replica is out of rotation (the reload starts after reloadDelayMs).
    const degraded = await health();
    expect(degraded.status).toBe('degraded');
    expect(['failed', 'reloading']).toContain(degraded.replicas[0]!.state);
    expect(degraded.replicas[0]!.lastError).toMatch(/the context failed: llama_decode returned -3/);
    expect(degraded.replicas[1]).toMatchObject({ replica: 1, device: 'CPU', state: 'ok' });

    const results = await Promise.all(streams.map((s) => s.done));
    const failed = results.filter((r) => r.error !== undefined);
    expect(failed).toHaveLength(2);
    for (const r of failed) {
      expect(r.replica).toBe('0');
      expect(r.error.code).toBe('replica_failed');
      expect(r.error.message).toMatch(/a retry will land on another replica/);
    }
    // The waiting one was sent to replica 1 before anything of it went out: it completed there.
    const completed = results.filter((r) => r.completed);
    expect(completed).toHaveLength(4);
    expect(completed.every((r) => r.replica === '1')).toBe(true);

    // Replica 1 keeps serving meanwhile.
    const during = await post('/v1/completions', { model: id, prompt: 'Still here?', max_tokens: 4, temperature: 0 });
    expect(during.status).toBe(200);

    await until(async () => (await health()).status === 'ok', 'the reload of replica 0');
    // Reloaded as a fork of replica 1: the failed replica's weights (it had loaded them) were fine and
    // stayed alive through replica 1's reference; the file was not loaded again.
    expect(fileLoads).toBe(1);
    expect(pool.replicas[0]!.sharesWeightsWith).toBe(1);
    const weights = sharedWeights(pool.replicas[1]!.model!);
    expect(sharedWeights(pool.replicas[0]!.model!)).toBe(weights);
    expect(weights.references).toBe(2);
    expect(weights.disposed).toBe(false);
    const back = await post('/v1/completions', { model: id, prompt: 'Back again after the reload', max_tokens: 4, temperature: 0 });
    expect(back.status).toBe(200);
    expect(back.headers.get('x-replica')).toBe('0');
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toContain('cuda_llama_replica_failovers_total{replica="0",device="CPU"} 1');
    expect(metrics).toContain('cuda_llama_replica_failovers_total{replica="1",device="CPU"} 0');
    expect(metrics).toContain('cuda_llama_replica_up{replica="0",device="CPU"} 1');
  });

  it('with every replica failed, requests get 503 no_replica and /health says failed', async () => {
    const downPool = new ReplicaPool(await syntheticModel('tiny'), { replicas: 2, load, reloadDelayMs: 3_600_000 });
    await downPool.ready;
    const down = createServer(downPool, { alias: id });
    const base = await down.listen({ port: 0 });
    try {
      const ask = () =>
        fetch(`${base}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: id, prompt: 'Anyone there?', max_tokens: 4, temperature: 0 }),
        });
      for (const replica of downPool.replicas) injectDecodeFault(replica.model!);
      // Each replica fails the request it admits (it had started there), then leaves the rotation.
      for (const expected of ['0', '1']) {
        const res = await ask();
        expect(res.status).toBe(503);
        expect(res.headers.get('x-replica')).toBe(expected);
        expect(((await res.json()) as { error: { code: string } }).error.code).toBe('replica_failed');
      }
      const res = await ask();
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).not.toBeNull();
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('no_replica');
      expect(body.error.message).toMatch(/no replica is serving/);
      const h = await fetch(`${base}/health`);
      expect(h.status).toBe(503);
      expect(((await h.json()) as { status: string }).status).toBe('failed');
    } finally {
      await down.close();
      await downPool.dispose();
    }
  });
});
