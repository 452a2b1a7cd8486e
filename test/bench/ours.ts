/**
 * cuda-llama's side: one repetition of the workload on one model, and the cold-versus-warm
 * request, each measured by cuda-llama-child.mjs in a process of its own.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { ContextInfo, LayerReport, LoadOptions } from '../../lib/index.js';
import { GEN_TOKENS, SHORT_PROMPT_TOKENS, TTFT_SAMPLES, fail, ppSamples, repoRoot, runJsonChild } from './common.js';

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

/**
 * One repetition in a fresh process (cuda-llama-child.mjs, which says why): load with warmup:
 * false, model.warmUp() timed, the excluded warm-up, TTFT, each prompt size, tg.
 */
export function runOurs(path: string, loadOptions: LoadOptions, work: OursWorkload): Promise<OursRun> {
  return runCudaLlamaChild<OursRun>({
    kind: 'workload',
    modelPath: path,
    loadOptions,
    shortPrompt: work.shortPrompt,
    longPrompt: work.longPrompt,
    promptSizes: work.promptSizes,
    ppSamples: Object.fromEntries(work.promptSizes.map((size) => [size, ppSamples(size)])),
    ttftSamples: TTFT_SAMPLES,
    genTokens: GEN_TOKENS,
    withReport: work.withReport ?? false,
  });
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

export function runColdWarm(path: string, loadOptions: LoadOptions, shortPrompt: number[]): Promise<ColdWarmRun> {
  return runCudaLlamaChild<ColdWarmRun>({
    kind: 'coldWarm',
    modelPath: path,
    loadOptions,
    shortPrompt: shortPrompt.slice(0, SHORT_PROMPT_TOKENS),
    requestTokens: COLD_REQUEST_TOKENS,
  });
}

const childPath = join(repoRoot, 'test', 'bench', 'cuda-llama-child.mjs');

/** A request to cuda-llama-child.mjs; its header lists the kinds and what each needs. */
export interface CudaLlamaChildRequest {
  kind: 'workload' | 'coldWarm' | 'parallel' | 'pp' | 'tg' | 'prompts' | 'firstUse';
  modelPath: string;
  /** Without warmup: each kind sets it. */
  loadOptions: Omit<LoadOptions, 'warmup'>;
  [field: string]: unknown;
}

/** cuda-llama's side of a measurement, in a fresh process on dist/. Call compileDist() first. */
export function runCudaLlamaChild<T>(request: CudaLlamaChildRequest, env?: NodeJS.ProcessEnv): Promise<T> {
  return runJsonChild<T>(childPath, request, env);
}

/** dist/ from lib/ as it is now: the child measures the compiled package, which must not be stale. */
export function compileDist(): void {
  const result = spawnSync(
    process.execPath,
    [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(repoRoot, 'tsconfig.build.json')],
    { cwd: repoRoot, stdio: ['ignore', 2, 2] },
  );
  if (result.status !== 0) fail('tsc -p tsconfig.build.json failed: dist/ could not be brought up to date');
}
