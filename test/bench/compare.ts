/**
 * The benchmark suite (npm run bench). In one run, interleaved:
 *   - cuda-llama, llama.cpp's own llama-bench (built from our build folder: the same
 *     libllama/libggml) and node-llama-cpp (its prebuilt binary) on the same GGUF, threads and
 *     context: load, time to first token, pp128/512/2048, tg128. Each program measures in a
 *     process of its own; cuda-llama's is cuda-llama-child.mjs on dist/ (it says why), so this
 *     process only orchestrates, samples NVML and writes the results;
 *   - cold versus warm: the first request after a load against the steady state;
 *   - parallel sequences: aggregate generation speed with 1, 4 and 16 prompts at once
 *     (model.generateBatch) against llama.cpp's llama-batched-bench, interleaved too;
 *   - sweeps (cuda-llama only): flash attention, KV type, context size, and with --gpu gpuLayers.
 *
 *   npx tsx test/bench/compare.ts [--model tinyllama1b|small|tiny] [--quant Q4_0|Q8_0|F16]
 *     [--threads N] [--reps 3] [--sweep-reps 1] [--gpu] [--no-node-llama-cpp] [--no-sweep]
 *     [--no-parallel] [--out test/bench/results] [--json out.json] [--write-docs [--docs test/bench/results/latest/cpu.md, or gpu.md with --gpu]]
 *     [--prepare-only]
 *
 * --gpu: cpu, full offload and partial offload (half the layers) on all sides, with the layer
 * report and NVML telemetry, and the gpuLayers sweep.
 * --prepare-only: build llama-bench and make the model, then stop. A GPU session does this in an
 * earlier device call, so that the measuring call spends its 10 minutes measuring.
 *
 * stdout: the result as JSON. stderr: progress, then the markdown. --out gets result.json,
 * result.md and the PNG charts; --write-docs writes the docs page and its charts next to it.
 */
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Llama, type BuildReport, type GpuTelemetry, type LoadOptions } from '../../lib/index.js';
import { ensureSyntheticModel, shapes, type SyntheticShapeName } from '../../lib/gguf/synthetic-model.js';
import { sampleTokens } from '../../lib/tools/tune.js';
import { renderLineChartPng, type LineChartSpec } from './chart.js';
import {
  CONTEXT_SIZE,
  GEN_TOKENS,
  MODEL_CONTEXT_LENGTH,
  PROMPT_SIZES,
  PROMPT_TOKENS,
  SHORT_PROMPT_TOKENS,
  cpuBackendLine,
  cpuConfig,
  fail,
  git,
  gpuConfigs,
  isGpuConfig,
  log,
  repoRoot,
  sweepPoints,
  type SweepPoint,
} from './common.js';
import { gpuMachineLine, requireCuda, telemetryLine, throttleFindings, windowNote, withGpuSamples, type GpuWindow } from './gpu.js';
import { buildLlamaBench, checkLlamaBenchDevices, llamaBenchDir, runLlamaBench, toolEnv } from './llama-bench.js';
import {
  ensureNodeLlamaCpp,
  nodeLlamaCppGpuSetup,
  runNodeLlamaCpp,
  runNodeLlamaCppParallel,
  type NodeLlamaCppParallelRun,
} from './node-llama-cpp.js';
import { compileDist, runColdWarm, runOurs, type OursRun, type OursWorkload } from './ours.js';
import {
  PARALLEL_GEN_TOKENS,
  PARALLEL_SEQUENCES,
  PARALLEL_WINDOW,
  parallelPrompts,
  runBatchedBench,
  runOursParallel,
  type OursParallelRun,
  type ParallelRun,
} from './parallel.js';
import {
  buildNotes,
  docPage,
  fmt,
  othersNote,
  placementLabel,
  summarizeColdWarm,
  summarizeConfig,
  summarizeParallel,
  summarizeSweep,
  tables,
  type ConfigRuns,
  type ConfigSummary,
} from './report.js';
import { cpuSnapshot, interference, measured, type Measured } from './stats.js';

const modelsDir = join(repoRoot, 'test', '.models');
const vocabPath = join(repoRoot, 'vendor', 'llama.cpp', 'models', 'ggml-vocab-llama-spm.gguf');
// docs/benchmarks.md is the hand-written overview of the latest run per platform: it quotes these
// generated pages, and shows their charts, which go to docs/ under the platform's name.
const defaultDocsPath = (gpu: boolean) => join(repoRoot, 'test', 'bench', 'results', 'latest', gpu ? 'gpu.md' : 'cpu.md');
const chartPrefix = (gpu: boolean) => `benchmarks-${gpu ? 'gpu' : 'cpu'}-`;
const defaultOutDir = join(repoRoot, 'test', 'bench', 'results');

const shapeNames = ['tinyllama1b', 'small', 'tiny'] as const satisfies readonly SyntheticShapeName[];
const quantNames = ['Q4_0', 'Q8_0', 'F16'] as const;
type Quant = (typeof quantNames)[number];

const usage =
  'usage: npx tsx test/bench/compare.ts [--model tinyllama1b|small|tiny] [--quant Q4_0|Q8_0|F16] [--threads N] [--reps 3] [--sweep-reps 1] ' +
  '[--gpu] [--no-node-llama-cpp] [--no-sweep] [--no-parallel] [--out test/bench/results] [--json out.json] [--write-docs [--docs test/bench/results/latest/cpu.md, or gpu.md with --gpu]] [--prepare-only]\n';

function parseCli() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'tinyllama1b' },
      quant: { type: 'string', default: 'Q4_0' },
      threads: { type: 'string' },
      reps: { type: 'string', default: '3' },
      'sweep-reps': { type: 'string', default: '1' },
      'no-node-llama-cpp': { type: 'boolean', default: false },
      'no-sweep': { type: 'boolean', default: false },
      'no-parallel': { type: 'boolean', default: false },
      out: { type: 'string' },
      json: { type: 'string' },
      gpu: { type: 'boolean', default: false },
      'write-docs': { type: 'boolean', default: false },
      docs: { type: 'string' },
      'prepare-only': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stderr.write(usage);
    process.exit(0);
  }
  const model = values.model as SyntheticShapeName;
  if (!(shapeNames as readonly string[]).includes(model)) fail(`--model must be one of ${shapeNames.join(', ')}`);
  const quant = values.quant as Quant;
  if (!(quantNames as readonly string[]).includes(quant)) fail(`--quant must be one of ${quantNames.join(', ')}`);
  const threads = values.threads === undefined ? availableParallelism() : Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1) fail('--threads must be a positive integer');
  const reps = Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1) fail('--reps must be a positive integer');
  const sweepReps = Number(values['sweep-reps']);
  if (!Number.isInteger(sweepReps) || sweepReps < 1) fail('--sweep-reps must be a positive integer');
  // Said now, not after a run of many minutes that then writes nothing.
  if (values.docs !== undefined && !values['write-docs']) fail('--docs names the page --write-docs writes: pass both');
  const docs = values.docs === undefined ? defaultDocsPath(values.gpu) : resolve(values.docs);
  return {
    model,
    quant,
    threads,
    reps,
    sweepReps,
    json: values.json,
    gpu: values.gpu,
    writeDocs: values['write-docs'],
    docs,
    prepareOnly: values['prepare-only'],
    nodeLlamaCpp: !values['no-node-llama-cpp'],
    sweep: !values['no-sweep'],
    parallel: !values['no-parallel'],
    out: resolve(values.out ?? defaultOutDir),
  };
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function prepareModel(shape: SyntheticShapeName, quant: Quant, threads: number): Promise<string> {
  log(
    `synthetic ${shape} F16 model with a ${MODEL_CONTEXT_LENGTH}-token training context (generated once, cached in ${relative(repoRoot, modelsDir)})`,
  );
  // The shape's own weights; only the declared training context is longer (metadata), so that
  // pp2048 and the context-size sweep fit.
  const f16 = await ensureSyntheticModel({
    cacheDir: modelsDir,
    shape: { ...shapes[shape], contextLength: MODEL_CONTEXT_LENGTH },
    label: `${shape}-ctx${MODEL_CONTEXT_LENGTH / 1024}k`,
    vocabPath,
    seed: 1,
  });
  if (quant === 'F16') return f16;
  const quantized = f16.replace(/-f16\.gguf$/, `-${quant.toLowerCase()}.gguf`);
  if (await fileExists(quantized)) return quantized;
  log(`quantizing to ${quant}: ${relative(repoRoot, quantized)}`);
  const started = performance.now();
  // Written under a temporary name: a run killed mid-quantization must not leave a truncated
  // file that the next run would take for the cached model.
  const partial = `${quantized}.${process.pid}.partial`;
  try {
    await Llama.quantize(f16, partial, quant, { threads });
    await rename(partial, quantized);
  } catch (error) {
    await unlink(partial).catch(() => {});
    throw error;
  }
  log(`quantized in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return quantized;
}

async function machineInfo() {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpuModel;
  } catch {
    // not Linux: os.cpus() is the best we have
  }
  return {
    cpu: cpuModel,
    logicalCpus: cpus().length,
    availableParallelism: availableParallelism(),
    ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  };
}

/** GPU runs are sampled by NVML while they run; CPU runs are left alone, the timer would only add noise. */
function sampledIf<T extends object>(sample: boolean, run: () => Promise<T>): Promise<T & { gpu?: GpuWindow }> {
  // Unsampled results simply have no `gpu` key, which the optional type allows.
  return sample ? withGpuSamples(run) : (run() as Promise<T & { gpu?: GpuWindow }>);
}

type Program = 'llama-bench' | 'cuda-llama' | 'node-llama-cpp';

/** The order of the programs in repetition `r`: rotated, so a steady drift (thermal, a neighbour's job winding down) is spread over all of them. */
function rotation(programs: Program[], r: number): Program[] {
  return programs.map((_, i) => programs[(i + r) % programs.length]!);
}

/** Charts a person can look at: pp by prompt length for the three programs, and the sweeps. */
function chartSpecs(
  summaries: ConfigSummary[],
  sweep: ReturnType<typeof summarizeSweep> | undefined,
  parallel: ReturnType<typeof summarizeParallel> | undefined,
  gpuMode: boolean,
  modelLabel: string,
): { file: string; spec: LineChartSpec }[] {
  const charts: { file: string; spec: LineChartSpec }[] = [];
  if (parallel) {
    const ticks = parallel.rows.map((r, i) => ({ value: i, label: String(r.sequences) }));
    charts.push({
      file: 'tg-by-parallel-sequences.png',
      spec: {
        title: `Aggregate generation with parallel sequences, ${modelLabel}, ${gpuMode ? 'full offload' : 'CPU'}`,
        xLabel: 'sequences generating at once',
        yLabel: 'tokens/s, all sequences (median)',
        xTicks: ticks,
        series: [
          { name: 'cuda-llama generateBatch', points: parallel.rows.map((r, i) => ({ x: i, y: r.cudaLlamaTgTokensPerSecond.median })) },
          {
            name: 'llama-batched-bench',
            points: parallel.rows.map((r, i) => ({ x: i, y: r.batchedBenchTgTokensPerSecond.median })),
            dashed: true,
          },
          ...(parallel.rows[0]!.nodeLlamaCppTgTokensPerSecond
            ? [{ name: 'node-llama-cpp', points: parallel.rows.map((r, i) => ({ x: i, y: r.nodeLlamaCppTgTokensPerSecond!.median })) }]
            : []),
        ],
      },
    });
  }
  const main = summaries.find((s) => s.config.name === (gpuMode ? 'full' : 'cpu')) ?? summaries[0]!;
  const xTicks = PROMPT_SIZES.map((n, i) => ({ value: i, label: String(n) }));
  const ppSeries = (name: string, values: Record<string, { median: number }>) => ({
    name,
    points: PROMPT_SIZES.map((n, i) => ({ x: i, y: values[`pp${n}`]!.median })),
  });
  charts.push({
    file: 'pp-by-prompt-length.png',
    spec: {
      title: `Prompt processing, ${modelLabel}, ${main.config.name === 'cpu' ? 'CPU' : `${main.config.name} offload`}`,
      xLabel: 'prompt length (tokens)',
      yLabel: 'tokens/s (median)',
      xTicks,
      series: [
        ppSeries('cuda-llama', main.cudaLlama.ppTokensPerSecond),
        { ...ppSeries('llama-bench', main.llamaBench.ppTokensPerSecond), dashed: true },
        ...(main.nodeLlamaCpp ? [ppSeries('node-llama-cpp', main.nodeLlamaCpp.ppTokensPerSecond)] : []),
      ],
    },
  });
  if (!sweep) return charts;
  const cpuRow = summaries.find((s) => s.config.name === 'cpu');
  if (gpuMode) {
    const rows = sweep.rows.filter((r) => r.group === 'gpuLayers');
    const maxX = Math.max(...rows.map((r) => r.x));
    const ticks = rows.map((r) => ({ value: r.x, label: r.x === 0 ? 'cpu' : r.x === maxX ? 'max' : String(r.x) }));
    for (const [metric, key] of [
      ['tg128', 'tg128TokensPerSecond'],
      ['pp512', 'pp512TokensPerSecond'],
    ] as const) {
      charts.push({
        file: `${metric}-by-gpu-layers.png`,
        spec: {
          title: `${metric} against gpuLayers, ${modelLabel}`,
          xLabel: "gpuLayers (0 = gpu: 'cpu', max = output layer too)",
          yLabel: 'tokens/s (median)',
          xTicks: ticks,
          series: [{ name: `cuda-llama ${metric}`, points: rows.map((r) => ({ x: r.x, y: r[key].median })) }],
          ...(cpuRow
            ? {
                hlines: [
                  {
                    y: metric === 'tg128' ? cpuRow.cudaLlama.tg128TokensPerSecond.median : cpuRow.cudaLlama.ppTokensPerSecond.pp512!.median,
                    label: 'CPU only',
                  },
                ],
              }
            : {}),
        },
      });
    }
  } else {
    const rows = sweep.rows.filter((r) => r.group === 'context size');
    charts.push({
      file: 'speed-by-context-size.png',
      spec: {
        title: `Speed against context size, ${modelLabel}, CPU`,
        xLabel: 'contextSize (tokens)',
        yLabel: 'tokens/s (median)',
        xTicks: rows.map((r) => ({ value: r.x, label: String(r.loadOptions.contextSize) })),
        series: [
          { name: 'pp512', points: rows.map((r) => ({ x: r.x, y: r.pp512TokensPerSecond.median })) },
          { name: 'tg128', points: rows.map((r) => ({ x: r.x, y: r.tg128TokensPerSecond.median })) },
        ],
      },
    });
  }
  return charts;
}

async function main(): Promise<void> {
  const cli = parseCli();
  const command = `npx tsx test/bench/compare.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`;
  const loadAtStart = loadavg();

  // cuda-llama's side runs on the compiled package (cuda-llama-child.mjs), which must match lib/.
  compileDist();
  if (cli.prepareOnly) {
    buildLlamaBench();
    const modelPath = await prepareModel(cli.model, cli.quant, cli.threads);
    log(`prepared: llama-bench in ${relative(repoRoot, llamaBenchDir)}, model ${relative(repoRoot, modelPath)}`);
    return;
  }

  // Before the llama-bench build, the model and the CPU rows: without CUDA, --gpu has nothing to measure.
  const cudaBuild: BuildReport | undefined = cli.gpu ? await requireCuda(vocabPath) : undefined;

  buildLlamaBench();
  const llamaToolEnv = toolEnv(cudaBuild);
  if (cudaBuild) checkLlamaBenchDevices(cudaBuild.cuda.devices, llamaToolEnv);
  const nodeLlamaCpp = cli.nodeLlamaCpp ? await ensureNodeLlamaCpp({ cuda: cli.gpu }) : undefined;
  const nodeLlamaCppGpu = nodeLlamaCpp && cudaBuild ? nodeLlamaCppGpuSetup(cudaBuild, Llama.telemetry()) : undefined;
  if (nodeLlamaCppGpu) log(nodeLlamaCppGpu.note);
  const nodeLlamaCppCudaDirs = nodeLlamaCppGpu ? { cudaLibraryDirs: nodeLlamaCppGpu.cudaLibraryDirs } : {};
  const modelPath = await prepareModel(cli.model, cli.quant, cli.threads);
  const modelRel = relative(repoRoot, modelPath);
  const loadOptionsFor = (config: { load: LoadOptions }): LoadOptions => ({
    threads: cli.threads,
    contextSize: CONTEXT_SIZE,
    ...config.load,
  });

  // Excluded from the results: brings the file into the page cache for every program.
  log(`warm-up load of ${modelRel}`);
  const warm = await Llama.load(modelPath, loadOptionsFor(cpuConfig));
  const info = warm.info;
  const longest = Math.max(...PROMPT_SIZES);
  const longIds = sampleTokens(warm, longest);
  await warm.dispose();
  const longPrompt = longIds.slice(0, longest);
  const shortPrompt = longIds.slice(0, SHORT_PROMPT_TOKENS);
  const workload: OursWorkload = { shortPrompt, longPrompt, promptSizes: PROMPT_SIZES };

  const configs = cudaBuild ? gpuConfigs(info.layerCount, cudaBuild.cuda.devices) : [cpuConfig];
  const runs: ConfigRuns[] = configs.map((config) => ({ config, ours: [], bench: [], nodeLlamaCpp: [] }));
  if (cli.gpu) {
    for (const r of runs) {
      // Also excluded: the first CUDA load pays for the CUDA context and cuBLAS, which no measured
      // load should; and a placement the library refuses (does not fit, layers elsewhere) stops
      // the run here, not after the CPU rows.
      const model = await Llama.load(modelPath, loadOptionsFor(r.config));
      try {
        r.layerReport = await model.layerReport();
      } finally {
        await model.dispose();
      }
      log(`warm-up load, ${r.config.name} (${placementLabel(r.config)}): ${r.layerReport.summary}`);
    }
  }

  const programs: Program[] = ['llama-bench', 'cuda-llama', ...(nodeLlamaCpp ? ['node-llama-cpp' as const] : [])];
  const telemetryStart: GpuTelemetry | undefined = cli.gpu ? Llama.telemetry() : undefined;
  if (telemetryStart) log(telemetryLine('at start', telemetryStart));
  const runsStart = await cpuSnapshot();
  const ppLine = (pp: Record<number, number>) => PROMPT_SIZES.map((n) => `pp${n} ${fmt(pp[n]!, 2)}`).join(', ');
  for (let r = 0; r < cli.reps; r++) {
    for (const c of runs) {
      const label = `rep ${r + 1}/${cli.reps}${cli.gpu ? ` ${c.config.name}` : ''}`;
      const sample = cli.gpu && isGpuConfig(c.config);
      for (const which of rotation(programs, r)) {
        const gpuNote = (run: { gpu?: GpuWindow }) => (run.gpu ? windowNote(run.gpu) : '');
        if (which === 'llama-bench') {
          const run = await measured(() => sampledIf(sample, () => runLlamaBench(modelPath, cli.threads, c.config, llamaToolEnv)));
          c.bench.push(run);
          log(
            `${label} llama-bench:    ${ppLine(Object.fromEntries(PROMPT_SIZES.map((n) => [n, run.pp[n].avg_ts])))}, tg${GEN_TOKENS} ${fmt(run.tg.avg_ts, 2)} tok/s${othersNote(run.interference)}${gpuNote(run)}`,
          );
        } else if (which === 'cuda-llama') {
          const run = await measured(() => sampledIf(sample, () => runOurs(modelPath, loadOptionsFor(c.config), workload)));
          c.ours.push(run);
          log(
            `${label} cuda-llama:     ${ppLine(run.pp)}, tg${GEN_TOKENS} ${fmt(run.tgTokensPerSecond, 2)} tok/s ` +
              `(${run.tgGeneratedTokens} tokens, ${run.tgStopReason}), TTFT ${fmt(run.ttftMs, 1)} ms, load ${fmt(run.loadMs, 0)} ms + warm-up ${fmt(run.warmupMs, 0)} ms${othersNote(run.interference)}${gpuNote(run)}`,
          );
        } else {
          const run = await measured(() =>
            sampledIf(sample, () =>
              runNodeLlamaCpp({
                modelPath,
                threads: cli.threads,
                contextSize: CONTEXT_SIZE,
                gpu: isGpuConfig(c.config) ? 'cuda' : false,
                ...(c.config.load.gpuLayers === undefined || c.config.load.gpuLayers === 'auto'
                  ? {}
                  : { gpuLayers: c.config.load.gpuLayers }),
                longPrompt,
                shortPrompt,
                promptSizes: [...PROMPT_SIZES],
                genTokens: GEN_TOKENS,
                ...nodeLlamaCppCudaDirs,
              }),
            ),
          );
          c.nodeLlamaCpp.push(run);
          log(
            `${label} node-llama-cpp: ${ppLine(run.pp)}, tg${GEN_TOKENS} ${fmt(run.tgTokensPerSecond, 2)} tok/s ` +
              `(${run.tgGeneratedTokens} tokens), TTFT ${fmt(run.ttftMs, 1)} ms, load ${fmt(run.loadMs, 0)} ms${othersNote(run.interference)}${gpuNote(run)}`,
          );
        }
      }
    }
  }

  // Cold versus warm, on the main placement (full offload with --gpu).
  const mainConfig = configs.find((c) => c.name === (cli.gpu ? 'full' : 'cpu'))!;
  const coldRuns: Measured<Awaited<ReturnType<typeof runColdWarm>>>[] = [];
  for (let r = 0; r < cli.reps; r++) {
    const run = await measured(() => runColdWarm(modelPath, loadOptionsFor(mainConfig), shortPrompt));
    coldRuns.push(run);
    log(
      `rep ${r + 1}/${cli.reps} cold/warm: first request ${fmt(run.coldRequestMs, 1)} ms, second ${fmt(run.warmRequestMs, 1)} ms, after load()'s warm-up ${fmt(run.requestAfterWarmupMs, 1)} ms`,
    );
  }
  const coldWarm = summarizeColdWarm(coldRuns);

  // Parallel sequences, on the main placement: ours, llama-batched-bench and node-llama-cpp, rotating first.
  let parallel: ReturnType<typeof summarizeParallel> | undefined;
  if (cli.parallel) {
    const prompts = parallelPrompts(longIds);
    const oursParallel: Measured<OursParallelRun>[] = [];
    const referenceParallel: Measured<ParallelRun>[] = [];
    const nodeParallel: Measured<NodeLlamaCppParallelRun>[] = [];
    const line = (run: { tg: Record<number, number> }) => PARALLEL_SEQUENCES.map((n) => `${n}: ${fmt(run.tg[n]!, 2)}`).join(', ');
    for (let r = 0; r < cli.reps; r++) {
      for (const which of rotation(programs, r)) {
        if (which === 'cuda-llama') {
          const run = await measured(() => runOursParallel(modelPath, loadOptionsFor(mainConfig), prompts));
          oursParallel.push(run);
          log(
            `rep ${r + 1}/${cli.reps} parallel cuda-llama:          aggregate tg tok/s by sequences ${line(run)}${othersNote(run.interference)}`,
          );
        } else if (which === 'llama-bench') {
          const run = await measured(() => runBatchedBench(modelPath, cli.threads, mainConfig, llamaToolEnv));
          referenceParallel.push(run);
          log(
            `rep ${r + 1}/${cli.reps} parallel llama-batched-bench: aggregate tg tok/s by sequences ${line(run)}${othersNote(run.interference)}`,
          );
        } else {
          const run = await measured(() =>
            runNodeLlamaCppParallel({
              modelPath,
              threads: cli.threads,
              gpu: isGpuConfig(mainConfig) ? 'cuda' : false,
              prompts,
              counts: [...PARALLEL_SEQUENCES],
              genTokens: PARALLEL_GEN_TOKENS,
              window: PARALLEL_WINDOW,
              ...nodeLlamaCppCudaDirs,
            }),
          );
          nodeParallel.push(run);
          log(
            `rep ${r + 1}/${cli.reps} parallel node-llama-cpp:      aggregate tg tok/s by sequences ${line(run)}${othersNote(run.interference)}`,
          );
        }
      }
    }
    parallel = summarizeParallel(oursParallel, referenceParallel, nodeParallel, modelRel, cli.threads, mainConfig);
  }

  // Sweeps: cuda-llama only; every point is a fresh load, like a user trying a setting.
  let sweep: ReturnType<typeof summarizeSweep> | undefined;
  if (cli.sweep) {
    const points = sweepPoints(cli.gpu, info.layerCount);
    const measuredPoints: { point: SweepPoint; runs: Measured<OursRun>[] }[] = points.map((point) => ({ point, runs: [] }));
    for (let r = 0; r < cli.sweepReps; r++) {
      for (const p of measuredPoints) {
        const run = await measured(() =>
          runOurs(modelPath, loadOptionsFor(p.point), { shortPrompt, longPrompt, promptSizes: [PROMPT_TOKENS], withReport: true }),
        );
        p.runs.push(run);
        log(
          `sweep ${r + 1}/${cli.sweepReps} ${p.point.group}: ${p.point.name}: pp${PROMPT_TOKENS} ${fmt(run.pp[PROMPT_TOKENS]!, 2)}, tg${GEN_TOKENS} ${fmt(run.tgTokensPerSecond, 2)} tok/s, ` +
            `KV ${((run.kvCacheBytes ?? 0) / 2 ** 20).toFixed(0)} MiB, load ${fmt(run.loadMs, 0)} ms${run.layerReport ? `; ${run.layerReport.summary}` : ''}`,
        );
      }
    }
    sweep = summarizeSweep(measuredPoints);
  }

  const loadAtEnd = loadavg();
  const overall = interference(runsStart, await cpuSnapshot());
  const telemetryEnd: GpuTelemetry | undefined = cli.gpu ? Llama.telemetry() : undefined;

  const summaries = runs.map((r) => summarizeConfig(r, modelRel, cli.threads, cli.gpu));
  const first = summaries[0]!;
  const build = Llama.build();
  const extraNotes: string[] = [];
  if (dirname(build.path) !== llamaBenchDir) {
    extraNotes.push(
      `The addon was loaded from ${relative(repoRoot, build.path)} (${build.source}), llama-bench from ${relative(repoRoot, llamaBenchDir)}: the two did not run the same libllama/libggml build.`,
    );
  }
  if (nodeLlamaCpp) {
    extraNotes.push(
      `node-llama-cpp ${nodeLlamaCpp.version} runs from ${relative(repoRoot, nodeLlamaCpp.dir)} (installed from the npm registry with its prebuilt binary package${nodeLlamaCpp.binaryPackages.length > 1 ? 's' : ''} ${nodeLlamaCpp.binaryPackages.join(', ')}; nothing downloaded at run time), ` +
        'one process per repetition, because its libllama/libggml must not share a process with ours. Its binary is its own portable build, not the one llama-bench and cuda-llama share' +
        `${nodeLlamaCppGpu?.cudaModule.source === 'cuda-llama' ? ', except for the CUDA module of its GPU rows (next note).' : '.'}`,
    );
    if (nodeLlamaCppGpu) extraNotes.push(nodeLlamaCppGpu.note);
  }
  let throttledDuring: string[] = [];
  if (telemetryStart && telemetryEnd) {
    const windows = summaries
      .flatMap((s) => [
        ...s.runs.ours.map((o, i) => ({ label: `rep ${i + 1} ${s.config.name} cuda-llama`, gpu: o.gpu })),
        ...s.runs.bench.map((b, i) => ({ label: `rep ${i + 1} ${s.config.name} llama-bench`, gpu: b.gpu })),
        ...s.runs.nodeLlamaCpp.map((b, i) => ({ label: `rep ${i + 1} ${s.config.name} node-llama-cpp`, gpu: b.gpu })),
      ])
      .filter((w): w is { label: string; gpu: GpuWindow } => w.gpu !== undefined);
    throttledDuring = throttleFindings(telemetryStart, telemetryEnd, windows);
    if (throttledDuring.length) log(`GPU THROTTLED during: ${throttledDuring.join('; ')}`);
    const partial = configs.find((c) => c.name === 'partial')!;
    extraNotes.push(
      `Configurations: cpu runs nothing on a GPU; full offloads every layer and the output layer; partial offloads ${partial.load.gpuLayers} of ${info.layerCount} repeating layers (half, rounded down) and the output layer (llama-bench -ngl ${partial.ngl}: llama.cpp counts the output layer), on all sides. Flash attention, batch and KV type are llama.cpp's defaults on all sides.`,
      `NVML was sampled every 500 ms while each GPU run was measured (per run in the JSON: samples, max temperature and power, SM clock range, throttle reasons, and the longest a sample held the event loop).`,
      `cuda-llama load time with gpu: 'cuda' includes the library's own checks: a no-alloc dry run that refuses a model that does not fit, before the load, and the placement check (layer report), after it. llama-bench reports no load time.`,
      telemetryLine('at start', telemetryStart),
      telemetryLine('at end', telemetryEnd),
      throttledDuring.length
        ? `**GPU THROTTLED** (power, thermal or hardware slowdown) during: ${throttledDuring.join('; ')}. GPU rows from this run understate the hardware; rerun on a cooler or unconstrained GPU.`
        : 'No NVML sample showed power, thermal or hardware throttling.',
    );
  }
  const notes = buildNotes(summaries, overall, cli.gpu, extraNotes);

  const dirty = git(['status', '--porcelain', '--', 'lib', 'native', 'CMakeLists.txt', 'vendor/llama.cpp.pin.json']) !== '';
  const pin = JSON.parse(await readFile(join(repoRoot, 'vendor', 'llama.cpp.pin.json'), 'utf8')) as { commit: string; tag: string };
  const machine = { ...(await machineInfo()), loadAverageStart: loadAtStart, loadAverageEnd: loadAtEnd, interference: overall };
  const fileSizeBytes = (await stat(modelPath)).size;
  const { table: coldTable, sentence: coldSentence, ...coldNumbers } = coldWarm;

  const result = {
    date: new Date().toISOString(),
    command,
    machine,
    git: { commit: git(['rev-parse', '--short', 'HEAD']), uncommittedChangesInLibOrNative: dirty },
    llamaCpp: { commit: pin.commit, tag: pin.tag, llamaBenchBuildCommit: first.runs.bench[0]!.tg.build_commit ?? null },
    node: process.version,
    build: {
      metadata: build.metadata,
      systemInfo: build.systemInfo,
      path: relative(repoRoot, build.path),
      source: build.source,
      backends: build.backends,
      cuda: build.cuda,
      cudaModule: build.cudaModule,
      cudaModuleCode: build.cudaModuleCode,
      cudaRuntime: build.cudaRuntime,
    },
    ...(nodeLlamaCpp
      ? {
          nodeLlamaCpp: {
            version: nodeLlamaCpp.version,
            binaryPackages: nodeLlamaCpp.binaryPackages,
            binary: first.nodeLlamaCpp?.binary ?? null,
            ...(nodeLlamaCppGpu ? { cudaModule: nodeLlamaCppGpu.cudaModule } : {}),
          },
        }
      : {}),
    ...(cli.gpu
      ? {
          gpu: {
            devices: Llama.devices().filter((d) => d.type === 'gpu'),
            telemetryStart,
            telemetryEnd,
            throttled: throttledDuring.length > 0,
            throttledDuring,
          },
        }
      : {}),
    model: {
      shape: cli.model,
      quantization: cli.quant,
      path: modelRel,
      fileSizeBytes,
      parameters: info.parameters,
      description: info.description,
      layerCount: info.layerCount,
      trainingContextSize: info.trainingContextSize,
    },
    settings: {
      threads: cli.threads,
      reps: cli.reps,
      sweepReps: cli.sweepReps,
      promptSizes: PROMPT_SIZES,
      generatedTokens: GEN_TOKENS,
      shortPromptTokens: SHORT_PROMPT_TOKENS,
      contextSize: CONTEXT_SIZE,
    },
    configurations: Object.fromEntries(
      summaries.map((s) => [
        s.config.name,
        {
          loadOptions: s.config.load,
          llamaBenchPlacement: { ngl: s.config.ngl, dev: s.config.dev },
          ...(s.layerReport ? { layerReport: s.layerReport } : {}),
          cudaLlama: s.cudaLlama,
          llamaBench: s.llamaBench,
          ...(s.nodeLlamaCpp ? { nodeLlamaCpp: s.nodeLlamaCpp } : {}),
          ratios: s.ratios,
        },
      ]),
    ),
    coldVersusWarm: { configuration: mainConfig.name, ...coldNumbers },
    ...(parallel ? { parallelSequences: { configuration: mainConfig.name, command: parallel.command, rows: parallel.rows } } : {}),
    ...(sweep ? { sweep: sweep.rows } : {}),
    notes,
  };

  const bench0 = first.runs.bench[0]!;
  const ctx = first.cudaLlama.contextInfo;
  const where = cli.gpu
    ? `CPU / full offload / partial offload (${configs[2]!.load.gpuLayers} of ${info.layerCount} layers and the output layer) on ${cudaBuild!.cuda.devices.join(', ')}`
    : 'CPU';
  const modelLabel = `${cli.model} ${cli.quant}`;
  const summary =
    `${modelLabel} (${modelRel}), ${where}, ${cli.threads} threads, ${cli.reps} repetition${cli.reps > 1 ? 's' : ''}; ` +
    `cuda-llama n_batch ${ctx.batchSize} / n_ubatch ${ctx.ubatchSize} / threads ${ctx.threads}+${ctx.threadsBatch} / threadpool ${ctx.threadpool}; ` +
    `llama-bench n_batch ${bench0.tg.n_batch} / n_ubatch ${bench0.tg.n_ubatch} / threads ${bench0.tg.n_threads}` +
    (first.nodeLlamaCpp
      ? `; node-llama-cpp context ${first.nodeLlamaCpp.settings.contextSize} / batch ${first.nodeLlamaCpp.settings.batchSize} / threads ${first.nodeLlamaCpp.settings.threads}`
      : '');
  const tablesText = tables(summaries, cli.gpu);
  const charts = chartSpecs(summaries, sweep, parallel, cli.gpu, modelLabel);
  const sections = (chartDir: string) => [
    `## Cold versus warm (${mainConfig.name === 'cpu' ? 'CPU' : `${mainConfig.name} offload`}, ${cli.reps} repetition${cli.reps > 1 ? 's' : ''})\n\n${coldTable}\n\n${coldSentence}`,
    ...(parallel
      ? [
          `## Parallel sequences (${mainConfig.name === 'cpu' ? 'CPU' : `${mainConfig.name} offload`}, ${cli.reps} repetition${cli.reps > 1 ? 's' : ''})\n\n${parallel.table}\n\n${parallel.sentence}\n\nllama-batched-bench, once per repetition: \`${parallel.command}\``,
        ]
      : []),
    ...(sweep
      ? [
          `## Sweeps (cuda-llama only, ${cli.sweepReps} repetition${cli.sweepReps > 1 ? 's' : ''} each, a fresh load per point)\n\n${sweep.table}`,
        ]
      : []),
    `## Charts\n\n${charts.map((c) => `![${c.spec.title}](${chartDir}${c.file})`).join('\n\n')}`,
  ];

  const json = JSON.stringify(result, null, 2);
  process.stdout.write(`${json}\n`);
  const markdown = `${summary}\n\n${tablesText}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n\n${sections('').join('\n\n')}\n`;
  process.stderr.write(`\n${markdown}`);

  await mkdir(cli.out, { recursive: true });
  await writeFile(join(cli.out, 'result.json'), `${json}\n`);
  await writeFile(join(cli.out, 'result.md'), markdown);
  for (const c of charts) await writeFile(join(cli.out, c.file), renderLineChartPng(c.spec));
  log(`wrote result.json, result.md and ${charts.map((c) => c.file).join(', ')} to ${relative(repoRoot, cli.out) || cli.out}`);
  if (cli.json) {
    await writeFile(cli.json, `${json}\n`);
    log(`wrote ${cli.json}`);
  }
  if (cli.writeDocs) {
    // The charts go to docs/ beside the overview that shows them (or next to a page named by --docs),
    // named for the platform so GPU and CPU keep their own.
    const chartDir = cli.docs === defaultDocsPath(cli.gpu) ? join(repoRoot, 'docs') : dirname(cli.docs);
    for (const c of charts) await copyFile(join(cli.out, c.file), join(chartDir, `${chartPrefix(cli.gpu)}${c.file}`));
    const prefix = `${relative(dirname(cli.docs), chartDir)}/${chartPrefix(cli.gpu)}`;
    const cudaBackend = build.backends.find((b) => b.name === 'CUDA');
    // The CUDA module's own record (the optional package has one; a module beside the addon shares the addon's).
    const cudaMetadata = build.cudaModule?.metadata ?? build.metadata;
    const doc = docPage({
      gpuMode: cli.gpu,
      date: result.date,
      machineLines: [
        `Machine: ${machine.cpu}, ${machine.logicalCpus} logical CPUs (${machine.availableParallelism} available), ${machine.ramGiB} GiB RAM`,
        ...(telemetryStart ? [gpuMachineLine(telemetryStart)] : []),
      ],
      commit: result.git.commit,
      dirty,
      llamaCpp: pin,
      buildLines: [
        `CPU backend: ${cpuBackendLine(build)}`,
        ...(cli.gpu
          ? [
              `CUDA build: architectures ${cudaMetadata?.cudaArchitectures ?? 'unknown'} (backend ARCHS ${cudaBackend?.features.ARCHS ?? 'unknown'}), ` +
                `CUDA compiler ${cudaMetadata?.cudaCompilerVersion ?? 'unknown'}; addon ${relative(repoRoot, build.path)} (${build.source}); ` +
                `CUDA module ${relative(repoRoot, build.cudaModule?.path ?? '') || 'none'} (${build.cudaModule?.source ?? 'none'})` +
                `${llamaToolEnv ? `, given to llama-bench and llama-batched-bench as GGML_BACKEND_PATH` : ''}`,
            ]
          : []),
      ],
      modelLine: `synthetic ${cli.model} shape (random weights, ${(info.parameters / 1e9).toFixed(2)} B parameters, ${info.layerCount} layers, training context ${info.trainingContextSize}), ${cli.quant}, ${(fileSizeBytes / 2 ** 20).toFixed(0)} MiB`,
      command,
      summaries,
      summary,
      tables: tablesText,
      sections: sections(prefix),
      notes,
      json,
    });
    await writeFile(cli.docs, doc);
    const shown = relative(repoRoot, cli.docs);
    log(`wrote ${shown.startsWith('..') ? cli.docs : shown} and its charts`);
  }
}

if (!existsSync(vocabPath)) fail(`${relative(repoRoot, vocabPath)} is missing: run \`npm install\` (it materializes vendor/llama.cpp)`);
await main();
