/** What every part of the benchmark shares: paths, the workload's sizes, the configurations, logging. */
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LoadOptions } from '../../lib/index.js';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const PROMPT_TOKENS = 512;
export const GEN_TOKENS = 128;
export const SHORT_PROMPT_TOKENS = 16;
export const CONTEXT_SIZE = 2048;
export const TARGET_RATIO = 0.97;

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
 * the output layer too", as gpuLayers 'max' is; a count below the layer count leaves the output
 * layer on the CPU on both sides.
 */
export function gpuConfigs(layerCount: number, cudaDevices: string[]): BenchConfig[] {
  const dev = cudaDevices.join('/');
  const half = Math.floor(layerCount / 2);
  return [
    cpuConfig,
    { name: 'full', load: { gpu: 'cuda', gpuLayers: 'max' }, ngl: 99, dev },
    { name: 'partial', load: { gpu: 'cuda', gpuLayers: half }, ngl: half, dev },
  ];
}

export function isGpuConfig(config: BenchConfig): boolean {
  return config.load.gpu === 'cuda';
}

export function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export function fail(message: string): never {
  log(message);
  process.exit(1);
}

export function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}
