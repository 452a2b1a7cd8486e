// A single-model server whose context fails (a fatal llama_decode, injected): the request that hit
// it gets a 503 with ERR_CONTEXT_FAILED, every later request a 503 context_failed, and /health says
// failed (503), so that a supervisor restarts the server. The process stays up. A replica pool
// reloads a failed replica instead (test/server/replicas.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, createServer, type LlamaModel, type LlamaServer } from '../../lib/index.js';
import { injectDecodeFault } from '../../lib/internal/fault.js';
import { syntheticModel } from '../helpers/models.js';

const id = 'tiny';
let model: LlamaModel;
let server: LlamaServer;
let url: string;

beforeAll(async () => {
  model = await Llama.load(await syntheticModel('tiny'), { gpu: 'cpu', contextSize: 256, threads: 1 });
  server = createServer(model, { alias: id });
  url = await server.listen({ port: 0 });
});

afterAll(async () => {
  await server?.close();
  await model?.dispose();
});

const complete = () =>
  fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: id, prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }),
  });

describe('a single model whose context failed', () => {
  it('answers 503 from then on and /health says failed', async () => {
    const before = await complete();
    expect(before.status).toBe(200);
    expect(await (await fetch(`${url}/health`)).json()).toEqual({ status: 'ok' });

    injectDecodeFault(model);
    const hit = await complete();
    expect(hit.status).toBe(503);
    const hitBody = (await hit.json()) as { error: { code: string; message: string } };
    expect(hitBody.error.code).toBe('ERR_CONTEXT_FAILED');

    const later = await complete();
    expect(later.status).toBe(503);
    const laterBody = (await later.json()) as { error: { code: string; message: string } };
    expect(laterBody.error.code).toBe('context_failed');
    expect(laterBody.error.message).toMatch(/cannot answer until it is restarted/);

    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(503);
    const healthBody = (await health.json()) as { status: string; error: string };
    expect(healthBody.status).toBe('failed');
    expect(healthBody.error).toMatch(/llama_decode returned -3/);
  });
});
