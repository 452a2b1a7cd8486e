/**
 * cuda-llama against llama.cpp's own llama-bench, on the same GGUF, the same libllama/libggml
 * (llama-bench is built from our build folder), the same thread count, in the same run.
 *
 *   npx tsx test/bench/compare.ts [--model tinyllama1b|small|tiny] [--quant Q4_0|Q8_0|F16]
 *                                 [--threads N] [--reps 3] [--json out.json] [--gpu]
 *                                 [--write-docs [--docs docs/benchmarks.md]]
 *
 * --gpu: three configurations instead of the CPU alone: cpu, full offload, partial offload (half
 * the layers), each on both sides, with the layer report and NVML telemetry.
 *
 * stdout: the result as JSON. stderr: progress, then the markdown table(s).
 */
import { existsSync } from 'node:fs';
import { readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Llama, type BuildReport, type GpuTelemetry, type LoadOptions } from '../../lib/index.js';
import { ensureSyntheticModel, type SyntheticShapeName } from '../../lib/synthetic-model.js';
import { CONTEXT_SIZE, GEN_TOKENS, PROMPT_TOKENS, SHORT_PROMPT_TOKENS, cpuConfig, fail, git, gpuConfigs, isGpuConfig, log, repoRoot, type BenchConfig } from './common.js';
import { gpuMachineLine, requireCuda, telemetryLine, throttleFindings, windowNote, withGpuSamples, type GpuWindow } from './gpu.js';
import { buildLlamaBench, checkLlamaBenchDevices, llamaBenchDir, runLlamaBench } from './llama-bench.js';
import { longText, runOurs } from './ours.js';
import { buildNotes, docPage, fmt, othersNote, placementLabel, summarizeConfig, tables, type ConfigRuns } from './report.js';
import { cpuSnapshot, interference, measured } from './stats.js';

const modelsDir = join(repoRoot, 'test', '.models');
const vocabPath = join(repoRoot, 'vendor', 'llama.cpp', 'models', 'ggml-vocab-llama-spm.gguf');
const defaultDocsPath = join(repoRoot, 'docs', 'benchmarks.md');

const shapeNames = ['tinyllama1b', 'small', 'tiny'] as const satisfies readonly SyntheticShapeName[];
const quantNames = ['Q4_0', 'Q8_0', 'F16'] as const;
type Quant = (typeof quantNames)[number];

const usage = 'usage: npx tsx test/bench/compare.ts [--model tinyllama1b|small|tiny] [--quant Q4_0|Q8_0|F16] [--threads N] [--reps 3] [--json out.json] [--gpu] [--write-docs [--docs docs/benchmarks.md]]\n';

function parseCli() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'tinyllama1b' },
      quant: { type: 'string', default: 'Q4_0' },
      threads: { type: 'string' },
      reps: { type: 'string', default: '3' },
      json: { type: 'string' },
      gpu: { type: 'boolean', default: false },
      'write-docs': { type: 'boolean', default: false },
      docs: { type: 'string' },
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
  // Said now, not after a run of many minutes that then writes nothing.
  if (values.docs !== undefined && !values['write-docs']) fail('--docs names the page --write-docs writes: pass both');
  const docs = values.docs === undefined ? defaultDocsPath : resolve(values.docs);
  return { model, quant, threads, reps, json: values.json, gpu: values.gpu, writeDocs: values['write-docs'], docs };
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function prepareModel(shape: SyntheticShapeName, quant: Quant, threads: number): Promise<string> {
  log(`synthetic ${shape} F16 model (generated once, cached in ${relative(repoRoot, modelsDir)})`);
  const f16 = await ensureSyntheticModel({ cacheDir: modelsDir, shape, vocabPath, seed: 1 });
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

async function main(): Promise<void> {
  const cli = parseCli();
  const command = `npx tsx test/bench/compare.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`;
  const loadAtStart = loadavg();

  // Before the llama-bench build, the model and the CPU rows: without CUDA, --gpu has nothing to measure.
  const cudaBuild: BuildReport | undefined = cli.gpu ? await requireCuda(vocabPath) : undefined;

  buildLlamaBench();
  if (cudaBuild) checkLlamaBenchDevices(cudaBuild.cuda.devices);
  const modelPath = await prepareModel(cli.model, cli.quant, cli.threads);
  const modelRel = relative(repoRoot, modelPath);
  const loadOptionsFor = (config: BenchConfig): LoadOptions => ({ ...config.load, threads: cli.threads, contextSize: CONTEXT_SIZE });

  // Excluded from the results: brings the file into the page cache for both programs.
  log(`warm-up load of ${modelRel}`);
  const warm = await Llama.load(modelPath, loadOptionsFor(cpuConfig));
  const info = warm.info;
  let paragraphs = 4;
  let longIds = warm.tokenize(longText(paragraphs));
  while (longIds.length < PROMPT_TOKENS) longIds = warm.tokenize(longText((paragraphs *= 2)));
  await warm.dispose();
  const longPrompt = longIds.slice(0, PROMPT_TOKENS);
  const shortPrompt = longIds.slice(0, SHORT_PROMPT_TOKENS);

  const configs = cudaBuild ? gpuConfigs(info.layerCount, cudaBuild.cuda.devices) : [cpuConfig];
  const runs: ConfigRuns[] = configs.map((config) => ({ config, ours: [], bench: [] }));
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

  const telemetryStart: GpuTelemetry | undefined = cli.gpu ? Llama.telemetry() : undefined;
  if (telemetryStart) log(telemetryLine('at start', telemetryStart));
  const runsStart = await cpuSnapshot();
  for (let r = 0; r < cli.reps; r++) {
    // Alternating which one goes first cancels a steady drift (thermal, a neighbour's job
    // winding down) instead of always charging it to the same side.
    const order = r % 2 === 0 ? (['llama-bench', 'ours'] as const) : (['ours', 'llama-bench'] as const);
    for (const c of runs) {
      const label = `rep ${r + 1}/${cli.reps}${cli.gpu ? ` ${c.config.name}` : ''}`;
      const sample = cli.gpu && isGpuConfig(c.config);
      for (const which of order) {
        if (which === 'llama-bench') {
          const run = await measured(() => sampledIf(sample, () => runLlamaBench(modelPath, cli.threads, c.config)));
          c.bench.push(run);
          log(`${label} llama-bench: pp${PROMPT_TOKENS} ${fmt(run.pp.avg_ts, 2)} tok/s, tg${GEN_TOKENS} ${fmt(run.tg.avg_ts, 2)} tok/s${othersNote(run.interference)}${run.gpu ? windowNote(run.gpu) : ''}`);
        } else {
          const run = await measured(() => sampledIf(sample, () => runOurs(modelPath, loadOptionsFor(c.config), shortPrompt, longPrompt)));
          c.ours.push(run);
          log(`${label} cuda-llama:  pp${PROMPT_TOKENS} ${fmt(run.ppTokensPerSecond, 2)} tok/s, tg${GEN_TOKENS} ${fmt(run.tgTokensPerSecond, 2)} tok/s ` +
            `(${run.tgGeneratedTokens} tokens, ${run.tgStopReason}), TTFT ${fmt(run.ttftMs, 1)} ms, load ${fmt(run.loadMs, 0)} ms${othersNote(run.interference)}${run.gpu ? windowNote(run.gpu) : ''}`);
        }
      }
    }
  }
  const loadAtEnd = loadavg();
  const overall = interference(runsStart, await cpuSnapshot());
  const telemetryEnd: GpuTelemetry | undefined = cli.gpu ? Llama.telemetry() : undefined;

  const summaries = runs.map((r) => summarizeConfig(r, modelRel, cli.threads, cli.gpu));
  const first = summaries[0]!;
  const build = Llama.build();
  const extraNotes: string[] = [];
  if (dirname(build.path) !== llamaBenchDir) {
    extraNotes.push(`The addon was loaded from ${relative(repoRoot, build.path)} (${build.source}), llama-bench from ${relative(repoRoot, llamaBenchDir)}: the two did not run the same libllama/libggml build.`);
  }
  let throttledDuring: string[] = [];
  if (telemetryStart && telemetryEnd) {
    const windows = summaries.flatMap((s) => [
      ...s.runs.ours.map((o, i) => ({ label: `rep ${i + 1} ${s.config.name} cuda-llama`, gpu: o.gpu })),
      ...s.runs.bench.map((b, i) => ({ label: `rep ${i + 1} ${s.config.name} llama-bench`, gpu: b.gpu })),
    ]).filter((w): w is { label: string; gpu: GpuWindow } => w.gpu !== undefined);
    throttledDuring = throttleFindings(telemetryStart, telemetryEnd, windows);
    if (throttledDuring.length) log(`GPU THROTTLED during: ${throttledDuring.join('; ')}`);
    const partial = configs.find((c) => c.name === 'partial')!;
    extraNotes.push(
      `Configurations: cpu runs nothing on a GPU; full offloads every layer and the output layer; partial offloads ${partial.ngl} of ${info.layerCount} layers (half, rounded down) and keeps the output layer on the CPU, on both sides. Flash attention, batch and KV type are llama.cpp's defaults on both sides.`,
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

  const result = {
    date: new Date().toISOString(),
    command,
    machine,
    git: { commit: git(['rev-parse', '--short', 'HEAD']), uncommittedChangesInLibOrNative: dirty },
    llamaCpp: { commit: pin.commit, tag: pin.tag, llamaBenchBuildCommit: first.runs.bench[0]!.pp.build_commit ?? null },
    node: process.version,
    build: cli.gpu
      ? { metadata: build.metadata, systemInfo: build.systemInfo, path: relative(repoRoot, build.path), source: build.source, backends: build.backends, cuda: build.cuda, cudaRuntime: build.cudaRuntime }
      : { metadata: build.metadata, systemInfo: build.systemInfo },
    ...(cli.gpu ? {
      gpu: {
        devices: Llama.devices().filter((d) => d.type === 'gpu'),
        telemetryStart,
        telemetryEnd,
        throttled: throttledDuring.length > 0,
        throttledDuring,
      },
    } : {}),
    model: {
      shape: cli.model,
      quantization: cli.quant,
      path: modelRel,
      fileSizeBytes,
      parameters: info.parameters,
      description: info.description,
      ...(cli.gpu ? { layerCount: info.layerCount } : {}),
    },
    settings: {
      threads: cli.threads,
      reps: cli.reps,
      promptTokens: PROMPT_TOKENS,
      generatedTokens: GEN_TOKENS,
      shortPromptTokens: SHORT_PROMPT_TOKENS,
      contextSize: CONTEXT_SIZE,
    },
    ...(cli.gpu
      ? {
          configurations: Object.fromEntries(summaries.map((s) => [s.config.name, {
            loadOptions: s.config.load,
            llamaBenchPlacement: { ngl: s.config.ngl, dev: s.config.dev },
            layerReport: s.layerReport,
            cudaLlama: s.cudaLlama,
            llamaBench: s.llamaBench,
            ratios: s.ratios,
          }])),
        }
      : { cudaLlama: first.cudaLlama, llamaBench: first.llamaBench, ratios: first.ratios }),
    notes,
  };

  const bench0 = first.runs.bench[0]!;
  const ctx = first.cudaLlama.contextInfo;
  const where = cli.gpu
    ? `CPU / full offload / partial offload (${configs[2]!.ngl} of ${info.layerCount} layers) on ${cudaBuild!.cuda.devices.join(', ')}`
    : 'CPU';
  const summary = `${cli.model} ${cli.quant} (${modelRel}), ${where}, ${cli.threads} threads, ${cli.reps} repetitions; ` +
    `cuda-llama n_batch ${ctx.batchSize} / n_ubatch ${ctx.ubatchSize} / threads ${ctx.threads}+${ctx.threadsBatch} / threadpool ${ctx.threadpool}; ` +
    `llama-bench n_batch ${bench0.pp.n_batch} / n_ubatch ${bench0.pp.n_ubatch} / threads ${bench0.pp.n_threads}`;
  const tablesText = tables(summaries, cli.gpu);

  const json = JSON.stringify(result, null, 2);
  process.stdout.write(`${json}\n`);
  process.stderr.write(`\n${summary}\n\n${tablesText}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
  if (cli.json) {
    await writeFile(cli.json, `${json}\n`);
    log(`wrote ${cli.json}`);
  }
  if (cli.writeDocs) {
    const cudaBackend = build.backends.find((b) => b.name === 'CUDA');
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
        `CPU backend: ${build.metadata?.cpuFeatures ?? 'unknown features'}; ${build.systemInfo.trim().replace(/\s*\|$/, '')}`,
        ...(cli.gpu ? [`CUDA build: architectures ${build.metadata?.cudaArchitectures ?? 'unknown'} (backend ARCHS ${cudaBackend?.features.ARCHS ?? 'unknown'}), ` +
          `CUDA compiler ${build.metadata?.cudaCompilerVersion ?? 'unknown'}; addon ${relative(repoRoot, build.path)} (${build.source})`] : []),
      ],
      modelLine: `synthetic ${cli.model} shape (random weights, ${(info.parameters / 1e9).toFixed(2)} B parameters${cli.gpu ? `, ${info.layerCount} layers` : ''}), ${cli.quant}, ${(fileSizeBytes / 2 ** 20).toFixed(0)} MiB`,
      command,
      summaries,
      summary,
      tables: tablesText,
      notes,
      json,
    });
    await writeFile(cli.docs, doc);
    const shown = relative(repoRoot, cli.docs);
    log(`wrote ${shown.startsWith('..') ? cli.docs : shown}`);
  }
}

if (!existsSync(vocabPath)) fail(`${relative(repoRoot, vocabPath)} is missing: run \`npm install\` (it materializes vendor/llama.cpp)`);
await main();
