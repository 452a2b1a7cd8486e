// The context's engine (native/engine.h): concurrent requests share decode steps and give each the
// tokens it gets alone, requests join and leave a running batch, a cancelled one touches no other,
// waiting ones queue first come first served, and a prompt reuses the prefix an idle sequence holds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, type GenerateResult, type LlamaModel } from '../../lib/index.js';
import { quantizedModel, syntheticModel } from '../helpers/models.js';

const greedy = { temperature: 0 } as const;

let tiny: string;
let model: LlamaModel;

beforeAll(async () => {
  tiny = await syntheticModel('tiny');
  // batchSize 32: prompts straddle batches, and a joining prompt shares steps with generating rows.
  model = await Llama.load(tiny, { gpu: 'cpu', contextSize: 256, sequences: 4, batchSize: 32, ubatchSize: 16, threads: 2 });
});

afterAll(async () => {
  await model?.dispose();
});

/** Resolves at the first text piece `count` of a request, through its onText. */
function pieceCounter(count: number): { onText: () => void; reached: Promise<void> } {
  let seen = 0;
  let resolve!: () => void;
  const reached = new Promise<void>((r) => (resolve = r));
  return {
    onText: () => {
      if (++seen === count) resolve();
    },
    reached,
  };
}

describe('prefix reuse', () => {
  for (const type of ['F16', 'Q8_0', 'Q4_0'] as const) {
    it(`${type}: a prompt that extends a cached one gives the tokens a fresh evaluation gives`, async () => {
      const path = type === 'F16' ? tiny : await quantizedModel('tiny', type);
      await using m = await Llama.load(path, { gpu: 'cpu', contextSize: 256, warmup: false });
      const first = m.tokenize('The history of the city begins with a small village by the river');
      const turn1 = await m.generate(first, { maxTokens: 12, ...greedy });
      expect(turn1.cachedTokens).toBe(0);
      // A chat client resends the conversation so far: prompt, reply, then the new turn.
      const second = [...first, ...turn1.tokens, ...m.tokenize(' and then the people built a bridge', { addSpecial: false })];
      const reused = await m.generate(second, { maxTokens: 16, ...greedy });
      // Everything decoded before is reused: the prompt and every reply token but the last, which was sampled, never decoded.
      expect(reused.cachedTokens).toBe(first.length + turn1.tokens.length - 1);
      expect(reused.promptTokens).toBe(second.length);
      const fresh = await m.generate(second, { maxTokens: 16, ...greedy, cachePrompt: false });
      expect(fresh.cachedTokens).toBe(0);
      expect(reused.tokens).toEqual(fresh.tokens);
      // A prompt that diverges inside the cached one keeps only the common prefix.
      const diverging = [...first.slice(0, 6), ...m.tokenize(' a different ending', { addSpecial: false })];
      const trimmed = await m.generate(diverging, { maxTokens: 10, ...greedy });
      expect(trimmed.cachedTokens).toBe(6);
      expect(trimmed.tokens).toEqual((await m.generate(diverging, { maxTokens: 10, ...greedy, cachePrompt: false })).tokens);
      // The same prompt again evaluates its last token only, for the logits.
      const again = await m.generate(diverging, { maxTokens: 10, ...greedy });
      expect(again.cachedTokens).toBe(diverging.length - 1);
      expect(again.tokens).toEqual(trimmed.tokens);
      expect(again.cacheMiss).toBeUndefined();
    });
  }

  it('a generation that fills its window ends with contextFull, never past it; a prompt that cannot fit is ERR_CONTEXT_FULL', async () => {
    const { contextSize } = model.contextInfo;
    const prompt = model.tokenize('Fill the window');
    const full = await model.generate(prompt, greedy);
    expect(full.stopReason).toBe('contextFull');
    expect(full.promptTokens + full.tokens.length).toBe(contextSize);
    // The caller's own limit is maxTokens even where it equals the room left.
    const exact = await model.generate(prompt, { ...greedy, maxTokens: contextSize - prompt.length });
    expect(exact.stopReason).toBe('maxTokens');
    expect(exact.tokens).toEqual(full.tokens);
    await expect(model.generate([...prompt, ...full.tokens])).rejects.toMatchObject({
      code: 'ERR_CONTEXT_FULL',
      details: { promptTokens: contextSize, contextSize },
    });
  });

  it('contextShift goes past a full window, says what it dropped, and leaves nothing shifted for reuse', async () => {
    const { contextSize } = model.contextInfo;
    const prompt = model.tokenize('Fill the window');
    await expect(model.generate(prompt, { ...greedy, contextShift: true })).rejects.toThrow(
      /options\.maxTokens must be set with contextShift/,
    );
    const shifted = await model.generate(prompt, { ...greedy, maxTokens: contextSize + 40, contextShift: { keep: 2 } });
    expect(shifted.stopReason).toBe('maxTokens');
    expect(shifted.tokens).toHaveLength(contextSize + 40);
    expect(shifted.droppedTokens).toBeGreaterThan(0);
    const full = await model.generate(prompt, { ...greedy, cachePrompt: false });
    // Until the window filled, a shifting generation is the plain one.
    expect(shifted.tokens.slice(0, full.tokens.length)).toEqual(full.tokens);
    expect(full.droppedTokens).toBe(0);
    const again = await model.generate([...prompt, ...full.tokens.slice(0, 20)], { ...greedy, maxTokens: 8 });
    expect(again.tokens).toEqual(
      (await model.generate([...prompt, ...full.tokens.slice(0, 20)], { ...greedy, maxTokens: 8, cachePrompt: false })).tokens,
    );
  });

  it('gives a request the idle sequence with the longest common prefix', async () => {
    const a = model.tokenize('Alpha alpha alpha alpha alpha alpha');
    const b = model.tokenize('Beta beta beta beta beta beta beta');
    await Promise.all([model.generate(a, { maxTokens: 2, ...greedy }), model.generate(b, { maxTokens: 2, ...greedy })]);
    const moreB = [...b, ...model.tokenize(' gamma', { addSpecial: false })];
    const moreA = [...a, ...model.tokenize(' delta', { addSpecial: false })];
    const [rb, ra] = await Promise.all([
      model.generate(moreB, { maxTokens: 2, ...greedy }),
      model.generate(moreA, { maxTokens: 2, ...greedy }),
    ]);
    expect(rb.cachedTokens).toBeGreaterThanOrEqual(b.length);
    expect(ra.cachedTokens).toBeGreaterThanOrEqual(a.length);
  });
});

describe('concurrent requests', () => {
  const prompts = [
    'Once upon a time',
    'The capital of France is a city with a long history of art, science and revolutions',
    'hello',
    'one two three four five six seven eight nine ten eleven twelve thirteen fourteen',
    'A sixth prompt that has to wait for a free sequence',
    'Seven',
  ];

  let alone: GenerateResult[];
  beforeAll(async () => {
    alone = [];
    for (const [i, prompt] of prompts.entries())
      alone.push(await model.generate(prompt, { maxTokens: 10 + 3 * i, ...greedy, cachePrompt: false }));
  });

  it('N at once (more than the sequences) each give exactly the tokens each gives alone', async () => {
    const results = await Promise.all(prompts.map((p, i) => model.generate(p, { maxTokens: 10 + 3 * i, ...greedy, cachePrompt: false })));
    expect(results.map((r) => r.tokens)).toEqual(alone.map((r) => r.tokens));
    expect(results.map((r) => r.text)).toEqual(alone.map((r) => r.text));
  });

  it('requests that join mid-generation and one cancelled mid-batch leave the others exact', async () => {
    const controller = new AbortController();
    const reason = new Error('cancelled mid-batch');
    const first = pieceCounter(4);
    const running = [
      model.generate(prompts[1]!, { maxTokens: 13, ...greedy, cachePrompt: false, onText: first.onText }),
      model.generate(prompts[2]!, {
        maxTokens: 200,
        ...greedy,
        cachePrompt: false,
        signal: controller.signal,
        onText: pieceCounter(3).onText,
      }),
    ];
    await first.reached;
    // Joins while both generate; the second is cancelled once the joiner is in.
    const joined = model.generate(prompts[3]!, { maxTokens: 19, ...greedy, cachePrompt: false, onText: () => controller.abort(reason) });
    const stream = model.stream(prompts[0]!, { maxTokens: 10, ...greedy, cachePrompt: false });
    const settled = Promise.allSettled([running[0]!, running[1]!, joined, stream.result]);
    const streamed: string[] = [];
    for await (const piece of stream) streamed.push(piece);
    const [r1, r2, r3, r0] = await settled;
    expect(r2).toEqual({ status: 'rejected', reason });
    expect(r1.status === 'fulfilled' && r1.value.tokens).toEqual(alone[1]!.tokens);
    expect(r3.status === 'fulfilled' && r3.value.tokens).toEqual(alone[3]!.tokens);
    expect(r0.status === 'fulfilled' && r0.value.tokens).toEqual(alone[0]!.tokens);
    expect(streamed.join('')).toBe(alone[0]!.text);
  });

  it('a request arriving while a long one generates starts generating before the long one ends', async () => {
    let longPieces = 0;
    let longDone = false;
    const started = pieceCounter(2);
    const long = model
      .generate('A long story', {
        maxTokens: 220,
        ...greedy,
        onText: () => {
          longPieces++;
          started.onText();
        },
      })
      .then((r) => {
        longDone = true;
        return r;
      });
    await started.reached;
    let longPiecesAtFirstToken = -1;
    const short = await model.generate('A short question', {
      maxTokens: 4,
      ...greedy,
      onText: () => {
        if (longPiecesAtFirstToken < 0) longPiecesAtFirstToken = longPieces;
      },
    });
    expect(short.tokens).toHaveLength(4);
    expect(longDone).toBe(false);
    expect(longPiecesAtFirstToken).toBeLessThan(220);
    expect((await long).tokens).toHaveLength(220);
  });

  it('an aborted signal takes a waiting request out of the queue, ahead of the running ones', async () => {
    await using one = await Llama.load(tiny, { gpu: 'cpu', contextSize: 256, warmup: false });
    const started = pieceCounter(1);
    let runningDone = false;
    const running = one.generate('Running', { maxTokens: 150, ...greedy, onText: started.onText }).then((r) => {
      runningDone = true;
      return r;
    });
    await started.reached;
    const controller = new AbortController();
    const waiting = one.generate('Waiting', { maxTokens: 5, signal: controller.signal });
    const after = one.generate('After', { maxTokens: 3, ...greedy });
    controller.abort(new Error('no longer needed'));
    await expect(waiting).rejects.toThrow('no longer needed');
    expect(runningDone).toBe(false);
    expect((await running).tokens).toHaveLength(150);
    expect((await after).tokens).toHaveLength(3);
  });

  it('1000 short requests through 8 sequences, some aborted at random: every promise settles, nothing lost', async () => {
    await using eight = await Llama.load(tiny, { gpu: 'cpu', contextSize: 64, sequences: 8, threads: 1, warmup: false });
    const texts = ['a', 'b c', 'd e f', 'the end', 'x y z w', 'one', 'two words', 'three more words'];
    const expected = new Map<string, number[]>();
    for (const text of texts) expected.set(text, (await eight.generate(text, { maxTokens: 3, ...greedy })).tokens);
    // A fixed seed for the random choices: a failure can be replayed.
    let state = 12345;
    const random = () => (state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const reason = new Error('aborted at random');
    const outcomes = await Promise.allSettled(
      Array.from({ length: 1000 }, (_, i) => {
        const text = texts[i % texts.length]!;
        const roll = random();
        const controller = new AbortController();
        if (roll < 0.05)
          controller.abort(reason); // before it is submitted
        else if (roll < 0.15)
          setTimeout(() => controller.abort(reason), Math.floor(random() * 20)); // waiting or running
        else if (roll < 0.2) queueMicrotask(() => controller.abort(reason)); // right after submission
        return eight.generate(text, { maxTokens: 3, ...greedy, signal: controller.signal }).then((r) => ({ text, r }));
      }),
    );
    let fulfilled = 0;
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') {
        expect(outcome.reason).toBe(reason);
      } else {
        fulfilled++;
        expect(outcome.value.r.tokens).toEqual(expected.get(outcome.value.text));
      }
    }
    expect(outcomes).toHaveLength(1000);
    expect(fulfilled).toBeGreaterThan(700);
    expect(fulfilled).toBeLessThan(1000);
  }, 120_000);
});
