/**
 * Tuning: measure a few load configurations for one stated workload (prompt length, output
 * length, requests that arrive together) on this machine and recommend the fastest, with the reason in words and the options to
 * paste. Measured, not estimated: what makes a GPU slower than the CPU (launch cost per token on a
 * small model, a partial offload, an oversized context) shows up only when it is run.
 */
import { performance } from 'node:perf_hooks';
import { CudaLlamaError, ErrorCode } from '../errors.js';
import { formatBytes } from '../format.js';
import { onGpu } from '../gpu/devices.js';
import type { LayerReport } from '../layer-report.js';
import type { LlamaModel } from '../model.js';
import type { GpuPolicy, LoadOptions } from '../options.js';
import { expectObject, optionalEnum, optionalFunction, optionalInteger, rejectUnknownKeys } from '../validate.js';

export interface TuneOptions {
  /** Prompt tokens per request. Default 512. */
  promptTokens?: number;
  /** Generated tokens per request. Default 128. */
  outputTokens?: number;
  /**
   * Requests that arrive together. Default 1. Above 1 every candidate runs them as one
   * generateBatch() (load option `sequences`), and the best placement also one after another.
   */
  sequences?: number;
  /** Which devices may be tried: 'auto' (default) tries CUDA when usable and the CPU; 'cpu' or 'cuda' only those. */
  gpu?: GpuPolicy;
  /** CPU threads for every configuration. Default: the library's default. */
  threads?: number;
  /** Requests measured per configuration, after one warm-up request. Default 2. */
  repetitions?: number;
  /** Progress lines ("measuring full offload ..."). */
  onProgress?: (message: string) => void;
}

/** Load options as they can be pasted: plain data, no callbacks. */
export type TunedLoadOptions = Pick<LoadOptions, 'gpu' | 'gpuLayers' | 'contextSize' | 'sequences' | 'flashAttention' | 'threads'>;

export interface TuneCandidate {
  name: string;
  options: TunedLoadOptions;
  /** Why it could not be measured (does not fit, no GPU); the numbers below are then absent. */
  error?: string;
  /**
   * Median time for the workload: time to first token + the rest of the output at the measured
   * pace; with several sequences, until every request is answered (together, or one after another).
   */
  requestMs?: number;
  timeToFirstTokenMs?: number;
  promptTokensPerSecond?: number;
  /** Generation speed; with several sequences run together, all of them (aggregate). */
  tokensPerSecond?: number;
  /** Runs the workload's requests one after another, though it has several (the comparison for batching). */
  oneAtATime?: boolean;
  /**
   * A bigger context than the workload needs, measured to show what it costs. Never recommended:
   * a larger KV window cannot make the same work faster, so any lead it shows is noise.
   */
  contextCostOnly?: boolean;
  loadMs?: number;
  kvCacheBytes?: number;
  /** Bytes on GPUs (weights + KV + compute), from the layer report. */
  gpuBytes?: number;
  layerReport?: string;
}

export interface TuneResult {
  workload: { promptTokens: number; outputTokens: number; sequences: number };
  candidates: TuneCandidate[];
  best: TuneCandidate;
  /** The recommendation and why, in sentences. */
  reasons: string[];
  /** The winner's options, ready to pass to Llama.load. */
  recommended: TunedLoadOptions;
}

/** Deterministic English-like text, for prompts of any length. */
export function sampleText(paragraphs: number): string {
  const parts: string[] = [];
  for (let i = 0; i < paragraphs; i++) {
    parts.push(
      `Chapter ${i + 1}. The river ran past the old mill, where the miller counted sacks of grain ` +
        `by lamplight and wrote each number in a ledger bound with cracked leather. Travellers who stopped ` +
        `for water heard him recite the totals aloud, season after season, as if the figures were a prayer.`,
    );
  }
  return parts.join('\n\n');
}

/** Exactly `count` prompt tokens of sample text, tokenized by this model. */
export function sampleTokens(model: LlamaModel, count: number): number[] {
  let paragraphs = Math.max(1, Math.ceil(count / 50));
  let ids = model.tokenize(sampleText(paragraphs));
  while (ids.length < count) ids = model.tokenize(sampleText((paragraphs *= 2)));
  return ids.slice(0, count);
}

/** The context a workload needs: prompt + output, rounded up to 256 (llama.cpp pads the KV cache to 256 anyway). */
export function neededContextSize(promptTokens: number, outputTokens: number): number {
  return Math.ceil((promptTokens + outputTokens + 1) / 256) * 256;
}

export interface TuneDeps {
  load(path: string, options: LoadOptions): Promise<LlamaModel>;
  /** Whether CUDA is usable, and the CUDA GPU names (the registry's, empty without CUDA) that count as GPU memory. */
  cudaUsable(): { usable: boolean; reason?: string; devices: string[] };
  defaultContextSize(path: string): Promise<number>;
}

function gpuBytesOf(report: LayerReport, gpus: readonly string[]): number {
  return report.devices.filter((d) => onGpu(gpus, d.device)).reduce((sum, d) => sum + d.weightsBytes + d.kvCacheBytes + d.computeBytes, 0);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface Workload {
  promptTokens: number;
  outputTokens: number;
  sequences: number;
  repetitions: number;
}

/** One measured request (or batch of them) and what it says about the workload's time. */
interface Sample {
  ttftMs: number;
  promptTokensPerSecond: number;
  tokensPerSecond?: number;
}

async function sampleOnce(model: LlamaModel, prompt: number[], n: number, outputTokens: number): Promise<Sample> {
  // Every sample evaluates the whole prompt, as the workload's requests would on a cold cache.
  const options = { maxTokens: outputTokens, temperature: 0, cachePrompt: false };
  if (n === 1) {
    const r = await model.generate(prompt, options);
    // A request that ended early (end of generation) still measured the pace of the tokens it made.
    return {
      ttftMs: r.timings.timeToFirstTokenMs,
      promptTokensPerSecond: r.timings.promptTokensPerSecond,
      ...(r.tokens.length > 1 ? { tokensPerSecond: r.timings.tokensPerSecond } : {}),
    };
  }
  const batch = await model.generateBatch(
    Array.from({ length: n }, () => prompt),
    options,
  );
  return {
    // Every prompt is processed before generation goes on: the last first token is the batch's.
    ttftMs: Math.max(...batch.results.map((r) => r.timings.timeToFirstTokenMs)),
    promptTokensPerSecond: batch.timings.promptTokensPerSecond,
    ...(batch.timings.generatedTokens > n ? { tokensPerSecond: batch.timings.tokensPerSecond } : {}),
  };
}

async function measure(deps: TuneDeps, path: string, candidate: TuneCandidate, work: Workload, gpus: readonly string[]): Promise<void> {
  const started = performance.now();
  let model: LlamaModel;
  try {
    model = await deps.load(path, candidate.options);
  } catch (error) {
    if (!(error instanceof CudaLlamaError)) throw error;
    candidate.error = `${error.code}: ${error.message.split('\nRemedy:')[0]}`;
    return;
  }
  candidate.loadMs = performance.now() - started;
  try {
    const prompt = sampleTokens(model, work.promptTokens);
    const together = candidate.options.sequences ?? 1;
    await sampleOnce(model, prompt, together, work.outputTokens); // the first request after a load is not the steady state
    const samples: Sample[] = [];
    for (let i = 0; i < work.repetitions; i++) samples.push(await sampleOnce(model, prompt, together, work.outputTokens));
    candidate.timeToFirstTokenMs = median(samples.map((s) => s.ttftMs));
    candidate.promptTokensPerSecond = median(samples.map((s) => s.promptTokensPerSecond));
    const tg = samples.flatMap((s) => (s.tokensPerSecond === undefined ? [] : [s.tokensPerSecond]));
    candidate.tokensPerSecond = tg.length ? median(tg) : undefined;
    // Random-weight or chatty models stop at different lengths; the time is computed for exactly
    // the stated output length, so configurations compare on the same work.
    const oneRun =
      candidate.timeToFirstTokenMs +
      (candidate.tokensPerSecond ? (((work.outputTokens - 1) * together) / candidate.tokensPerSecond) * 1000 : 0);
    candidate.requestMs = candidate.oneAtATime ? oneRun * work.sequences : oneRun;
    const report = await model.layerReport();
    candidate.kvCacheBytes = report.kvCache.bytes;
    candidate.gpuBytes = gpuBytesOf(report, gpus);
    candidate.layerReport = report.summary;
  } finally {
    await model.dispose();
  }
}

const ms = (value: number) => `${value.toFixed(value < 100 ? 1 : 0)} ms`;
/** What requestMs covers: one request, or all of the workload's requests. */
const perWorkload = (sequences: number) => (sequences > 1 ? `for all ${sequences}` : 'per request');

function optionsText(options: TunedLoadOptions): string {
  const parts = Object.entries(options).map(([k, v]) => `${k}: ${typeof v === 'string' ? `'${v}'` : v}`);
  return `{ ${parts.join(', ')} }`;
}

export function validateTuneOptions(
  input: unknown,
): Required<Omit<TuneOptions, 'onProgress' | 'threads'>> & Pick<TuneOptions, 'onProgress' | 'threads'> {
  const o = expectObject('options', input);
  rejectUnknownKeys('options', o, ['promptTokens', 'outputTokens', 'sequences', 'gpu', 'threads', 'repetitions', 'onProgress'], {
    prompt: 'use promptTokens',
    output: 'use outputTokens',
    maxTokens: 'use outputTokens',
    reps: 'use repetitions',
    parallel: 'use sequences',
  });
  return {
    promptTokens: optionalInteger('options.promptTokens', o.promptTokens, 1, 1_000_000) ?? 512,
    outputTokens: optionalInteger('options.outputTokens', o.outputTokens, 1, 1_000_000) ?? 128,
    sequences: optionalInteger('options.sequences', o.sequences, 1, 256) ?? 1,
    gpu: optionalEnum('options.gpu', o.gpu, ['auto', 'cuda', 'cpu'] as const) ?? 'auto',
    repetitions: optionalInteger('options.repetitions', o.repetitions, 1, 100) ?? 2,
    threads: optionalInteger('options.threads', o.threads, 1, 1024),
    onProgress: optionalFunction('options.onProgress', o.onProgress) as TuneOptions['onProgress'],
  };
}

/**
 * The candidates for this machine and workload. With CUDA: full offload, llama.cpp's fit
 * ('auto'), flash attention off and on, and the CPU; on the CPU: flash attention off and on. Each
 * at the context the workload needs, plus the default context once to show what it costs. With
 * several sequences, each runs them together, and the first placement also one after another.
 */
export function tuneCandidates(opts: {
  cuda: boolean;
  allowCpu: boolean;
  neededContext: number;
  defaultContext: number;
  threads?: number;
  sequences?: number;
}): TuneCandidate[] {
  const ctx = opts.neededContext;
  const sequences = opts.sequences ?? 1;
  const t = { ...(opts.threads === undefined ? {} : { threads: opts.threads }), ...(sequences > 1 ? { sequences } : {}) };
  const list: TuneCandidate[] = [];
  // On each device: llama.cpp's default flash-attention choice ('auto') at the needed context,
  // off and on explicitly, and the default context once to show what a bigger window costs.
  const variants = (device: string, base: TunedLoadOptions): TuneCandidate[] => [
    { name: device, options: { ...base, contextSize: ctx, ...t } },
    { name: `${device}, flash attention on`, options: { ...base, contextSize: ctx, flashAttention: 'on', ...t } },
    { name: `${device}, flash attention off`, options: { ...base, contextSize: ctx, flashAttention: 'off', ...t } },
    // Only a bigger default: a smaller one could not hold the workload.
    ...(opts.defaultContext > ctx
      ? [
          {
            name: `${device}, contextSize ${opts.defaultContext}`,
            options: { ...base, contextSize: opts.defaultContext, ...t },
            contextCostOnly: true,
          },
        ]
      : []),
  ];
  if (opts.cuda) {
    list.push(...variants('full offload', { gpu: 'cuda', gpuLayers: 'max' }));
    list.push({ name: "llama.cpp's fit (gpuLayers 'auto')", options: { gpu: 'cuda', gpuLayers: 'auto', contextSize: ctx, ...t } });
  }
  if (opts.allowCpu) {
    // Beside a GPU the CPU is the baseline, measured once; alone it gets the variants.
    list.push(
      ...(opts.cuda ? [{ name: 'CPU', options: { gpu: 'cpu' as const, contextSize: ctx, ...t } }] : variants('CPU', { gpu: 'cpu' })),
    );
  }
  if (sequences > 1 && list.length > 0) {
    const { sequences: _together, ...alone } = list[0]!.options;
    list.push({ name: `${list[0]!.name}, one request at a time`, options: alone, oneAtATime: true });
  }
  return list;
}

type Work = { promptTokens: number; outputTokens: number; sequences?: number };

const fastestFirst = (a: TuneCandidate, b: TuneCandidate) => a.requestMs! - b.requestMs!;
/** Candidates are placed by their options: each names gpu 'cuda' or 'cpu'. */
const isGpuCandidate = (c: TuneCandidate) => c.options.gpu === 'cuda';

/** The recommendation in words, from the measured candidates. */
export function tuneReasons(candidates: TuneCandidate[], best: TuneCandidate, work: Work, cudaNote: string | undefined): string[] {
  const ok = candidates.filter((c) => c.requestMs !== undefined);
  const n = work.sequences ?? 1;
  const request = `${n > 1 ? `${n} requests at once, each ` : ''}a ${work.promptTokens}-token prompt with ${work.outputTokens} tokens out`;
  const reasons = [
    `Fastest for ${request}: ${best.name}, ${ms(best.requestMs!)} ${perWorkload(n)} (time to first token ${ms(best.timeToFirstTokenMs!)}, ` +
      `${best.tokensPerSecond?.toFixed(1) ?? '?'} tok/s${n > 1 && !best.oneAtATime ? ' in total' : ''}).`,
    batchingReason(ok, n),
    deviceReason(ok, best, work) ?? cudaNote,
    flashAttentionReason(ok, best),
    contextCostReason(ok, best),
  ].filter((r): r is string => r !== undefined);
  for (const c of candidates.filter((x) => x.error)) reasons.push(`Not measured: ${c.name} (${c.error}).`);
  reasons.push(`Paste: Llama.load(path, ${optionsText(best.options)})`);
  return reasons;
}

/** The requests run together against the same placement one after another. */
function batchingReason(ok: TuneCandidate[], n: number): string | undefined {
  const alone = ok.find((c) => c.oneAtATime);
  const together =
    alone &&
    ok.find(
      (c) =>
        !c.oneAtATime &&
        c.options.gpu === alone.options.gpu &&
        c.options.gpuLayers === alone.options.gpuLayers &&
        c.options.contextSize === alone.options.contextSize &&
        c.options.flashAttention === alone.options.flashAttention,
    );
  if (!alone || !together) return undefined;
  return together.requestMs! <= alone.requestMs!
    ? `Running the ${n} requests together (sequences: ${n}) is ${(alone.requestMs! / together.requestMs!).toFixed(1)}x faster than one after another (${ms(alone.requestMs!)}).`
    : `One request after another is ${(together.requestMs! / alone.requestMs!).toFixed(1)}x faster than running the ${n} together (${ms(together.requestMs!)}) on this machine.`;
}

/** The GPU against the CPU, when both were measured. */
function deviceReason(ok: TuneCandidate[], best: TuneCandidate, work: Work): string | undefined {
  const per = perWorkload(work.sequences ?? 1);
  const bestCpu = ok.filter((c) => !isGpuCandidate(c)).sort(fastestFirst)[0];
  const bestGpu = ok.filter(isGpuCandidate).sort(fastestFirst)[0];
  if (!bestCpu || !bestGpu) return undefined;
  if (isGpuCandidate(best))
    return `${best.name} is ${(bestCpu.requestMs! / best.requestMs!).toFixed(1)}x faster than the CPU (${ms(bestCpu.requestMs!)} ${per}).`;
  const perTokenNote =
    work.outputTokens <= 32 || (bestGpu.tokensPerSecond ?? 0) < (bestCpu.tokensPerSecond ?? 0)
      ? ': for this model and output length the per-token cost of driving the GPU (kernel launches, synchronization) outweighs its compute'
      : '';
  return `The CPU wins: ${ms(best.requestMs!)} ${per} against ${ms(bestGpu.requestMs!)} with ${bestGpu.name}${perTokenNote}.`;
}

/** One off/on pair on the best candidate's device, at the context the workload needs (even when another context won). */
function flashAttentionReason(ok: TuneCandidate[], best: TuneCandidate): string | undefined {
  const fa = (value: 'on' | 'off') =>
    ok.find((c) => !c.oneAtATime && c.options.gpu === best.options.gpu && c.options.flashAttention === value);
  const on = fa('on');
  const off = fa('off');
  if (!on || !off) return undefined;
  const faster = on.requestMs! <= off.requestMs! ? on : off;
  const slower = faster === on ? off : on;
  return `Flash attention ${faster === on ? 'on' : 'off'} is ${((slower.requestMs! / faster.requestMs! - 1) * 100).toFixed(0)}% faster than ${faster === on ? 'off' : 'on'} here.`;
}

/** The default-context candidate against the same placement at the context the workload needs. */
function contextCostReason(ok: TuneCandidate[], best: TuneCandidate): string | undefined {
  const sameDevice = (c: TuneCandidate) => !c.oneAtATime && c.options.gpu === best.options.gpu && c.options.flashAttention === undefined;
  const pair = ok
    .filter(sameDevice)
    .filter((c, _, all) =>
      all.some((o) => o !== c && o.options.gpuLayers === c.options.gpuLayers && o.options.contextSize !== c.options.contextSize),
    );
  const [small, big] = [...pair]
    .sort((a, b) => a.options.contextSize! - b.options.contextSize!)
    .filter((c, i, all) => i === 0 || i === all.length - 1);
  if (!big || !small || big.kvCacheBytes === undefined || small.kvCacheBytes === undefined) return undefined;
  const slower = (big.requestMs! / small.requestMs! - 1) * 100;
  return (
    `A contextSize of ${big.options.contextSize} costs ${formatBytes(big.kvCacheBytes)} of KV cache against ${formatBytes(small.kvCacheBytes)} at ${small.options.contextSize}, ` +
    `which this workload needs, and ${slower >= 0 ? `runs ${slower.toFixed(0)}% slower` : `costs no speed (it measured ${(-slower).toFixed(0)}% faster: noise)`}.`
  );
}

export async function tune(deps: TuneDeps, path: string, options: TuneOptions): Promise<TuneResult> {
  const o = validateTuneOptions(options);
  const progress = o.onProgress ?? (() => {});
  const cuda = deps.cudaUsable();
  if (o.gpu === 'cuda' && !cuda.usable) {
    // The same typed refusal a gpu: 'cuda' load gives, with its remedy.
    const model = await deps.load(path, { gpu: 'cuda' });
    await model.dispose();
  }
  const defaultContext = await deps.defaultContextSize(path);
  const neededContext = neededContextSize(o.promptTokens, o.outputTokens);
  const candidates = tuneCandidates({
    cuda: o.gpu !== 'cpu' && cuda.usable,
    allowCpu: o.gpu !== 'cuda',
    neededContext,
    defaultContext,
    ...(o.threads === undefined ? {} : { threads: o.threads }),
    sequences: o.sequences,
  });
  const work = { promptTokens: o.promptTokens, outputTokens: o.outputTokens, sequences: o.sequences, repetitions: o.repetitions };
  for (const c of candidates) {
    progress(`measuring ${c.name} ${optionsText(c.options)}`);
    await measure(deps, path, c, work, cuda.devices);
    progress(
      c.requestMs === undefined
        ? `  not measured: ${c.error}`
        : `  ${ms(c.requestMs)} ${perWorkload(o.sequences)} (TTFT ${ms(c.timeToFirstTokenMs!)}, ${c.tokensPerSecond?.toFixed(1) ?? '?'} tok/s); ${c.layerReport}`,
    );
  }
  const measured = candidates.filter((c) => c.requestMs !== undefined).sort((a, b) => a.requestMs! - b.requestMs!);
  const best = measured.find((c) => !c.contextCostOnly) ?? measured[0];
  if (!best) {
    throw new CudaLlamaError(
      ErrorCode.TUNE,
      `no configuration could be measured: ${candidates.map((c) => `${c.name}: ${c.error}`).join('; ')}`,
      {
        remedy:
          "each configuration's error above says why it could not load; a smaller workload (promptTokens, outputTokens, sequences) needs a smaller context, and `npx cuda-llama doctor` checks the setup",
        details: { candidates },
      },
    );
  }
  const cudaNote =
    o.gpu === 'cpu'
      ? undefined
      : cuda.usable
        ? undefined
        : `CPU only: CUDA is not usable here (${cuda.reason ?? 'unknown reason'}); run \`npx cuda-llama doctor\` for the remedy.`;
  return {
    workload: { promptTokens: o.promptTokens, outputTokens: o.outputTokens, sequences: o.sequences },
    candidates,
    best,
    reasons: tuneReasons(candidates, best, o, cudaNote),
    recommended: best.options,
  };
}
