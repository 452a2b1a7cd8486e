// Server-sent events beyond the happy path: a request waiting for the only sequence gets `: ping`
// comments and then its tokens; an error after the first token is one `data: {"error": ...}` event
// and the end of the stream (no [DONE]); after close() nothing listens.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, createServer, type LlamaModel } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';

const id = 'tiny';
let model: LlamaModel;

beforeAll(async () => {
  model = await Llama.load(await syntheticModel('tiny'), { gpu: 'cpu', contextSize: 2048, sequences: 1, threads: 2 });
});

afterAll(async () => {
  await model?.dispose();
});

function startStream(url: string, body: Record<string, unknown>, signal?: AbortSignal) {
  return fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: id, temperature: 0, stream: true, ...body }),
    signal,
  });
}

async function readAll(reader: ReadableStreamDefaultReader<Uint8Array>, text = ''): Promise<string> {
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text;
    text += decoder.decode(value, { stream: true });
  }
}

describe('streams', () => {
  it('a queued stream gets pings while it waits, then its tokens and [DONE]', async () => {
    const server = createServer(model, { alias: id, pingInterval: 0.02 });
    const url = await server.listen({ port: 0 });
    const hold = new AbortController();
    try {
      const first = await startStream(url, { prompt: 'hold', max_tokens: 2000 }, hold.signal);
      const firstReader = first.body!.getReader();
      await firstReader.read(); // it holds the only sequence now
      const queued = await startStream(url, { prompt: 'Hi', max_tokens: 3 });
      // Headers come with the first ping: the request is waiting, not refused.
      expect(queued.status).toBe(200);
      expect(queued.headers.get('content-type')).toMatch(/^text\/event-stream/);
      expect(queued.headers.get('x-accel-buffering')).toBe('no');
      const reader = queued.body!.getReader();
      const { value } = await reader.read();
      expect(new TextDecoder().decode(value)).toMatch(/^: ping\n\n/);
      hold.abort();
      const text = await readAll(reader, new TextDecoder().decode(value));
      expect(text).toMatch(/"finish_reason":"(length|stop)"/);
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    } finally {
      hold.abort();
      await server.close();
    }
  });

  it('an error after the first token is an error event and the end; close() then stops accepting', async () => {
    const server = createServer(model, { alias: id });
    const url = await server.listen({ port: 0 });
    const res = await startStream(url, { prompt: 'hold', max_tokens: 2000 });
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toMatch(/^data: \{/);
    // No time to drain: the running stream is aborted.
    const closing = server.close({ drainTimeout: 0 });
    const text = await readAll(reader, first);
    await closing;
    const events = text.split('\n\n').filter((e) => e.startsWith('data: '));
    const last = events[events.length - 1]!;
    expect(last).not.toBe('data: [DONE]');
    const error = JSON.parse(last.slice('data: '.length)) as { error: { message: string; type: string; code: string | null } };
    expect(error.error.message).toMatch(/shut down/);
    expect(typeof error.error.type).toBe('string');
    expect(text).not.toContain('[DONE]');
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});
