/**
 * What the scenario benchmarks (chat-turns.ts, arrivals.ts) share: the model they run, the
 * placement both sides use (the CPU, or with --gpu paired.ts's full offload), node-llama-cpp
 * readied for it, and the page's machine lines and output files.
 */
import { readdirSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { Llama, type BuildReport } from '../../lib/index.js';
import { cpuBackendLine, cpuConfig, fail, fullOffloadConfig, git, log, repoRoot, runJsonChild, type BenchConfig } from './common.js';
import { gpuMachineLine, requireCuda } from './gpu.js';
import { buildLlamaBench, checkLlamaBenchDevices, toolEnv } from './llama-bench.js';
import { NODE_LLAMA_CPP_VERSION, ensureNodeLlamaCpp, nodeLlamaCppGpuSetup, type NodeLlamaCppGpuSetup } from './node-llama-cpp.js';
import { compileDist } from './ours.js';
import { measured, stats } from './stats.js';

const modelsDir = join(repoRoot, 'test', '.models');
const shapeNames = ['tinyllama1b', 'small', 'tiny'];

/**
 * `--model`: a GGUF path, or a synthetic shape name (default tinyllama1b) for the Q4_0 file with
 * the 32768-token training context that `compare.ts --model NAME --prepare-only` makes.
 */
export function resolveModel(value: string | undefined): { path: string; shape?: string } {
  const name = value ?? 'tinyllama1b';
  if (!shapeNames.includes(name)) return { path: name };
  let file: string | undefined;
  try {
    file = readdirSync(modelsDir).find((f) => f.startsWith(`${name}-ctx32k-`) && f.endsWith('-q4_0.gguf'));
  } catch {
    // no models yet
  }
  if (!file) fail(`no test/.models/${name}-ctx32k-*-q4_0.gguf: run \`npx tsx test/bench/compare.ts --model ${name} --prepare-only\` once`);
  return { path: join(modelsDir, file), shape: name };
}

export interface ScenarioSetup {
  config: BenchConfig;
  /** For llama-batched-bench: the CUDA module cuda-llama loaded (see toolEnv in llama-bench.ts). */
  toolEnv?: NodeJS.ProcessEnv;
  cudaBuild?: BuildReport;
  nodeLlamaCppGpu?: NodeLlamaCppGpuSetup;
  nodeLlamaCppPackages?: string[];
}

/** The placement, dist/ compiled, and node-llama-cpp (and llama-batched-bench if asked) ready; exits with the reason if CUDA was asked for and cannot be used. */
export async function setUp(
  modelPath: string,
  options: { gpu: boolean; nodeLlamaCpp: boolean; batchedBench: boolean },
): Promise<ScenarioSetup> {
  const cudaBuild = options.gpu ? await requireCuda(modelPath) : undefined;
  const setup: ScenarioSetup = cudaBuild
    ? { config: fullOffloadConfig(cudaBuild.cuda.devices), toolEnv: toolEnv(cudaBuild), cudaBuild }
    : { config: cpuConfig };
  if (options.batchedBench) {
    buildLlamaBench();
    if (cudaBuild) checkLlamaBenchDevices(cudaBuild.cuda.devices, setup.toolEnv);
  }
  compileDist();
  if (options.nodeLlamaCpp) {
    const install = await ensureNodeLlamaCpp({ cuda: options.gpu });
    setup.nodeLlamaCppPackages = install.binaryPackages;
    if (cudaBuild) {
      setup.nodeLlamaCppGpu = nodeLlamaCppGpuSetup(cudaBuild, Llama.telemetry());
      log(setup.nodeLlamaCppGpu.note);
    }
  }
  return setup;
}

/** What node-llama-cpp's child gets for the placement (its gpu option, layers and CUDA runtime folders). */
export function nodeLlamaCppPlacement(setup: ScenarioSetup): { gpu: false | 'cuda'; gpuLayers?: 'max'; cudaLibraryDirs?: string[] } {
  return setup.nodeLlamaCppGpu ? { gpu: 'cuda', gpuLayers: 'max', cudaLibraryDirs: setup.nodeLlamaCppGpu.cudaLibraryDirs } : { gpu: false };
}

/** The page's lines about when, where and what ran. */
export function machineLines(
  setup: ScenarioSetup,
  threads: number,
  modelPath: string,
  command: string,
  withBatchedBench: boolean,
): string[] {
  const date = new Date()
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, '');
  return [
    `- Date (UTC): ${date}`,
    `- Machine: ${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} logical CPUs, ${threads} threads`,
    // Read after the rounds: the orchestrator has not loaded the addon on the CPU before this.
    `- CPU backend: ${cpuBackendLine(Llama.build())}`,
    ...(setup.cudaBuild ? [`- ${gpuMachineLine(Llama.telemetry())}`] : []),
    `- Placement: cuda-llama \`${JSON.stringify(setup.config.load)}\`, node-llama-cpp \`${JSON.stringify(nodeLlamaCppPlacement(setup))}\`` +
      (withBatchedBench ? `, llama-batched-bench \`-ngl ${setup.config.ngl} -dev ${setup.config.dev}\`` : ''),
    `- cuda-llama commit: ${git(['rev-parse', '--short', 'HEAD'])}${git(['status', '--porcelain', '--', 'lib', 'native']) ? ' (with uncommitted changes in lib/ or native/)' : ''}`,
    `- Model: ${relative(repoRoot, modelPath)}`,
    ...(setup.nodeLlamaCppPackages
      ? [`- node-llama-cpp: ${NODE_LLAMA_CPP_VERSION} (${setup.nodeLlamaCppPackages.join(', ')}), from test/bench/.node-llama-cpp`]
      : []),
    ...(setup.nodeLlamaCppGpu ? [`- ${setup.nodeLlamaCppGpu.note}`] : []),
    `- Command: \`${command}\``,
  ];
}

/** JSON on stdout, the tables on stderr, both into `outDir` as NAME.json / NAME.md, and the page to `docsPath` if given. */
export async function writeOutputs(
  name: string,
  result: object,
  tables: string,
  page: string,
  outDir: string,
  docsPath: string | undefined,
): Promise<void> {
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.stderr.write(`\n${tables}\n`);
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, `${name}.json`), `${JSON.stringify(result, null, 1)}\n`);
  await writeFile(join(outDir, `${name}.md`), page);
  log(`wrote ${relative(repoRoot, join(outDir, `${name}.json`))} and ${name}.md`);
  if (docsPath) {
    await mkdir(dirname(docsPath), { recursive: true });
    await writeFile(docsPath, page);
    log(`wrote ${relative(repoRoot, docsPath)}`);
  }
}

export const defaultOutDir = join(repoRoot, 'test', 'bench', 'results');
export const latestDir = join(repoRoot, 'test', 'bench', 'results', 'latest');

const oursChildPath = join(repoRoot, 'test', 'bench', 'cuda-llama-child.mjs');

/** cuda-llama's side of a scenario (cuda-llama-scenarios.mjs) in a fresh process on dist/. */
export function runOursScenario<T>(request: {
  kind: 'chatTexts' | 'chat' | 'arrivals';
  modelPath: string;
  loadOptions: object;
  [field: string]: unknown;
}): Promise<T> {
  return runJsonChild<T>(oursChildPath, request);
}

/** Share of the machine's CPU other processes took while each side of a round ran (stats.ts interference), by side. */
export type OtherCpu = Record<string, number | null>;

export async function timedSide<T>(otherCpu: OtherCpu, side: string, run: () => Promise<T>): Promise<T> {
  const measuredRun = await measured(async () => ({ value: await run() }));
  otherCpu[side] = measuredRun.interference?.otherProcesses ?? null;
  return measuredRun.value;
}

/** The page's line on how busy the machine was: numbers from a busy machine are noise. */
export function interferenceLine(rounds: { otherCpu: OtherCpu }[]): string {
  const seen = rounds.flatMap((r, i) => Object.entries(r.otherCpu).map(([side, share]) => ({ side, round: i + 1, share })));
  const known = seen.filter((x): x is { side: string; round: number; share: number } => x.share !== null);
  if (known.length === 0) return '- Other processes: not measured (no /proc/stat)';
  const worst = known.reduce((a, b) => (b.share > a.share ? b : a));
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  return (
    `- Other processes used ${pct(stats(known.map((x) => x.share)).median)} of the machine's CPU time while a side ran (median over sides and rounds), ` +
    `at worst ${pct(worst.share)} (${worst.side}, round ${worst.round})${worst.share > 0.05 ? ': rounds on a busy machine are noise' : ''}`
  );
}
