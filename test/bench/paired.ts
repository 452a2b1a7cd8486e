/**
 * Paired rounds: cuda-llama against llama-bench on one metric at a time, and against
 * node-llama-cpp on load time and time to first token, for ratios that machine drift cannot fake.
 * compare.ts runs every program through the whole workload in turn (minutes each), so a
 * neighbour's load or a clock change can land on one program's turn and move a median by 5-10%
 * on a shared 2-core VM. Here each round measures one metric on both sides within about a
 * minute, alternating which goes first, and the figure is the median of the per-round ratios
 * (each round's mean of `--samples` against llama-bench's avg_ts over -r `--samples`).
 *
 *   npx tsx test/bench/paired.ts [--metrics pp128,pp512,tg128,startup] [--rounds 8] [--samples 3] [--threads N]
 *                                [--model file.gguf] [--write-docs [--docs docs/benchmarks-paired.md]]
 *
 * `startup` is load time and TTFT against node-llama-cpp (installed as compare.ts does). Both
 * sides are fresh processes every round with the same warm-up, on the CPU; cuda-llama's is
 * cuda-llama-child.mjs on the compiled package. The default model is the one `npm run bench` makes.
 */
import { readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { availableParallelism, cpus } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { CONTEXT_SIZE, SHORT_PROMPT_TOKENS, TARGET_RATIO, TTFT_SAMPLES, fail, git, log, repoRoot, runProgram } from './common.js';
import { compileDist, runCudaLlamaChild } from './ours.js';
import { buildLlamaBench, llamaBenchPath } from './llama-bench.js';
import { NODE_LLAMA_CPP_VERSION, ensureNodeLlamaCpp, runNodeLlamaCppStartup } from './node-llama-cpp.js';
import { stats, type Stats } from './stats.js';

interface Metric {
  name: string;
  kind: 'pp' | 'tg';
  tokens: number;
}

/** 'startup' (load time and TTFT against node-llama-cpp) or an engine metric against llama-bench. */
function parseMetric(name: string): Metric | 'startup' {
  if (name === 'startup') return name;
  const match = /^(pp|tg)(\d+)$/.exec(name);
  if (!match || Number(match[2]) < 1 || Number(match[2]) > 2048) fail(`--metrics: '${name}' is not ppN, tgN (N from 1 to 2048) or startup`);
  return { name, kind: match[1] as 'pp' | 'tg', tokens: Number(match[2]) };
}

/** cuda-llama's side of one round: cuda-llama-child.mjs in a fresh process, on dist/ under plain node. */
function runChild<T>(modelPath: string, threads: number, request: { kind: 'pp' | 'tg' | 'startup' | 'prompts'; tokens?: number; samples?: number }): Promise<T> {
  return runCudaLlamaChild<T>({ ...request, modelPath, loadOptions: { gpu: 'cpu', threads, contextSize: CONTEXT_SIZE }, shortPrompt: SHORT_PROMPT_TOKENS });
}

async function runLlamaBenchRound(modelPath: string, metric: Metric, samples: number, threads: number): Promise<number[]> {
  const args = ['-m', modelPath, '-p', metric.kind === 'pp' ? String(metric.tokens) : '0', '-n', metric.kind === 'tg' ? String(metric.tokens) : '0',
    '-t', String(threads), '-r', String(samples), '-ngl', '0', '-dev', 'none', '-o', 'json'];
  const { out } = await runProgram(llamaBenchPath, args);
  const [row] = JSON.parse(out) as { samples_ts: number[] }[];
  if (!row || row.samples_ts.length !== samples) throw new Error(`llama-bench ${args.join(' ')}: unexpected output ${out}`);
  return row.samples_ts;
}

const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;

interface MetricResult {
  metric: string;
  rounds: { first: 'cuda-llama' | 'llama-bench'; cudaLlama: number[]; llamaBench: number[]; ratio: number }[];
  ratio: Stats;
  cudaLlama: Stats;
  llamaBench: Stats;
}

interface Startup {
  loadMs: number;
  ttftMs: number;
}

/** Load time and TTFT against node-llama-cpp; ahead = node-llama-cpp's time over ours (above 1: we are faster). */
interface StartupResult {
  rounds: { first: 'cuda-llama' | 'node-llama-cpp'; cudaLlama: Startup; nodeLlamaCpp: Startup; loadAhead: number; ttftAhead: number }[];
  loadAhead: Stats;
  ttftAhead: Stats;
  cudaLlama: { loadMs: Stats; ttftMs: Stats };
  nodeLlamaCpp: { loadMs: Stats; ttftMs: Stats };
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
      metrics: { type: 'string', default: 'pp128,pp512,tg128,startup' },
      rounds: { type: 'string', default: '8' },
      samples: { type: 'string', default: '3' },
      threads: { type: 'string' },
      model: { type: 'string' },
      'write-docs': { type: 'boolean', default: false },
      docs: { type: 'string', default: join(repoRoot, 'docs', 'benchmarks-paired.md') },
    },
    strict: true,
  });
  const parsed = values.metrics.split(',').map(parseMetric);
  const metrics = parsed.filter((m): m is Metric => m !== 'startup');
  const withStartup = parsed.includes('startup');
  const rounds = Number(values.rounds);
  const samples = Number(values.samples);
  const threads = values.threads === undefined ? availableParallelism() : Number(values.threads);
  for (const [name, n] of [['--rounds', rounds], ['--samples', samples], ['--threads', threads]] as const) {
    if (!Number.isInteger(n) || n < 1) fail(`${name} must be a positive integer`);
  }
  const modelPath = values.model ?? defaultModel();
  if (metrics.length > 0) buildLlamaBench();
  compileDist();
  const nodeLlamaCpp = withStartup ? await ensureNodeLlamaCpp() : undefined;

  const results: MetricResult[] = [];
  for (const metric of metrics) {
    const done: MetricResult['rounds'] = [];
    for (let r = 0; r < rounds; r++) {
      const oursFirst = r % 2 === 0;
      let cudaLlama: number[] = [];
      let llamaBench: number[] = [];
      for (const side of oursFirst ? ['ours', 'bench'] : ['bench', 'ours']) {
        if (side === 'ours') cudaLlama = await runChild<number[]>(modelPath, threads, { kind: metric.kind, tokens: metric.tokens, samples });
        else llamaBench = await runLlamaBenchRound(modelPath, metric, samples, threads);
      }
      const ratio = mean(cudaLlama) / mean(llamaBench);
      done.push({ first: oursFirst ? 'cuda-llama' : 'llama-bench', cudaLlama, llamaBench, ratio });
      log(`${metric.name} round ${r + 1}/${rounds}: cuda-llama ${cudaLlama.map((v) => v.toFixed(1)).join(' ')} | llama-bench ${llamaBench.map((v) => v.toFixed(1)).join(' ')} | ratio ${ratio.toFixed(3)}`);
    }
    results.push({
      metric: metric.name,
      rounds: done,
      ratio: stats(done.map((x) => x.ratio)),
      cudaLlama: stats(done.flatMap((x) => x.cudaLlama)),
      llamaBench: stats(done.flatMap((x) => x.llamaBench)),
    });
  }

  let startup: StartupResult | undefined;
  if (withStartup) {
    // The same token ids on both sides, from our tokenizer for this GGUF.
    const prompts = await runChild<{ shortPrompt: number[]; longPrompt: number[] }>(modelPath, threads, { kind: 'prompts' });
    const done: StartupResult['rounds'] = [];
    for (let r = 0; r < rounds; r++) {
      const oursFirst = r % 2 === 0;
      let cudaLlama: Startup | undefined;
      let nodeLlamaCppRun: Startup | undefined;
      for (const side of oursFirst ? ['ours', 'theirs'] : ['theirs', 'ours']) {
        if (side === 'ours') cudaLlama = await runChild<Startup>(modelPath, threads, { kind: 'startup', samples: TTFT_SAMPLES });
        else nodeLlamaCppRun = await runNodeLlamaCppStartup({ modelPath, threads, contextSize: CONTEXT_SIZE, ...prompts });
      }
      const ours = cudaLlama!;
      const theirs = { loadMs: nodeLlamaCppRun!.loadMs, ttftMs: nodeLlamaCppRun!.ttftMs };
      done.push({ first: oursFirst ? 'cuda-llama' : 'node-llama-cpp', cudaLlama: ours, nodeLlamaCpp: theirs,
        loadAhead: theirs.loadMs / ours.loadMs, ttftAhead: theirs.ttftMs / ours.ttftMs });
      log(`startup round ${r + 1}/${rounds}: load cuda-llama ${ours.loadMs.toFixed(0)} ms | node-llama-cpp ${theirs.loadMs.toFixed(0)} ms; ` +
        `TTFT cuda-llama ${ours.ttftMs.toFixed(1)} ms | node-llama-cpp ${theirs.ttftMs.toFixed(1)} ms`);
    }
    startup = {
      rounds: done,
      loadAhead: stats(done.map((x) => x.loadAhead)),
      ttftAhead: stats(done.map((x) => x.ttftAhead)),
      cudaLlama: { loadMs: stats(done.map((x) => x.cudaLlama.loadMs)), ttftMs: stats(done.map((x) => x.cudaLlama.ttftMs)) },
      nodeLlamaCpp: { loadMs: stats(done.map((x) => x.nodeLlamaCpp.loadMs)), ttftMs: stats(done.map((x) => x.nodeLlamaCpp.ttftMs)) },
    };
  }

  const date = new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
  const command = `npx tsx test/bench/paired.ts ${process.argv.slice(2).join(' ')}`.trim();
  const range = (s: Stats, digits: number) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
  const tables: string[] = [];
  if (results.length > 0) {
    tables.push([
      `| metric | paired ratio cuda-llama / llama-bench, median (min–max) over ${rounds} rounds (target ≥ ${TARGET_RATIO}) | cuda-llama tok/s, median (min–max) of ${rounds * samples} | llama-bench tok/s, median (min–max) of ${rounds * samples} |`,
      '|---|---|---|---|',
      ...results.map((r) => `| ${r.metric} | ${range(r.ratio, 3)} ${r.ratio.median >= TARGET_RATIO ? 'ok' : '**below**'} | ${range(r.cudaLlama, 2)} | ${range(r.llamaBench, 2)} |`),
    ].join('\n'));
  }
  if (startup) {
    const row = (name: string, ahead: Stats, ours: Stats, theirs: Stats, digits: number) =>
      `| ${name} | ${range(ahead, 3)} ${ahead.median > 1 ? 'ahead' : '**behind**'} | ${range(ours, digits)} | ${range(theirs, digits)} |`;
    tables.push([
      `| metric | paired node-llama-cpp / cuda-llama time, median (min–max) over ${rounds} rounds (above 1: cuda-llama ahead) | cuda-llama (ms), median (min–max) | node-llama-cpp (ms), median (min–max) |`,
      '|---|---|---|---|',
      row('load time, model + context', startup.loadAhead, startup.cudaLlama.loadMs, startup.nodeLlamaCpp.loadMs, 0),
      row(`time to first token, ${SHORT_PROMPT_TOKENS}-token prompt (mean of ${TTFT_SAMPLES} per round)`, startup.ttftAhead, startup.cudaLlama.ttftMs, startup.nodeLlamaCpp.ttftMs, 1),
    ].join('\n'));
  }
  process.stdout.write(`${tables.join('\n\n')}\n`);
  if (values['write-docs']) {
    const page = [
      '# Paired rounds: cuda-llama vs llama-bench and node-llama-cpp (CPU)',
      '',
      'Generated by `test/bench/paired.ts --write-docs`. Each round measures one metric on both sides within about a minute,',
      'alternating which goes first, each side a fresh process with the same warm-up (the same test once) and then',
      `${samples} measurements; a round's ratio is the mean of cuda-llama's ${samples} over llama-bench's avg_ts of -r ${samples}.`,
      'Drift between rounds (a neighbour on the VM, a clock change) hits both sides of a round alike, which the',
      'whole-workload repetitions of [benchmarks.md](benchmarks.md) cannot promise: there one median moves by 5–10% from run to run.',
      "cuda-llama's side is `test/bench/cuda-llama-child.mjs` on the compiled package (dist/, compiled from lib/ at the start) under plain",
      'node, as a user runs it and as node-llama-cpp runs in compare.ts; a generate() without streaming, so the event loop wakes',
      'for the first token and at the end only.',
      ...(startup ? [
        '',
        `Startup rounds put cuda-llama next to node-llama-cpp ${NODE_LLAMA_CPP_VERSION} (its prebuilt CPU binary, from test/bench/.node-llama-cpp) the same way:`,
        'each side loads the model and a context (cuda-llama with warmup: false: the same work as node-llama-cpp\'s loadModel +',
        `createContext), decodes the same excluded 512-token warm-up, then times ${TTFT_SAMPLES} first-token requests of the same ${SHORT_PROMPT_TOKENS} token ids.`,
      ] : []),
      '',
      `- Date (UTC): ${date}`,
      `- Machine: ${cpus()[0]?.model ?? 'unknown'}, ${cpus().length} logical CPUs, ${threads} threads`,
      `- cuda-llama commit: ${git(['rev-parse', '--short', 'HEAD'])}`,
      `- Model: ${relative(repoRoot, modelPath)} (synthetic tinyllama1b shape, Q4_0), context ${CONTEXT_SIZE}`,
      ...(nodeLlamaCpp ? [`- node-llama-cpp: ${nodeLlamaCpp.version} (${nodeLlamaCpp.binaryPackages.join(', ')})`] : []),
      `- Command: \`${command}\``,
      '',
      tables.join('\n\n'),
      '',
      '## Rounds',
      '',
      '```json',
      JSON.stringify({ engine: results, ...(startup ? { startup } : {}) }, null, 1),
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
