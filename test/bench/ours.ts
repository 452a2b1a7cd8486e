/** cuda-llama's side: one repetition of the workload on one model, and the cold-versus-warm request. */
import { performance } from 'node:perf_hooks';
import { Llama, type ContextInfo, type LayerReport, type LlamaModel, type LoadOptions } from '../../lib/index.js';
import { GEN_TOKENS, SHORT_PROMPT_TOKENS, TTFT_SAMPLES, ppSamples } from './common.js';

export interface OursRun {
  /** Llama.load with warmup: false: file, weights, context; what node-llama-cpp's load also does. */
  loadMs: number;
  /** model.warmUp() right after that load: the cold-start cost load() takes by default. */
  warmupMs: number;
  /** The mean of TTFT_SAMPLES requests. */
  ttftMs: number;
  /** Prompt tokens per second, by prompt size: the mean of ppSamples(size) decodes. */
  pp: Record<number, number>;
  tgTokensPerSecond: number;
  tgGeneratedTokens: number;
  tgStopReason: string;
  contextInfo: ContextInfo;
  /** KV-cache bytes over all devices, from the layer report (when asked for). */
  kvCacheBytes?: number;
  layerReport?: LayerReport;
}

export interface OursWorkload {
  shortPrompt: number[];
  /** At least as long as the largest prompt size; each pp run takes its first n tokens. */
  longPrompt: number[];
  promptSizes: readonly number[];
  /** Also take the layer report (KV bytes per device): the sweeps want it, the comparison does not. */
  withReport?: boolean;
}

export async function runOurs(path: string, loadOptions: LoadOptions, work: OursWorkload): Promise<OursRun> {
  const started = performance.now();
  const model: LlamaModel = await Llama.load(path, { ...loadOptions, warmup: false });
  const loadMs = performance.now() - started;
  try {
    const warmStarted = performance.now();
    await model.warmUp();
    const warmupMs = performance.now() - warmStarted;
    // The same warm-up as llama-bench's (a full prompt batch, then one token): a one-token one
    // leaves most of the 512-token compute buffer untouched, and the first pp run would pay its
    // page faults. Excluded, like llama-bench's.
    await model.generate(work.longPrompt.slice(0, 512), { maxTokens: 2, temperature: 0 });
    let ttftSum = 0;
    for (let i = 0; i < TTFT_SAMPLES; i++) {
      ttftSum += (await model.generate(work.shortPrompt, { maxTokens: 1, temperature: 0 })).timings.timeToFirstTokenMs;
    }
    const pp: Record<number, number> = {};
    for (const size of work.promptSizes) {
      let sum = 0;
      for (let i = 0; i < ppSamples(size); i++) {
        const run = await model.generate(work.longPrompt.slice(0, size), { maxTokens: 1, temperature: 0 });
        if (run.promptTokens !== size) throw new Error(`expected ${size} prompt tokens, got ${run.promptTokens}`);
        sum += run.timings.promptTokensPerSecond;
      }
      pp[size] = sum / ppSamples(size);
    }
    const tg = await model.generate(work.shortPrompt, { maxTokens: GEN_TOKENS, temperature: 0, seed: 1 });
    const report = work.withReport ? await model.layerReport() : undefined;
    return {
      loadMs,
      warmupMs,
      ttftMs: ttftSum / TTFT_SAMPLES,
      pp,
      tgTokensPerSecond: tg.timings.tokensPerSecond,
      tgGeneratedTokens: tg.tokens.length,
      tgStopReason: tg.stopReason,
      contextInfo: model.contextInfo,
      ...(report ? { layerReport: report, kvCacheBytes: report.kvCache.bytes } : {}),
    };
  } finally {
    await model.dispose();
  }
}

/** The same short request (16-token prompt, 16 tokens out) timed right after load and again. */
export interface ColdWarmRun {
  /** Llama.load with warmup: false, then the request twice. */
  loadMs: number;
  coldRequestMs: number;
  coldTtftMs: number;
  warmRequestMs: number;
  warmTtftMs: number;
  /** Llama.load with the default warmup: true, then the request once. */
  loadWithWarmupMs: number;
  requestAfterWarmupMs: number;
  ttftAfterWarmupMs: number;
}

export const COLD_REQUEST_TOKENS = 16;

export async function runColdWarm(path: string, loadOptions: LoadOptions, shortPrompt: number[]): Promise<ColdWarmRun> {
  const request = (model: LlamaModel) => model.generate(shortPrompt.slice(0, SHORT_PROMPT_TOKENS), { maxTokens: COLD_REQUEST_TOKENS, temperature: 0 });
  let started = performance.now();
  const cold = await Llama.load(path, { ...loadOptions, warmup: false });
  const loadMs = performance.now() - started;
  let first, second;
  try {
    first = await request(cold);
    second = await request(cold);
  } finally {
    await cold.dispose();
  }
  started = performance.now();
  const warmed = await Llama.load(path, { ...loadOptions, warmup: true });
  const loadWithWarmupMs = performance.now() - started;
  let afterWarmup;
  try {
    afterWarmup = await request(warmed);
  } finally {
    await warmed.dispose();
  }
  return {
    loadMs,
    coldRequestMs: first.timings.totalMs,
    coldTtftMs: first.timings.timeToFirstTokenMs,
    warmRequestMs: second.timings.totalMs,
    warmTtftMs: second.timings.timeToFirstTokenMs,
    loadWithWarmupMs,
    requestAfterWarmupMs: afterWarmup.timings.totalMs,
    ttftAfterWarmupMs: afterWarmup.timings.timeToFirstTokenMs,
  };
}

