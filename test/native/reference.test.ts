// Correctness against the reference: greedy generation through our API produces exactly what
// llama.cpp's own example program (llama-simple, built from the same pinned source by
// `npm test`'s pretest) prints for the same model and prompt.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Llama } from '../../lib/index.js';
import { quantizedModel, repoRoot, syntheticModel } from '../helpers/models.js';

const llamaSimple = join(repoRoot, 'build', 'Release', 'llama-simple');
const prompt = 'The capital of France is';
const nPredict = 32;

async function compare(path: string): Promise<void> {
  if (!existsSync(llamaSimple)) throw new Error(`${llamaSimple} is missing: run \`node scripts/build-tools.mjs llama-simple\``);
  const stdout = execFileSync(llamaSimple, ['-m', path, '-n', String(nPredict), prompt], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const model = await Llama.load(path, { gpu: 'cpu' });
  try {
    const promptTokens = model.tokenize(prompt, { parseSpecial: true });
    // llama-simple sizes its context to the prompt plus the output and decodes the prompt in one batch.
    const result = await model.generate(prompt, { maxTokens: nPredict, temperature: 0 });
    expect(result.stopReason).toBe('maxTokens');
    expect(result.tokens).toHaveLength(nPredict);
    // llama-simple prints every prompt piece, then every generated piece (special tokens rendered), then "\n".
    const expected = model.detokenize(promptTokens, { special: true }) + model.detokenize(result.tokens, { special: true }) + '\n';
    expect(stdout).toBe(expected);
  } finally {
    await model.dispose();
  }
}

describe('reference match with llama.cpp', () => {
  it('F16 model: same greedy tokens as llama-simple', async () => {
    await compare(await syntheticModel('tiny'));
  });

  it('Q8_0 model (quantized by llama.cpp through our API): same greedy tokens', async () => {
    await compare(await quantizedModel('tiny', 'Q8_0'));
  });

  it('Q4_0 model: same greedy tokens', async () => {
    await compare(await quantizedModel('tiny', 'Q4_0'));
  });
});
