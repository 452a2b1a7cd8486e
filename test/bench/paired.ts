/**
 * Paired rounds: cuda-llama against llama-bench on one metric at a time, and against
 * node-llama-cpp on its whole workload, for ratios that machine drift cannot fake.
 * compare.ts runs every program through the whole workload in turn (minutes each), so a
 * neighbour's load or a clock change can land on one program's turn and move a median by 5-10%
 * on a shared 2-core VM. Here each round measures one metric on both sides within about a
 * minute, alternating which goes first, and the figure is the median of the per-round ratios
 * (each round's mean of `--samples` against llama-bench's avg_ts over -r `--samples`).
 *
 *   npx tsx test/bench/paired.ts [--metrics pp128,pp512,tg128,tg128-stream,parallel,node-llama-cpp] [--rounds 8] [--samples 3] [--threads N]
 *                                [--gpu] [--model file.gguf] [--write-docs [--docs test/bench/results/latest/paired.md]]
 *
 * `tgN-stream` is tgN with cuda-llama's side streaming (model.stream() in a for-await loop, timed by
 * that loop: cuda-llama-child.mjs), against the same llama-bench tgN: the single-stream target holds
 * for a caller that streams as much as for one that awaits generate().
 * `parallel` pairs compare.ts's parallel-sequences measurement (1, 4 and 16 sequences in one
 * context, parallel.ts) against llama-batched-bench, one run of each per round: a figure per count.
 * `node-llama-cpp` pairs compare.ts's workload against node-llama-cpp (installed as compare.ts
 * does): load, TTFT, pp128, pp512 and tg128, both sides in the same round. Both sides are fresh
 * processes every round with the same warm-up, on the CPU (with --gpu: full offload to every CUDA
 * device, compare.ts's 'full' placement, both sides on the CUDA module cuda-llama loads);
 * cuda-llama's is cuda-llama-child.mjs on the compiled package. The default model is the one
 * `npm run bench` makes.
 */
import { readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { availableParallelism, cpus } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import {
  CONTEXT_SIZE,
  GEN_TOKENS,
  SHORT_PROMPT_TOKENS,
  TARGET_RATIO,
  TTFT_SAMPLES,
  cpuBackendLine,
  cpuConfig,
  fail,
  fullOffloadConfig,
  git,
  log,
  ppSamples,
  repoRoot,
  runProgram,
  type BenchConfig,
} from './common.js';
import { compileDist, runCudaLlamaChild, runOurs } from './ours.js';
import { buildLlamaBench, checkLlamaBenchDevices, llamaBenchArgs, llamaBenchPath, tgArgs, toolEnv } from './llama-bench.js';
import { gpuMachineLine, requireCuda } from './gpu.js';
import { Llama, type BuildReport } from '../../lib/index.js';
import { NODE_LLAMA_CPP_VERSION, ensureNodeLlamaCpp, nodeLlamaCppGpuSetup, runNodeLlamaCpp } from './node-llama-cpp.js';
import { PARALLEL_SEQUENCES, parallelPrompts, runBatchedBench, runOursParallel } from './parallel.js';
import { intervalVerdict, stats, type Stats } from './stats.js';

interface Metric {
  name: string;
  kind: 'pp' | 'tg';
  tokens: number;
  /** tgN-stream: cuda-llama streams (its side's clock is the for-await loop's). */
  stream: boolean;
}

const NODE_LLAMA_CPP = 'node-llama-cpp';
const PARALLEL = 'parallel';

/** NODE_LLAMA_CPP (the workload against node-llama-cpp), PARALLEL (against llama-batched-bench) or an engine metric against llama-bench. */
function parseMetric(name: string): Metric | typeof NODE_LLAMA_CPP | typeof PARALLEL {
  if (name === NODE_LLAMA_CPP || name === PARALLEL) return name;
  const match = /^(pp|tg)(\d+)(-stream)?$/.exec(name);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 2048 || (match[3] !== undefined && match[1] !== 'tg'))
    fail(`--metrics: '${name}' is not ppN, tgN, tgN-stream (N from 1 to 2048), ${PARALLEL} or ${NODE_LLAMA_CPP}`);
  return { name, kind: match[1] as 'pp' | 'tg', tokens: Number(match[2]), stream: match[3] !== undefined };
}

/** The placement both sides of every round use, and the environment llama.cpp's programs need for it. */
interface Placement {
  config: BenchConfig;
  toolEnv?: NodeJS.ProcessEnv;
}

const loadOptionsFor = (placement: Placement, threads: number) => ({ ...placement.config.load, threads, contextSize: CONTEXT_SIZE });

/** cuda-llama's side of one round: cuda-llama-child.mjs in a fresh process, on dist/ under plain node. */
function runChild<T>(
  modelPath: string,
  placement: Placement,
  threads: number,
  request: { kind: 'pp' | 'tg' | 'prompts'; tokens?: number; samples?: number; stream?: boolean },
): Promise<T> {
  return runCudaLlamaChild<T>({ ...request, modelPath, loadOptions: loadOptionsFor(placement, threads), shortPrompt: SHORT_PROMPT_TOKENS });
}

async function runLlamaBenchRound(
  modelPath: string,
  placement: Placement,
  metric: Metric,
  samples: number,
  threads: number,
): Promise<number[]> {
  const tests = metric.kind === 'pp' ? ['-p', String(metric.tokens), '-n', '0'] : tgArgs(metric.tokens);
  const args = llamaBenchArgs(modelPath, tests, samples, threads, placement.config);
  const { out } = await runProgram(llamaBenchPath, args, placement.toolEnv);
  const [row] = JSON.parse(out) as { samples_ts: number[] }[];
  if (!row || row.samples_ts.length !== samples) throw new Error(`llama-bench ${args.join(' ')}: unexpected output ${out}`);
  return row.samples_ts;
}

/** Both sides' spelling of the placement, and which CUDA module llama-bench was given. */
function placementLine(placement: Placement, build: BuildReport): string {
  const module =
    placement.toolEnv && build.cudaModule
      ? `; CUDA module ${relative(repoRoot, build.cudaModule.path)}, given to llama-bench as GGML_BACKEND_PATH`
      : '';
  return `cuda-llama \`${JSON.stringify(placement.config.load)}\`, llama-bench \`-ngl ${placement.config.ngl} -dev ${placement.config.dev}\`${module}`;
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

interface MetricResult {
  metric: string;
  /** llamaBench: the reference's figures, llama-batched-bench's for the parallel rows. */
  rounds: { first: 'cuda-llama' | 'llama-bench' | 'llama-batched-bench'; cudaLlama: number[]; llamaBench: number[]; ratio: number }[];
  ratio: Stats;
  cudaLlama: Stats;
  llamaBench: Stats;
}

/** What both sides of a node-llama-cpp round report, from one process each. */
interface WorkloadFigures {
  loadMs: number;
  ttftMs: number;
  pp128: number;
  pp512: number;
  tg128: number;
}

/** The figures of a round, each as "above 1: cuda-llama ahead" (their time over ours, our speed over theirs). */
const AHEAD_KEYS = ['loadMs', 'ttftMs', 'pp128', 'pp512', 'tg128'] as const;
type AheadKey = (typeof AHEAD_KEYS)[number];
const lowerIsBetter: Record<AheadKey, boolean> = { loadMs: true, ttftMs: true, pp128: false, pp512: false, tg128: false };

interface NodeLlamaCppResult {
  rounds: {
    first: 'cuda-llama' | 'node-llama-cpp';
    cudaLlama: WorkloadFigures;
    nodeLlamaCpp: WorkloadFigures;
    ahead: Record<AheadKey, number>;
  }[];
  ahead: Record<AheadKey, Stats>;
  cudaLlama: Record<AheadKey, Stats>;
  nodeLlamaCpp: Record<AheadKey, Stats>;
}

function defaultModel(): string {
  const dir = join(repoRoot, 'test', '.models');
  let file: string | undefined;
  try {
    file = readdirSync(dir).find((f) => f.startsWith('tinyllama1b-ctx32k-') && f.endsWith('-q4_0.gguf'));
  } catch {
    // no models yet
  }
  if (!file) fail('no test/.models/tinyllama1b-ctx32k-*-q4_0.gguf: run `npm run bench` once (it makes that model), or pass --model');
  return join(dir, file);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      metrics: { type: 'string', default: `pp128,pp512,tg128,${NODE_LLAMA_CPP}` },
      rounds: { type: 'string', default: '8' },
      samples: { type: 'string', default: '3' },
      threads: { type: 'string' },
      gpu: { type: 'boolean', default: false },
      model: { type: 'string' },
      'write-docs': { type: 'boolean', default: false },
      docs: { type: 'string', default: join(repoRoot, 'test', 'bench', 'results', 'latest', 'paired.md') },
    },
    strict: true,
  });
  const parsed = values.metrics.split(',').map(parseMetric);
  const metrics = parsed.filter((m): m is Metric => typeof m === 'object');
  const withNodeLlamaCpp = parsed.includes(NODE_LLAMA_CPP);
  const withParallel = parsed.includes(PARALLEL);
  const rounds = Number(values.rounds);
  const samples = Number(values.samples);
  const threads = values.threads === undefined ? availableParallelism() : Number(values.threads);
  for (const [name, n] of [
    ['--rounds', rounds],
    ['--samples', samples],
    ['--threads', threads],
  ] as const) {
    if (!Number.isInteger(n) || n < 1) fail(`${name} must be a positive integer`);
  }
  const modelPath = values.model ?? defaultModel();
  // Without CUDA, --gpu stops here with the library's reason and remedy.
  const cudaBuild = values.gpu ? await requireCuda(modelPath) : undefined;
  const placement: Placement = cudaBuild
    ? { config: fullOffloadConfig(cudaBuild.cuda.devices), toolEnv: toolEnv(cudaBuild) }
    : { config: cpuConfig };
  const withLlamaCppTools = metrics.length > 0 || withParallel;
  if (withLlamaCppTools) buildLlamaBench();
  if (withLlamaCppTools && cudaBuild) checkLlamaBenchDevices(cudaBuild.cuda.devices, placement.toolEnv);
  compileDist();
  const nodeLlamaCpp = withNodeLlamaCpp ? await ensureNodeLlamaCpp({ cuda: values.gpu }) : undefined;
  const nodeLlamaCppGpu = nodeLlamaCpp && cudaBuild ? nodeLlamaCppGpuSetup(cudaBuild, Llama.telemetry()) : undefined;
  if (nodeLlamaCppGpu) log(nodeLlamaCppGpu.note);

  const results: MetricResult[] = [];
  for (const metric of metrics) {
    const done: MetricResult['rounds'] = [];
    for (let r = 0; r < rounds; r++) {
      const oursFirst = r % 2 === 0;
      let cudaLlama: number[] = [];
      let llamaBench: number[] = [];
      for (const side of oursFirst ? ['ours', 'bench'] : ['bench', 'ours']) {
        if (side === 'ours')
          cudaLlama = await runChild<number[]>(modelPath, placement, threads, {
            kind: metric.kind,
            tokens: metric.tokens,
            samples,
            stream: metric.stream,
          });
        else llamaBench = await runLlamaBenchRound(modelPath, placement, metric, samples, threads);
      }
      const ratio = mean(cudaLlama) / mean(llamaBench);
      done.push({ first: oursFirst ? 'cuda-llama' : 'llama-bench', cudaLlama, llamaBench, ratio });
      log(
        `${metric.name} round ${r + 1}/${rounds}: cuda-llama ${cudaLlama.map((v) => v.toFixed(1)).join(' ')} | llama-bench ${llamaBench.map((v) => v.toFixed(1)).join(' ')} | ratio ${ratio.toFixed(3)}`,
      );
    }
    results.push({
      metric: metric.name,
      rounds: done,
      ratio: stats(done.map((x) => x.ratio)),
      cudaLlama: stats(done.flatMap((x) => x.cudaLlama)),
      llamaBench: stats(done.flatMap((x) => x.llamaBench)),
    });
  }

  if (withParallel) {
    // The prompts compare.ts gives both sides: slices of the sample text, from our tokenizer.
    const { longPrompt } = await runChild<{ longPrompt: number[] }>(modelPath, placement, threads, { kind: 'prompts' });
    const prompts = parallelPrompts(longPrompt);
    const done = new Map<number, MetricResult['rounds']>(PARALLEL_SEQUENCES.map((n) => [n, []]));
    for (let r = 0; r < rounds; r++) {
      const oursFirst = r % 2 === 0;
      let ours: Record<number, number> = {};
      let theirs: Record<number, number> = {};
      for (const side of oursFirst ? ['ours', 'bench'] : ['bench', 'ours']) {
        if (side === 'ours') ours = (await runOursParallel(modelPath, loadOptionsFor(placement, threads), prompts)).tg;
        else theirs = (await runBatchedBench(modelPath, threads, placement.config, placement.toolEnv)).tg;
      }
      for (const n of PARALLEL_SEQUENCES) {
        done.get(n)!.push({
          first: oursFirst ? 'cuda-llama' : 'llama-batched-bench',
          cudaLlama: [ours[n]!],
          llamaBench: [theirs[n]!],
          ratio: ours[n]! / theirs[n]!,
        });
      }
      log(
        `parallel round ${r + 1}/${rounds}: aggregate tg, cuda-llama | llama-batched-bench: ` +
          PARALLEL_SEQUENCES.map(
            (n) => `${n}: ${ours[n]!.toFixed(1)} | ${theirs[n]!.toFixed(1)} (${(ours[n]! / theirs[n]!).toFixed(3)})`,
          ).join(', '),
      );
    }
    for (const [n, metricRounds] of done) {
      results.push({
        metric: `parallel ${n} (vs llama-batched-bench)`,
        rounds: metricRounds,
        ratio: stats(metricRounds.map((x) => x.ratio)),
        cudaLlama: stats(metricRounds.flatMap((x) => x.cudaLlama)),
        llamaBench: stats(metricRounds.flatMap((x) => x.llamaBench)),
      });
    }
  }

  let versus: NodeLlamaCppResult | undefined;
  if (withNodeLlamaCpp) {
    // The same token ids on both sides, from our tokenizer for this GGUF.
    const prompts = await runChild<{ shortPrompt: number[]; longPrompt: number[] }>(modelPath, placement, threads, { kind: 'prompts' });
    const promptSizes = [128, 512];
    if (prompts.longPrompt.length !== 512) throw new Error(`expected a 512-token long prompt, got ${prompts.longPrompt.length}`);
    const done: NodeLlamaCppResult['rounds'] = [];
    for (let r = 0; r < rounds; r++) {
      const oursFirst = r % 2 === 0;
      let cudaLlama: WorkloadFigures | undefined;
      let theirs: WorkloadFigures | undefined;
      for (const side of oursFirst ? ['ours', 'theirs'] : ['theirs', 'ours']) {
        // compare.ts's workload on both sides (its definitions: ours.ts, node-llama-cpp.ts), pp128 and pp512 only.
        const run =
          side === 'ours'
            ? await runOurs(modelPath, loadOptionsFor(placement, threads), { ...prompts, promptSizes })
            : await runNodeLlamaCpp({
                modelPath,
                threads,
                contextSize: CONTEXT_SIZE,
                ...prompts,
                promptSizes,
                genTokens: GEN_TOKENS,
                ...(nodeLlamaCppGpu ? { gpu: 'cuda', gpuLayers: 'max', cudaLibraryDirs: nodeLlamaCppGpu.cudaLibraryDirs } : { gpu: false }),
              });
        const figures = { loadMs: run.loadMs, ttftMs: run.ttftMs, pp128: run.pp[128]!, pp512: run.pp[512]!, tg128: run.tgTokensPerSecond };
        if (side === 'ours') cudaLlama = figures;
        else theirs = figures;
      }
      const ours = cudaLlama!;
      const other = theirs!;
      const ahead = Object.fromEntries(AHEAD_KEYS.map((k) => [k, lowerIsBetter[k] ? other[k] / ours[k] : ours[k] / other[k]])) as Record<
        AheadKey,
        number
      >;
      done.push({ first: oursFirst ? 'cuda-llama' : 'node-llama-cpp', cudaLlama: ours, nodeLlamaCpp: other, ahead });
      log(
        `node-llama-cpp round ${r + 1}/${rounds}: ` +
          AHEAD_KEYS.map((k) => `${k} ${ours[k].toFixed(1)} | ${other[k].toFixed(1)}`).join('; ') +
          ` (cuda-llama | node-llama-cpp; ahead ${AHEAD_KEYS.map((k) => ahead[k].toFixed(3)).join('/')})`,
      );
    }
    const per = (pick: (round: NodeLlamaCppResult['rounds'][number], k: AheadKey) => number) =>
      Object.fromEntries(AHEAD_KEYS.map((k) => [k, stats(done.map((round) => pick(round, k)))])) as Record<AheadKey, Stats>;
    versus = {
      rounds: done,
      ahead: per((x, k) => x.ahead[k]),
      cudaLlama: per((x, k) => x.cudaLlama[k]),
      nodeLlamaCpp: per((x, k) => x.nodeLlamaCpp[k]),
    };
  }

  const date = new Date()
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, '');
  const command = `npx tsx test/bench/paired.ts ${process.argv.slice(2).join(' ')}`.trim();
  const range = (s: Stats, digits: number) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
  const tables: string[] = [];
  if (results.length > 0) {
    tables.push(
      [
        `| metric | paired ratio cuda-llama / reference, median (min–max) over ${rounds} rounds (target ≥ ${TARGET_RATIO}) | 95% interval of the median ratio | cuda-llama tok/s, median (min–max) | reference tok/s (llama-bench; llama-batched-bench for parallel), median (min–max) |`,
        '|---|---|---|---|---|',
        ...results.map(
          (r) =>
            `| ${r.metric} | ${range(r.ratio, 3)} ${r.ratio.median >= TARGET_RATIO ? 'ok' : '**below**'} | ${intervalVerdict(r.ratio.samples, TARGET_RATIO)} | ` +
            `${range(r.cudaLlama, 2)} of ${r.cudaLlama.samples.length} | ${range(r.llamaBench, 2)} of ${r.llamaBench.samples.length} |`,
        ),
      ].join('\n'),
    );
  }
  if (versus) {
    const labels: Record<AheadKey, [string, number]> = {
      loadMs: ['load time, model + context (ms)', 0],
      ttftMs: [`time to first token, ${SHORT_PROMPT_TOKENS}-token prompt, mean of ${TTFT_SAMPLES} (ms)`, 1],
      pp128: [`prompt processing pp128, mean of ${ppSamples(128)} (tok/s)`, 2],
      pp512: [`prompt processing pp512, mean of ${ppSamples(512)} (tok/s)`, 2],
      tg128: [`generation tg${GEN_TOKENS} (tok/s)`, 2],
    };
    tables.push(
      [
        `| metric | paired cuda-llama vs node-llama-cpp, median (min–max) over ${rounds} rounds (above 1: cuda-llama ahead) | 95% interval of the median | cuda-llama, median (min–max) | node-llama-cpp, median (min–max) |`,
        '|---|---|---|---|---|',
        ...AHEAD_KEYS.map(
          (k) =>
            `| ${labels[k][0]} | ${range(versus.ahead[k], 3)} ${versus.ahead[k].median >= 1 ? 'ahead' : '**behind**'} | ${intervalVerdict(versus.ahead[k].samples, 1)} | ` +
            `${range(versus.cudaLlama[k], labels[k][1])} | ${range(versus.nodeLlamaCpp[k], labels[k][1])} |`,
        ),
      ].join('\n'),
    );
  }
  process.stdout.write(`${tables.join('\n\n')}\n`);
  if (values['write-docs']) {
    const page = [
      `# Paired rounds: cuda-llama vs ${[...(metrics.length > 0 ? ['llama-bench'] : []), ...(withParallel ? ['llama-batched-bench'] : []), ...(versus ? ['node-llama-cpp'] : [])].join(', ')} (${cudaBuild ? 'full CUDA offload' : 'CPU'})`,
      '',
      'Generated by `test/bench/paired.ts --write-docs`. Each round measures both sides within a minute or two,',
      'alternating which goes first, each side a fresh process.',
      ...(results.length > 0
        ? [
            'Against llama-bench a round is one metric: each side does the same warm-up (the same test once) and then',
            `${samples} measurements; a round's ratio is the mean of cuda-llama's ${samples} over llama-bench's avg_ts of -r ${samples}.`,
            `cuda-llama generates after a ${SHORT_PROMPT_TOKENS}-token prompt, so llama-bench's tg runs at the same depth (-d ${SHORT_PROMPT_TOKENS}, excluded from its time):`,
            'both sides attend over the same KV cells.',
          ]
        : []),
      ...(withParallel
        ? [
            "A parallel round runs compare.ts's parallel-sequences measurement once on each side: generateBatch() with 1, 4 and 16 prompts in one",
            'context (cuda-llama-child.mjs) and llama-batched-bench on the same context shape; its ratio per count is the aggregate tg of one over the other.',
          ]
        : []),
      'Drift between rounds (a neighbour on the VM, a clock change) hits both sides of a round alike, which the',
      'whole-workload repetitions of [benchmarks.md](benchmarks.md) cannot promise: there one median moves by 5–10% from run to run.',
      'The verdicts (ok/below, ahead/behind) read the median. The interval beside each is the distribution-free 95% interval of',
      "that median (two of the sorted round ratios, chosen by the binomial distribution; no assumption about the noise's shape):",
      'where it holds the threshold, the rounds cannot tell the two sides apart at that threshold, and the verdict is within this',
      "machine's noise; more rounds narrow it.",
      "cuda-llama's side is `test/bench/cuda-llama-child.mjs` on the compiled package (dist/, compiled from lib/ at the start) under plain",
      'node, as a user runs it and as node-llama-cpp runs in compare.ts; a generate() without streaming, so the event loop wakes',
      'for the first token and at the end only, and timed by the decoding thread; a `-stream` metric (tg128-stream) streams instead,',
      'model.stream() in a for-await loop, and is timed by that loop as the pieces reach it, against the same llama-bench run.',
      ...(versus
        ? [
            '',
            `Rounds against node-llama-cpp ${NODE_LLAMA_CPP_VERSION} (its prebuilt ${nodeLlamaCppGpu?.cudaModule.source === 'cuda-llama' ? "CUDA binary with cuda-llama's CUDA module in place of its own, as said below" : cudaBuild ? 'CUDA binary' : 'CPU binary'}, from test/bench/.node-llama-cpp) pair compare.ts's workload the same way:`,
            "each side loads the model and a context (cuda-llama with warmup: false: the same work as node-llama-cpp's loadModel +",
            `createContext), decodes the same excluded 512-token warm-up, then times ${TTFT_SAMPLES} first-token requests of the same ${SHORT_PROMPT_TOKENS} token ids,`,
            `pp128 and pp512 (${ppSamples(128)} and ${ppSamples(512)} decodes each, the mean) and tg${GEN_TOKENS}, each side in a process of its own, and a round's figure is`,
            "node-llama-cpp's time over ours (load, TTFT) or our speed over theirs (pp, tg).",
          ]
        : []),
      '',
      `- Date (UTC): ${date}`,
      `- Machine: ${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} logical CPUs, ${threads} threads`,
      // The same VM name can sit on different hosts from one day to the next (one moved from AVX2
      // to AVX-512 between two runs here): the features say which kernels both sides ran. Read
      // here, after the rounds: on the CPU the orchestrator has not loaded the addon before this.
      `- CPU backend: ${cpuBackendLine(Llama.build())}`,
      ...(cudaBuild ? [`- ${gpuMachineLine(Llama.telemetry())}`, `- Placement: ${placementLine(placement, cudaBuild)}`] : []),
      `- cuda-llama commit: ${git(['rev-parse', '--short', 'HEAD'])}`,
      `- Model: ${relative(repoRoot, modelPath)}${values.model === undefined ? ' (synthetic tinyllama1b shape, Q4_0)' : ''}, context ${CONTEXT_SIZE}`,
      ...(nodeLlamaCpp ? [`- node-llama-cpp: ${nodeLlamaCpp.version} (${nodeLlamaCpp.binaryPackages.join(', ')})`] : []),
      ...(nodeLlamaCppGpu ? [`- ${nodeLlamaCppGpu.note}`] : []),
      `- Command: \`${command}\``,
      '',
      tables.join('\n\n'),
      '',
      '## Rounds',
      '',
      '```json',
      JSON.stringify({ engine: results, ...(versus ? { nodeLlamaCpp: versus } : {}) }, null, 1),
      '```',
      '',
    ].join('\n');
    await writeFile(values.docs, page);
    log(`wrote ${relative(repoRoot, values.docs)}`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
