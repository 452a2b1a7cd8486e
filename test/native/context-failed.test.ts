// A fatal decode (llama_decode below -1, injected through the internal test hook) marks the context
// failed: the running request and the waiting one reject with ERR_CONTEXT_FAILED (details.started
// true and false), and so does every later one; an ordinary decode failure (-1) fails its batch only.
import { afterEach, describe, expect, it } from 'vitest';
import { Llama, type LlamaModel } from '../../lib/index.js';
import { injectDecodeFault } from '../../lib/internal/fault.js';
import { syntheticModel } from '../helpers/models.js';

let model: LlamaModel | undefined;
afterEach(async () => {
  await model?.dispose();
  model = undefined;
});

const failure = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as { code: string; details?: { started?: boolean } },
  );

describe('a failed context', () => {
  it('ends the running request (started) and the waiting one (not started), and refuses later ones', async () => {
    model = await Llama.load(await syntheticModel('tiny'), { gpu: 'cpu', contextSize: 512, sequences: 1, threads: 1 });
    const m = model;
    let first!: () => void;
    const firstToken = new Promise<void>((resolve) => (first = resolve));
    const running = failure(m.generate('Once upon a time', { maxTokens: 400, ignoreEos: true, temperature: 0, onText: () => first() }));
    await firstToken;
    const waiting = failure(m.generate('Another story', { maxTokens: 4, temperature: 0 }));
    injectDecodeFault(m);
    const [a, b] = await Promise.all([running, waiting]);
    expect(a).toMatchObject({ code: 'ERR_CONTEXT_FAILED', details: { started: true } });
    expect(b).toMatchObject({ code: 'ERR_CONTEXT_FAILED', details: { started: false } });
    expect(await failure(m.generate('Later', { maxTokens: 2 }))).toMatchObject({ code: 'ERR_CONTEXT_FAILED', details: { started: false } });
    expect(String((a as unknown as Error).message)).toMatch(/the context failed: llama_decode returned -3/);
  });

  it('an ordinary decode failure (-1) fails that batch with ERR_DECODE; the context goes on', async () => {
    model = await Llama.load(await syntheticModel('tiny'), { gpu: 'cpu', contextSize: 512, sequences: 1, threads: 1 });
    injectDecodeFault(model, -1);
    expect(await failure(model.generate('Hello', { maxTokens: 2 }))).toMatchObject({ code: 'ERR_DECODE' });
    const ok = await model.generate('Hello', { maxTokens: 2, temperature: 0 });
    expect(ok.tokens.length).toBeGreaterThan(0);
  });
});
