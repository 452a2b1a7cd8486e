/** llama.cpp's llama-bench: built from our build folder, run each repetition, its JSON parsed and checked. */
import { spawnSync } from 'node:child_process';
import { delimiter, dirname, join } from 'node:path';
import type { BuildReport } from '../../lib/index.js';
import {
  GEN_TOKENS,
  PROMPT_SIZES,
  SHORT_PROMPT_TOKENS,
  fail,
  ppSamples,
  repoRoot,
  runProgram,
  type BenchConfig,
  type PromptSize,
} from './common.js';

export const llamaBenchDir = join(repoRoot, 'build', 'Release');
export const llamaBenchPath = join(llamaBenchDir, 'llama-bench');

/** One row of `llama-bench -o json` (the fields we read; the rest is kept for the record). */
export interface LlamaBenchEntry {
  n_prompt: number;
  n_gen: number;
  n_threads: number;
  n_batch: number;
  n_ubatch: number;
  n_gpu_layers: number;
  /** Tokens in the KV cache before the timed test (-d). */
  n_depth: number;
  devices: string;
  avg_ts: number;
  stddev_ts: number;
  samples_ts: number[];
  [key: string]: unknown;
}

export interface LlamaBenchRun {
  /** One row per prompt size (pp128, pp512, pp2048). */
  pp: Record<PromptSize, LlamaBenchEntry>;
  tg: LlamaBenchEntry;
}

/** llama-bench and llama-batched-bench (test/bench/parallel.ts). */
export function buildLlamaBench(): void {
  // The child's stdout goes to our stderr: our stdout is reserved for the JSON result.
  const result = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'build-tools.mjs'), 'llama-bench', 'llama-batched-bench'], {
    cwd: repoRoot,
    stdio: ['ignore', 2, 2],
  });
  if (result.status !== 0) fail('could not build llama-bench and llama-batched-bench (see above)');
}

/**
 * The llama-bench runs of one repetition. Its -r applies to every test of a run, so the prompt
 * sizes are grouped by their sample count (PP_SAMPLES). tg runs alone, at depth (-d) of the
 * SHORT_PROMPT_TOKENS prompt that cuda-llama and node-llama-cpp decode before they generate (tgArgs):
 * so every side generates from the same KV position. llama-bench's plain tg128 starts at
 * position 0, and on the CPU attention skips masked cells, so its steps attend to fewer cells:
 * on the tiny model, llama-bench tg128 at depth 16 spent 23% more CPU time in attention than at
 * depth 0, and 10% more in all (perf, 1 thread, 100 runs each).
 */
export function llamaBenchInvocations(model: string, threads: number, config: BenchConfig): string[][] {
  const groups = new Map<number, number[]>();
  for (const size of PROMPT_SIZES) groups.set(ppSamples(size), [...(groups.get(ppSamples(size)) ?? []), size]);
  return [
    ...[...groups].map(([reps, sizes]) => llamaBenchArgs(model, ['-p', sizes.join(','), '-n', '0'], reps, threads, config)),
    llamaBenchArgs(model, tgArgs(GEN_TOKENS), 1, threads, config),
  ];
}

/** llama-bench's arguments for a tg test of `tokens` that generates where our side does: after the short prompt. */
export function tgArgs(tokens: number): string[] {
  return ['-p', '0', '-n', String(tokens), '-d', String(SHORT_PROMPT_TOKENS)];
}

/**
 * One llama-bench run of `tests` (its -p/-n/-d), `reps` samples each, with JSON out; compare.ts's
 * runs and paired.ts's rounds both come from here. -ngl 0 -dev none is the same placement as
 * gpu: 'cpu' (no device list at all), so a CUDA build cannot offload large prompt batches to a
 * GPU behind the CPU-only label. Batch, ubatch, flash attention (-fa) and KV type stay at
 * llama-bench's defaults, which are llama.cpp's, as ours are; its --fit-target stays off, so -ngl
 * is taken as given, as gpuLayers is.
 */
export function llamaBenchArgs(model: string, tests: string[], reps: number, threads: number, config: BenchConfig): string[] {
  return ['-m', model, ...tests, '-r', String(reps), '-t', String(threads), '-ngl', String(config.ngl), '-dev', config.dev, '-o', 'json'];
}

/**
 * The environment under which llama.cpp's programs (llama-bench, llama-batched-bench) use the CUDA
 * module cuda-llama loaded, so both sides run the same one. A module beside the addon is beside
 * them too (build/Release). The optional CUDA package's module is not: ggml also loads the file
 * GGML_BACKEND_PATH names, and the runtime libraries our loader preloaded for it go on
 * LD_LIBRARY_PATH, because a child process does not inherit a preload. Undefined: nothing to add.
 */
export function toolEnv(build: BuildReport | undefined): NodeJS.ProcessEnv | undefined {
  const module = build?.cudaModule;
  if (!module || module.source !== 'package') return undefined;
  const dirs = cudaRuntimeDirs(build);
  if (process.env.LD_LIBRARY_PATH) dirs.push(process.env.LD_LIBRARY_PATH);
  return { ...process.env, GGML_BACKEND_PATH: module.path, ...(dirs.length ? { LD_LIBRARY_PATH: dirs.join(delimiter) } : {}) };
}

/** The folders of the CUDA runtime libraries cuda-llama's loader preloaded (none when the system linker found them itself). */
export function cudaRuntimeDirs(build: BuildReport | undefined): string[] {
  return [...new Set((build?.cudaRuntime?.preloaded ?? []).map((library) => dirname(library.path)))];
}

/**
 * Fails before any measurement when llama-bench cannot see the CUDA devices cuda-llama will use:
 * it would otherwise reject `-dev` only when the first GPU row comes up, after minutes of CPU
 * rows. Its CUDA module is the libggml-cuda.so next to it in build/Release, or the optional
 * package's (toolEnv).
 */
export function checkLlamaBenchDevices(devices: string[], env?: NodeJS.ProcessEnv): void {
  const result = spawnSync(llamaBenchPath, ['--list-devices'], { cwd: repoRoot, encoding: 'utf8', env });
  const listed = new Set([...(result.stdout ?? '').matchAll(/^[ \t]+(\S+):/gm)].map((m) => m[1]));
  const missing = devices.filter((d) => !listed.has(d));
  if (result.status !== 0 || missing.length > 0) {
    fail(
      `llama-bench (build/Release) does not list ${(missing.length ? missing : devices).join(', ')}:\n${(result.stdout ?? '').trim()}\n` +
        'Remedy: build the CUDA variant into build/ (`npm run build:cuda`), so that llama-bench and the addon share build/Release and its libggml-cuda.so, ' +
        'or install the optional CUDA package, whose module llama-bench then loads through GGML_BACKEND_PATH',
    );
  }
}

/** A row that does not carry the placement we asked for is refused rather than compared. */
function checkPlacement(entry: LlamaBenchEntry, config: BenchConfig): void {
  if (entry.n_gpu_layers !== config.ngl || entry.devices !== config.dev) {
    throw new Error(
      `llama-bench reported n_gpu_layers ${entry.n_gpu_layers} / devices ${entry.devices}, ` +
        `expected ${config.ngl} / ${config.dev} for the ${config.name} configuration`,
    );
  }
}

export async function runLlamaBench(model: string, threads: number, config: BenchConfig, env?: NodeJS.ProcessEnv): Promise<LlamaBenchRun> {
  const entries: LlamaBenchEntry[] = [];
  for (const args of llamaBenchInvocations(model, threads, config)) {
    const { out } = await runProgram(llamaBenchPath, args, env);
    entries.push(...(JSON.parse(out) as LlamaBenchEntry[]));
  }
  const row = (nPrompt: number, nGen: number, nDepth: number, label: string) => {
    const entry = entries.find((e) => e.n_prompt === nPrompt && e.n_gen === nGen && e.n_depth === nDepth);
    if (!entry) throw new Error(`no ${label} row in: ${JSON.stringify(entries)}`);
    const samples = nGen === 0 ? ppSamples(nPrompt) : 1;
    if (entry.samples_ts.length !== samples)
      throw new Error(`llama-bench ${label}: ${entry.samples_ts.length} samples, expected ${samples}`);
    checkPlacement(entry, config);
    return entry;
  };
  const pp = Object.fromEntries(PROMPT_SIZES.map((n) => [n, row(n, 0, 0, `pp${n}`)])) as Record<PromptSize, LlamaBenchEntry>;
  return { pp, tg: row(0, GEN_TOKENS, SHORT_PROMPT_TOKENS, `tg${GEN_TOKENS} @ d${SHORT_PROMPT_TOKENS}`) };
}
