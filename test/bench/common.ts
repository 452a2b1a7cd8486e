/** What every part of the benchmark shares: paths, the workload's sizes, the configurations, logging. */
import { execFileSync, spawn } from 'node:child_process';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { BuildReport, LoadOptions } from '../../lib/index.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Prompt-processing sizes measured by every program (pp128, pp512, pp2048). */
export const PROMPT_SIZES = [128, 512, 2048] as const;
export type PromptSize = (typeof PROMPT_SIZES)[number];
/**
 * How many times each program decodes a prompt size per repetition; the repetition's figure is
 * the mean, as llama-bench's avg_ts over its -r runs is. pp128 takes about 2 s on the 2-core CPU,
 * where a single sample swings by 10% with the scheduler; pp2048 (40 s) is long enough alone.
 * Drift between repetitions is another matter: paired.ts measures ratios round by round.
 */
export const PP_SAMPLES: Record<PromptSize, number> = { 128: 3, 512: 3, 2048: 1 };
/** Sizes not in PP_SAMPLES (a sweep's, a caller's own) are decoded once. */
export function ppSamples(size: number): number {
  return (PP_SAMPLES as Record<number, number>)[size] ?? 1;
}
/** Time-to-first-token requests per repetition, by the same reasoning (one is about 0.3 s on the CPU); their mean is the figure. */
export const TTFT_SAMPLES = 5;
/** The size the sweeps and the per-configuration summaries use. */
export const PROMPT_TOKENS = 512;
export const GEN_TOKENS = 128;
export const SHORT_PROMPT_TOKENS = 16;
/** Room for the longest prompt plus the one sampled token that ends a prompt measurement. */
export const CONTEXT_SIZE = 4096;
/** The training context the benchmark model declares, so the context-size sweep can go past 4096. */
export const MODEL_CONTEXT_LENGTH = 32768;
export const TARGET_RATIO = 0.98;

export type ConfigName = 'cpu' | 'full' | 'partial';

/** One placement, as both programs spell it. */
export interface BenchConfig {
  name: ConfigName;
  /** What cuda-llama gets on top of threads and contextSize. */
  load: Pick<LoadOptions, 'gpu' | 'gpuLayers'>;
  /** llama-bench -ngl */
  ngl: number;
  /** llama-bench -dev: 'none' or device names joined by '/'. */
  dev: string;
}

export const cpuConfig: BenchConfig = { name: 'cpu', load: { gpu: 'cpu' }, ngl: 0, dev: 'none' };

/**
 * The GPU placements. llama-bench gets the same CUDA devices that cuda-llama's policy uses (all
 * of them), so a multi-GPU host splits layers the same way on both sides. -ngl 99 is "everything,
 * the output layer too", as gpuLayers 'max' is. llama.cpp's -ngl counts the output layer as one
 * more layer and offloads it first, so gpuLayers N (repeating layers) is -ngl N + 1: N repeating
 * layers and the output layer on the GPU on both sides (lib/gpu/decision.ts nGpuLayers).
 */
export function gpuConfigs(layerCount: number, cudaDevices: string[]): BenchConfig[] {
  const half = Math.floor(layerCount / 2);
  return [
    cpuConfig,
    fullOffloadConfig(cudaDevices),
    { name: 'partial', load: { gpu: 'cuda', gpuLayers: half }, ngl: half + 1, dev: cudaDevices.join('/') },
  ];
}

export function fullOffloadConfig(cudaDevices: string[]): BenchConfig {
  return { name: 'full', load: { gpu: 'cuda', gpuLayers: 'max' }, ngl: 99, dev: cudaDevices.join('/') };
}

export function isGpuConfig(config: BenchConfig): boolean {
  return config.load.gpu === 'cuda';
}

const started = performance.now();

/** Progress on stderr, with the seconds since the run started: a device command has 10 minutes, and the log says where they went. */
export function log(message: string): void {
  process.stderr.write(`[bench +${((performance.now() - started) / 1000).toFixed(0)}s] ${message}\n`);
}

export function fail(message: string): never {
  log(message);
  process.exit(1);
}

/** --rounds and friends: a positive integer, or exit with the flag's name (and the script's usage, if given). */
export function positiveInteger(name: string, value: string | undefined, usage?: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) fail(`${name} must be a positive integer, got ${value}${usage ? `\n${usage}` : ''}`);
  return n;
}

/** Side orders for paired rounds: forward on even rounds, reversed on odd ones, so every pair of sides alternates which goes first. */
export function roundOrder<T>(sides: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...sides] : [...sides].reverse();
}

/**
 * Runs one of llama.cpp's programs to the end and gives its output; a failure carries its stderr.
 * `env`: see toolEnv() in llama-bench.ts (undefined: this process's environment).
 */
export function runProgram(path: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve({ out, err });
      else reject(new Error(`${basename(path)} ${args.join(' ')} exited with ${code ?? signal}:\n${err.trim()}`));
    });
  });
}

/**
 * Runs a benchmark child script (cuda-llama-child.mjs, node-llama-cpp-child.mjs) under this node:
 * the request goes in as JSON on stdin (prompts of thousands of token ids do not belong in argv),
 * the result comes back as the one JSON line on stdout. stderr is passed through as it comes, and
 * its tail goes into the error when the child fails.
 */
export function runJsonChild<T>(script: string, request: object, env?: NodeJS.ProcessEnv): Promise<T> {
  const name = basename(script);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'pipe'], env });
    let out = '';
    let errTail = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      process.stderr.write(chunk);
      errTail = (errTail + chunk).slice(-4000);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`${name} exited with ${code ?? signal}:\n${errTail.trim()}`));
        return;
      }
      const lines = out.split('\n').filter((line) => line.trim() !== '');
      if (lines.length !== 1) {
        reject(new Error(`${name} printed ${lines.length} lines on stdout, expected one JSON line:\n${out}`));
        return;
      }
      try {
        resolve(JSON.parse(lines[0]!) as T);
      } catch (error) {
        reject(new Error(`${name} printed no valid JSON (${(error as Error).message}):\n${out}`));
      }
    });
    child.stdin.end(JSON.stringify(request));
  });
}

export function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

/** One cuda-llama-only configuration of the sweeps; `x` places it on the chart. */
export interface SweepPoint {
  group: 'attention and KV type' | 'context size' | 'gpuLayers';
  name: string;
  load: Pick<LoadOptions, 'gpu' | 'gpuLayers' | 'flashAttention' | 'kvCacheType' | 'contextSize'>;
  x: number;
}

/**
 * What the sweeps try. On the CPU: flash attention off/on, a q8_0 KV cache, and context sizes
 * (the memory an oversized window costs). With a GPU the same on full offload, plus gpuLayers
 * from none to all: the curve that shows where partial offload stops paying.
 */
export function sweepPoints(gpuMode: boolean, layerCount: number): SweepPoint[] {
  const base: SweepPoint['load'] = gpuMode ? { gpu: 'cuda', gpuLayers: 'max' } : { gpu: 'cpu' };
  const points: SweepPoint[] = [
    {
      group: 'attention and KV type',
      name: 'flashAttention off, KV f16',
      load: { ...base, flashAttention: 'off', kvCacheType: 'f16' },
      x: 0,
    },
    {
      group: 'attention and KV type',
      name: 'flashAttention on, KV f16',
      load: { ...base, flashAttention: 'on', kvCacheType: 'f16' },
      x: 1,
    },
    {
      group: 'attention and KV type',
      name: 'flashAttention on, KV q8_0',
      load: { ...base, flashAttention: 'on', kvCacheType: 'q8_0' },
      x: 2,
    },
    ...[2048, 8192, MODEL_CONTEXT_LENGTH].map((contextSize, i): SweepPoint => ({
      group: 'context size',
      name: `contextSize ${contextSize}`,
      load: { ...base, contextSize },
      x: i,
    })),
  ];
  if (gpuMode) {
    const steps = [...new Set([0, Math.round(layerCount / 4), Math.round(layerCount / 2), Math.round((3 * layerCount) / 4), layerCount])];
    for (const n of steps) {
      points.push({
        group: 'gpuLayers',
        name: n === 0 ? 'gpu: cpu' : `gpuLayers ${n}`,
        load: n === 0 ? { gpu: 'cpu' } : { gpu: 'cuda', gpuLayers: n },
        x: n,
      });
    }
    points.push({
      group: 'gpuLayers',
      name: "gpuLayers 'max' (output layer too)",
      load: { gpu: 'cuda', gpuLayers: 'max' },
      x: layerCount + 1,
    });
  }
  return points;
}

/** The CPU features our build's CPU backend reports, and llama.cpp's system line: which kernels a run used. */
export function cpuBackendLine(build: BuildReport): string {
  return `${build.metadata?.cpuFeatures ?? 'unknown features'}; ${build.systemInfo.trim().replace(/\s*\|$/, '')}`;
}
