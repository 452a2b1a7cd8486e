// Presence and frequency penalties (OpenAI's presence_penalty / frequency_penalty) reach llama.cpp's
// penalties sampler: they change what greedy decoding picks, and the same options give the same tokens.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, type LlamaModel } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';

let model: LlamaModel;

beforeAll(async () => {
  model = await Llama.load(await syntheticModel('tiny'), { gpu: 'cpu', contextSize: 256, threads: 2 });
});

afterAll(async () => {
  await model?.dispose();
});

/** How many generated tokens already occurred earlier in the generation. */
function repeats(tokens: readonly number[]): number {
  return tokens.filter((t, i) => tokens.indexOf(t) < i).length;
}

describe('presence and frequency penalties', () => {
  const base = { temperature: 0, maxTokens: 48 } as const;

  it('a positive penalty makes greedy output repeat itself less; the same options give the same tokens', async () => {
    const plain = await model.generate('The story begins', base);
    for (const penalty of [{ presencePenalty: 2 }, { frequencyPenalty: 2 }]) {
      const first = await model.generate('The story begins', { ...base, ...penalty });
      const second = await model.generate('The story begins', { ...base, ...penalty });
      expect(second.tokens).toEqual(first.tokens);
      expect(first.tokens).not.toEqual(plain.tokens);
      expect(repeats(first.tokens)).toBeLessThan(repeats(plain.tokens));
    }
  });

  it('a negative presence penalty makes it repeat itself more', async () => {
    const plain = await model.generate('The story begins', base);
    const negative = await model.generate('The story begins', { ...base, presencePenalty: -2 });
    expect(repeats(negative.tokens)).toBeGreaterThan(repeats(plain.tokens));
  });

  it('refuses values outside -2..2, naming the option', async () => {
    await expect(model.generate('x', { presencePenalty: 2.5 })).rejects.toThrow(/presencePenalty/);
    await expect(model.generate('x', { frequencyPenalty: Number.NaN })).rejects.toThrow(/frequencyPenalty/);
  });
});
