/** cuda-llama's side of one repetition: load, warm up, then TTFT, pp512 and tg128 on one model. */
import { performance } from 'node:perf_hooks';
import { Llama, type ContextInfo, type LlamaModel, type LoadOptions } from '../../lib/index.js';
import { GEN_TOKENS, PROMPT_TOKENS } from './common.js';

/** Deterministic English-like text, long enough to tokenize to well over 512 tokens. */
export function longText(paragraphs: number): string {
  const parts: string[] = [];
  for (let i = 0; i < paragraphs; i++) {
    parts.push(`Chapter ${i + 1}. The river ran past the old mill, where the miller counted sacks of grain ` +
      `by lamplight and wrote each number in a ledger bound with cracked leather. Travellers who stopped ` +
      `for water heard him recite the totals aloud, season after season, as if the figures were a prayer.`);
  }
  return parts.join('\n\n');
}

export interface OursRun {
  loadMs: number;
  ttftMs: number;
  ppTokensPerSecond: number;
  tgTokensPerSecond: number;
  tgGeneratedTokens: number;
  tgStopReason: string;
  contextInfo: ContextInfo;
}

export async function runOurs(path: string, loadOptions: LoadOptions, shortPrompt: number[], longPrompt: number[]): Promise<OursRun> {
  const started = performance.now();
  const model: LlamaModel = await Llama.load(path, loadOptions);
  const loadMs = performance.now() - started;
  try {
    // The same warm-up as llama-bench's (a full prompt batch, then one token): a short one would
    // leave most of the 512-token compute buffer untouched, and the first pp512 would pay its
    // page faults.
    await model.generate(longPrompt, { maxTokens: 2, temperature: 0 });
    const ttft = await model.generate(shortPrompt, { maxTokens: 1, temperature: 0 });
    const pp = await model.generate(longPrompt, { maxTokens: 1, temperature: 0 });
    if (pp.promptTokens !== PROMPT_TOKENS) throw new Error(`expected ${PROMPT_TOKENS} prompt tokens, got ${pp.promptTokens}`);
    const tg = await model.generate(shortPrompt, { maxTokens: GEN_TOKENS, temperature: 0, seed: 1 });
    return {
      loadMs,
      ttftMs: ttft.timings.timeToFirstTokenMs,
      ppTokensPerSecond: pp.timings.promptTokensPerSecond,
      tgTokensPerSecond: tg.timings.tokensPerSecond,
      tgGeneratedTokens: tg.tokens.length,
      tgStopReason: tg.stopReason,
      contextInfo: model.contextInfo,
    };
  } finally {
    await model.dispose();
  }
}
