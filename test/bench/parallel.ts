/**
 * Parallel sequences: aggregate generation speed with 1, 4 and 16 prompts at once, through
 * model.generateBatch() and through llama.cpp's own llama-batched-bench on the same libllama.
 * Both sides hold one context of PARALLEL_WINDOW tokens per sequence for the largest count and
 * run every count in it, as llama-batched-bench does.
 */
import { join } from 'node:path';
import type { LoadOptions } from '../../lib/index.js';
import { runProgram, type BenchConfig } from './common.js';
import { llamaBenchDir } from './llama-bench.js';
import { runCudaLlamaChild } from './ours.js';

export const PARALLEL_SEQUENCES = [1, 4, 16] as const;
export const PARALLEL_PROMPT_TOKENS = 16;
/** Fewer than tg128: 16 sequences of 128 tokens would take minutes per repetition on a 2-core CPU. */
export const PARALLEL_GEN_TOKENS = 64;
/** Each sequence's window: prompt and output fit with room to spare. */
export const PARALLEL_WINDOW = 256;

const batchedBenchPath = join(llamaBenchDir, 'llama-batched-bench');
const maxSequences = Math.max(...PARALLEL_SEQUENCES);

/** Aggregate tokens per second by sequence count. */
export interface ParallelRun {
  tg: Record<number, number>;
  pp: Record<number, number>;
}

export interface OursParallelRun extends ParallelRun {
  /** Tokens each sequence generated, by count: fewer than PARALLEL_GEN_TOKENS means an early end of generation. */
  generated: Record<number, number[]>;
}

/** One prompt per sequence, each a different slice of the sample text (llama-batched-bench takes random tokens). */
export function parallelPrompts(sample: number[], count: number = maxSequences, length: number = PARALLEL_PROMPT_TOKENS): number[][] {
  const body = sample.slice(1); // without BOS: each prompt gets its own
  if (body.length < length) throw new RangeError(`a ${sample.length}-token sample is too short for ${length}-token prompts`);
  return Array.from({ length: count }, (_, i) => {
    const start = (i * 7) % Math.max(1, body.length - length);
    return [sample[0]!, ...body.slice(start, start + length - 1)];
  });
}

/** cuda-llama's side, in a fresh process (cuda-llama-child.mjs): the largest batch once, excluded, then each count. */
export function runOursParallel(path: string, loadOptions: LoadOptions, prompts: number[][]): Promise<OursParallelRun> {
  if (prompts.length !== maxSequences) throw new RangeError(`expected ${maxSequences} prompts, got ${prompts.length}`);
  return runCudaLlamaChild<OursParallelRun>({
    kind: 'parallel',
    modelPath: path,
    loadOptions: { ...loadOptions, contextSize: PARALLEL_WINDOW, sequences: maxSequences },
    prompts,
    counts: PARALLEL_SEQUENCES,
    genTokens: PARALLEL_GEN_TOKENS,
  });
}

/** What llama-batched-bench runs: compare.ts's parallel sequences unless another shape is given (arrivals.ts). */
export interface BatchedBenchShape {
  promptTokens: number;
  genTokens: number;
  counts: readonly number[];
  /** Cells per sequence. */
  window: number;
}

const parallelShape: BatchedBenchShape = {
  promptTokens: PARALLEL_PROMPT_TOKENS,
  genTokens: PARALLEL_GEN_TOKENS,
  counts: PARALLEL_SEQUENCES,
  window: PARALLEL_WINDOW,
};

export function batchedBenchArgs(model: string, threads: number, config: BenchConfig, shape: BatchedBenchShape = parallelShape): string[] {
  // -c: the whole cache; llama-batched-bench sets n_seq_max to the largest -npl, so each sequence
  // gets `window` cells, as ours does. Placement as llama-bench's rows (-ngl, -dev).
  return [
    '-m',
    model,
    '-npp',
    String(shape.promptTokens),
    '-ntg',
    String(shape.genTokens),
    '-npl',
    shape.counts.join(','),
    '-c',
    String(shape.window * Math.max(...shape.counts)),
    '-t',
    String(threads),
    '-ngl',
    String(config.ngl),
    '-dev',
    config.dev,
    '--output-format',
    'jsonl',
  ];
}

interface BatchedBenchRow {
  pl: number;
  pp: number;
  tg: number;
  n_gpu_layers: number;
  speed_pp: number;
  speed_tg: number;
}

/** `env`: toolEnv() in llama-bench.ts. */
export async function runBatchedBench(
  model: string,
  threads: number,
  config: BenchConfig,
  env?: NodeJS.ProcessEnv,
  shape: BatchedBenchShape = parallelShape,
): Promise<ParallelRun> {
  const { out, err } = await runProgram(batchedBenchPath, batchedBenchArgs(model, threads, config, shape), env);
  // It logs its JSON rows through llama.cpp's logger, which may go to either stream.
  const rows = `${out}\n${err}`
    .split('\n')
    .filter((l) => l.startsWith('{"n_kv_max"'))
    .map((l) => JSON.parse(l) as BatchedBenchRow);
  const run: ParallelRun = { tg: {}, pp: {} };
  for (const n of shape.counts) {
    const row = rows.find((r) => r.pl === n);
    if (!row) throw new Error(`llama-batched-bench printed no row for ${n} sequences:\n${out}`);
    if (row.n_gpu_layers !== config.ngl)
      throw new Error(`llama-batched-bench reported n_gpu_layers ${row.n_gpu_layers}, expected ${config.ngl}`);
    run.tg[n] = row.speed_tg;
    run.pp[n] = row.speed_pp;
  }
  return run;
}
