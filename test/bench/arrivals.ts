/**
 * Arrivals (issue 26): N requests arriving at seeded Poisson intervals, each a `--prompt-tokens`
 * prompt and `--gen-tokens` greedy tokens out, on N sequences: aggregate tokens per second, time to
 * first token from each request's scheduled arrival (p50, p99), time between tokens (p50, p99),
 * and generation speed while every sequence generates, against
 *
 * - node-llama-cpp: one context with N sequences (getSequence()), each request evaluated on its own
 *   sequence at the same scheduled time (sequence.evaluate), in a fresh process of its own;
 * - llama-batched-bench at -npl N with the same prompt and output lengths and window per sequence:
 *   all prompts at once, then pure decode steps, so its S_TG is the upper bound for generation.
 *
 * cuda-llama's side is concurrent model.generate() calls on a model loaded with `sequences: N`,
 * each made at its scheduled time (cuda-llama-scenarios.mjs). Every request count N gets N
 * sequences (the engine's queue never holds a request), so each count is compared with
 * llama-batched-bench at the same parallelism; 64 sequences of a 256-token window are 352 MiB of
 * f16 KV on the 1.1B shape. Rounds alternate the order of the three (forward, then reversed).
 *
 *   npx tsx test/bench/arrivals.ts [--rounds 8] [--requests 16 (CPU) | 16,64 (--gpu)] [--prompt-tokens 128] [--gen-tokens 128]
 *        [--rate 4 (CPU) | 200 (--gpu)] [--seed 1] [--threads N] [--model tinyllama1b|small|tiny|file.gguf] [--gpu]
 *        [--no-node-llama-cpp] [--out test/bench/results] [--write-docs [--docs test/bench/results/latest/arrivals.md]]
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SHORT_PROMPT_TOKENS, fail, log, positiveInteger, roundOrder } from './common.js';
import { arrivalMetrics, poissonSchedule, type ArrivalMetrics, type RequestTrace } from './arrivals-metrics.js';
import { runNodeLlamaCppScenario } from './node-llama-cpp.js';
import { runCudaLlamaChild } from './ours.js';
import { parallelPrompts, runBatchedBench } from './parallel.js';
import {
  defaultOutDir,
  latestDir,
  machineLines,
  nodeLlamaCppPlacement,
  resolveModel,
  runOursScenario,
  setUp,
  timedSide,
  interferenceLine,
  writeOutputs,
  type OtherCpu,
} from './scenarios.js';
import { medianWithInterval, stats, targetVerdict, verdictWords, type TargetVerdict } from './stats.js';

/** Issue 26's targets, at TARGET_SEQUENCES. */
const BATCHED_BENCH_TARGET = 0.95;
const NODE_LLAMA_CPP_TARGET = 1.5;
const TARGET_SEQUENCES = 16;
/** Tokens of each prompt in the excluded warm-up (every sequence at once). */
const WARM_UP_TOKENS = 32;

type Side = 'cudaLlama' | 'nodeLlamaCpp' | 'batchedBench';

interface NodeSideRun {
  traces: (RequestTrace & { eogTokens?: number })[];
  metrics: ArrivalMetrics;
}
/** cuda-llama's engineStats() over the measured requests. */
interface EngineSteps {
  steps: number;
  decodeMs: number;
  hostMs: number;
}

interface Round {
  order: Side[];
  cudaLlama: NodeSideRun & { engine: EngineSteps };
  nodeLlamaCpp?: NodeSideRun;
  batchedBench: { tg: number; pp: number };
  otherCpu: OtherCpu;
}

/**
 * A median with its interval, or why there is none: a round whose first request finished before its
 * last one began had no moment with every sequence generating (the figure is NaN there).
 */
function cell(samples: number[], digits: number): string {
  const missing = samples.filter((x) => Number.isNaN(x)).length;
  return missing > 0
    ? `— (${missing} of ${samples.length} rounds never had every sequence generating: raise --rate)`
    : medianWithInterval(samples, digits);
}

/** The figures a round gives for one count, as "above 1: cuda-llama ahead". */
function ratios(round: Round) {
  const ours = round.cudaLlama.metrics;
  const theirs = round.nodeLlamaCpp?.metrics;
  return {
    vsBatchedBench: (ours.fullOccupancyTokensPerSecond ?? NaN) / round.batchedBench.tg,
    ...(theirs
      ? {
          fullVsNodeLlamaCpp: (ours.fullOccupancyTokensPerSecond ?? NaN) / (theirs.fullOccupancyTokensPerSecond ?? NaN),
          aggregateVsNodeLlamaCpp: ours.aggregateTokensPerSecond / theirs.aggregateTokensPerSecond,
          ttftP50VsNodeLlamaCpp: theirs.ttftP50Ms / ours.ttftP50Ms,
          ttftP99VsNodeLlamaCpp: theirs.ttftP99Ms / ours.ttftP99Ms,
          tbtP99VsNodeLlamaCpp: theirs.tbtP99Ms / ours.tbtP99Ms,
        }
      : {}),
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '8' },
      requests: { type: 'string' },
      'prompt-tokens': { type: 'string', default: '128' },
      'gen-tokens': { type: 'string', default: '128' },
      rate: { type: 'string' },
      seed: { type: 'string', default: '1' },
      threads: { type: 'string' },
      model: { type: 'string' },
      gpu: { type: 'boolean', default: false },
      'no-node-llama-cpp': { type: 'boolean', default: false },
      out: { type: 'string', default: defaultOutDir },
      'write-docs': { type: 'boolean', default: false },
      docs: { type: 'string', default: join(latestDir, 'arrivals.md') },
    },
    strict: true,
  });
  const rounds = positiveInteger('--rounds', values.rounds);
  // 64 requests take several times as long as 16 per round, too long for 8 rounds on a 2-core CPU:
  // 16 only by default there, and the page says so.
  const counts = (values.requests ?? (values.gpu ? '16,64' : '16')).split(',').map((n) => positiveInteger('--requests', n));
  const promptTokens = positiveInteger('--prompt-tokens', values['prompt-tokens']);
  const genTokens = positiveInteger('--gen-tokens', values['gen-tokens']);
  const rate = Number(values.rate ?? (values.gpu ? 200 : 4));
  if (!(rate > 0)) fail(`--rate must be a positive number of requests per second, got ${values.rate}`);
  const seed = positiveInteger('--seed', values.seed);
  const threads = values.threads === undefined ? availableParallelism() : positiveInteger('--threads', values.threads);
  const withTheirs = !values['no-node-llama-cpp'];
  // The sample text the prompts are cut from is 512 tokens (cuda-llama-child.mjs's `prompts`).
  if (promptTokens > 256) fail(`--prompt-tokens must be at most 256, got ${promptTokens}`);
  // Each sequence's window holds its prompt and output, rounded up as llama.cpp rounds a context.
  const window = Math.ceil((promptTokens + genTokens) / 256) * 256;
  const model = resolveModel(values.model);
  const setup = await setUp(model.path, { gpu: values.gpu, nodeLlamaCpp: withTheirs, batchedBench: true });
  const baseLoad = { ...setup.config.load, threads };

  const { longPrompt } = await runCudaLlamaChild<{ longPrompt: number[] }>({
    kind: 'prompts',
    modelPath: model.path,
    loadOptions: { ...baseLoad, contextSize: 1024 },
    shortPrompt: SHORT_PROMPT_TOKENS,
  });
  const work = new Map(
    counts.map((n) => [n, { prompts: parallelPrompts(longPrompt, n, promptTokens), schedule: poissonSchedule(n, rate, seed) }]),
  );
  for (const [n, w] of work) log(`${n} requests: arrivals over ${(w.schedule[n - 1]! / 1000).toFixed(2)} s at ${rate}/s (seed ${seed})`);

  const sides: Side[] = withTheirs ? ['cudaLlama', 'nodeLlamaCpp', 'batchedBench'] : ['cudaLlama', 'batchedBench'];
  const done = new Map<number, Round[]>(counts.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    for (const n of counts) {
      const { prompts, schedule } = work.get(n)!;
      const order = roundOrder(sides, r);
      const round: Partial<Round> = { order, otherCpu: {} };
      for (const side of order) {
        if (side === 'cudaLlama') {
          const run = await timedSide(round.otherCpu!, side, () =>
            runOursScenario<{ traces: RequestTrace[]; engine: EngineSteps }>({
              kind: 'arrivals',
              modelPath: model.path,
              loadOptions: { ...baseLoad, contextSize: window, sequences: n },
              prompts,
              schedule,
              genTokens,
              warmUpTokens: WARM_UP_TOKENS,
            }),
          );
          round.cudaLlama = { traces: run.traces, metrics: arrivalMetrics(run.traces), engine: run.engine };
        } else if (side === 'nodeLlamaCpp') {
          const run = await timedSide(round.otherCpu!, side, () =>
            runNodeLlamaCppScenario<{ traces: RequestTrace[] }>('arrivals', {
              modelPath: model.path,
              threads,
              window,
              prompts,
              schedule,
              genTokens,
              warmUpTokens: WARM_UP_TOKENS,
              ...nodeLlamaCppPlacement(setup),
            }),
          );
          round.nodeLlamaCpp = { traces: run.traces, metrics: arrivalMetrics(run.traces) };
        } else {
          const run = await timedSide(round.otherCpu!, side, () =>
            runBatchedBench(model.path, threads, setup.config, setup.toolEnv, {
              promptTokens,
              genTokens,
              counts: [n],
              window,
            }),
          );
          round.batchedBench = { tg: run.tg[n]!, pp: run.pp[n]! };
        }
      }
      const full = round as Round;
      done.get(n)!.push(full);
      const m = (side: 'cudaLlama' | 'nodeLlamaCpp') => {
        const x = full[side]?.metrics;
        return x
          ? `${x.fullOccupancyTokensPerSecond?.toFixed(1) ?? '—'} tok/s full, ${x.aggregateTokensPerSecond.toFixed(1)} aggregate, TTFT p50 ${x.ttftP50Ms.toFixed(0)} ms`
          : '—';
      };
      log(
        `${n} requests, round ${r + 1}/${rounds}: cuda-llama ${m('cudaLlama')} | node-llama-cpp ${m('nodeLlamaCpp')} | ` +
          `llama-batched-bench S_TG ${full.batchedBench.tg.toFixed(1)} (cuda-llama / it ${ratios(full).vsBatchedBench.toFixed(3)})`,
      );
    }
  }

  const tables: string[] = [];
  const targets: { target: string; n: number; verdict: TargetVerdict | null; samples: number[] }[] = [];
  const verdictOf = (samples: number[], threshold: number) =>
    samples.some((x) => Number.isNaN(x)) ? null : targetVerdict(samples, threshold);
  const summary: object[] = [];
  for (const [n, runs] of done) {
    const per = runs.map(ratios);
    const ours = (pick: (m: ArrivalMetrics) => number | null) => runs.map((x) => pick(x.cudaLlama.metrics) ?? NaN);
    const theirs = (pick: (m: ArrivalMetrics) => number | null) => runs.map((x) => pick(x.nodeLlamaCpp!.metrics) ?? NaN);
    const fewest = (side: 'cudaLlama' | 'nodeLlamaCpp') => Math.min(...runs.flatMap((x) => x[side]?.traces.map((t) => t.tokens) ?? []));
    const stopReasons = [...new Set(runs.flatMap((x) => x.cudaLlama.traces.map((t) => t.stopReason)))].join(', ');
    const bbTg = runs.map((x) => x.batchedBench.tg);
    if (n === TARGET_SEQUENCES) {
      const vsBb = per.map((x) => x.vsBatchedBench);
      targets.push({
        target: `generation at ${n} sequences ≥ ${BATCHED_BENCH_TARGET}x llama-batched-bench's S_TG`,
        n,
        verdict: verdictOf(vsBb, BATCHED_BENCH_TARGET),
        samples: vsBb,
      });
      if (withTheirs) {
        const vsNlc = per.map((x) => x.fullVsNodeLlamaCpp!);
        targets.push({
          target: `generation at ${n} sequences ≥ ${NODE_LLAMA_CPP_TARGET}x node-llama-cpp's`,
          n,
          verdict: verdictOf(vsNlc, NODE_LLAMA_CPP_TARGET),
          samples: vsNlc,
        });
      }
    }
    const row = (label: string, pick: (m: ArrivalMetrics) => number | null, digits: number, ratio?: number[], reference = '—') =>
      `| ${label} | ${cell(ours(pick), digits)} | ${withTheirs ? `${cell(theirs(pick), digits)} | ` : ''}${reference} | ` +
      `${ratio ? cell(ratio, 3) : '—'} |`;
    tables.push(
      [
        `### ${n} requests on ${n} sequences`,
        '',
        `| metric | cuda-llama | ${withTheirs ? 'node-llama-cpp | ' : ''}llama-batched-bench | ${withTheirs ? 'cuda-llama vs node-llama-cpp, per round (above 1: cuda-llama ahead)' : '—'} |`,
        `|---|---|${withTheirs ? '---|' : ''}---|---|`,
        row(
          'generation while all sequences generate (tok/s; llama-batched-bench: S_TG)',
          (m) => m.fullOccupancyTokensPerSecond,
          1,
          withTheirs ? per.map((x) => x.fullVsNodeLlamaCpp!) : undefined,
          `${medianWithInterval(bbTg, 1)}; cuda-llama / it ${cell(
            per.map((x) => x.vsBatchedBench),
            3,
          )}`,
        ),
        row(
          'aggregate (every token, first arrival to last token; tok/s)',
          (m) => m.aggregateTokensPerSecond,
          1,
          withTheirs ? per.map((x) => x.aggregateVsNodeLlamaCpp!) : undefined,
        ),
        row(
          'time to first token p50, from the scheduled arrival (ms)',
          (m) => m.ttftP50Ms,
          1,
          withTheirs ? per.map((x) => x.ttftP50VsNodeLlamaCpp!) : undefined,
        ),
        row(
          `time to first token p99 (ms; of ${n} requests: the ${Math.ceil(0.99 * n)}th)`,
          (m) => m.ttftP99Ms,
          1,
          withTheirs ? per.map((x) => x.ttftP99VsNodeLlamaCpp!) : undefined,
        ),
        row('time between tokens p50 (ms)', (m) => m.tbtP50Ms, 2),
        row('time between tokens p99 (ms)', (m) => m.tbtP99Ms, 2, withTheirs ? per.map((x) => x.tbtP99VsNodeLlamaCpp!) : undefined),
        row('share of the run with all sequences generating', (m) => m.fullOccupancyShare, 3),
        row('latest request start after its scheduled arrival (ms)', (m) => m.maxStartDelayMs, 1),
        `| prompt processing (llama-batched-bench S_PP, tok/s) | — | ${withTheirs ? '— | ' : ''}${medianWithInterval(
          runs.map((x) => x.batchedBench.pp),
          1,
        )} | — |`,
        `| engine step: llama_decode (ms; cuda-llama's engineStats) | ${cell(
          runs.map((x) => x.cudaLlama.engine.decodeMs / x.cudaLlama.engine.steps),
          2,
        )} | ${withTheirs ? '— | ' : ''}— | — |`,
        `| engine step: host work around it (ms: sampling, detokenizing, events) | ${cell(
          runs.map((x) => x.cudaLlama.engine.hostMs / x.cudaLlama.engine.steps),
          3,
        )} | ${withTheirs ? '— | ' : ''}— | — |`,
        `| tokens per request, fewest of all rounds (asked ${genTokens}) | ${fewest('cudaLlama')} (stop reasons: ${stopReasons}) | ${withTheirs ? `${fewest('nodeLlamaCpp')} | ` : ''}${genTokens} | — |`,
      ].join('\n'),
    );
    summary.push({
      requests: n,
      cudaLlama: Object.fromEntries(
        (Object.keys(runs[0]!.cudaLlama.metrics) as (keyof ArrivalMetrics)[]).map((k) => [k, stats(ours((m) => m[k]))]),
      ),
      ...(withTheirs
        ? {
            nodeLlamaCpp: Object.fromEntries(
              (Object.keys(runs[0]!.nodeLlamaCpp!.metrics) as (keyof ArrivalMetrics)[]).map((k) => [k, stats(theirs((m) => m[k]))]),
            ),
          }
        : {}),
      batchedBench: { tg: stats(bbTg), pp: stats(runs.map((x) => x.batchedBench.pp)) },
      ratios: Object.fromEntries(Object.keys(per[0]!).map((k) => [k, stats(per.map((x) => x[k as keyof typeof x] as number))])),
    });
  }
  const targetTable = targets.length
    ? [
        '| target (issue 26) | median [95% interval] over rounds | verdict |',
        '|---|---|---|',
        ...targets.map((t) => `| ${t.target} | ${cell(t.samples, 3)} | ${t.verdict ? verdictWords(t.verdict) : 'not measured'} |`),
      ].join('\n')
    : `(no target: issue 26's targets are at ${TARGET_SEQUENCES} requests, not run)`;
  const allTables = [targetTable, ...tables].join('\n\n');

  const command = `npx tsx test/bench/arrivals.ts ${process.argv.slice(2).join(' ')}`.trim();
  const issueSizes = counts.join(',') === '16,64' && promptTokens === 128 && genTokens === 128 && model.shape === 'tinyllama1b';
  const page = [
    `# Arrivals: requests at Poisson intervals (${setup.cudaBuild ? 'full CUDA offload' : 'CPU'})`,
    '',
    'Generated by `test/bench/arrivals.ts --write-docs`.',
    `${counts.join(' and ')} requests, each a ${promptTokens}-token prompt (different slices of the sample text, the same token ids on both Node sides) and ${genTokens}`,
    `greedy tokens out, arriving at a seeded Poisson schedule of ${rate} requests per second (seed ${seed}; the first at 0), replayed identically by cuda-llama and`,
    `node-llama-cpp; N requests run on N sequences, each with a ${window}-token window; llama-batched-bench runs \`-npp ${promptTokens} -ntg ${genTokens} -npl N -c ${window}×N\`.`,
    issueSizes
      ? 'Sizes as issue 26 asks: 16 and 64 requests, 128-token prompts, 128 tokens out, the 1.1B Q4_0 shape.'
      : `**Not issue 26's sizes** (16 and 64 requests, 128 tokens in, 128 out, the 1.1B Q4_0 shape): ${counts.join(' and ')} requests, ${promptTokens} in, ${genTokens} out, model ${model.shape ?? 'given by path'}` +
        (values.requests === undefined && !values.gpu
          ? ' (64 requests left out on this CPU by default: a round of them takes several times as long as one of 16; `--requests 16,64` adds them).'
          : '.'),
    `Each of ${rounds} rounds runs the three once per count, a fresh process each, the order forward then reversed from round to round. Figures are`,
    'medians over rounds with their distribution-free 95% interval in brackets (too few rounds for one: min–max); ratios are per round, then the median.',
    'A verdict whose interval holds the target is within noise.',
    '',
    '- cuda-llama: a model loaded with `sequences: N` and a window per sequence; after an excluded warm-up (every sequence at once, the first',
    `  ${WARM_UP_TOKENS} tokens of its prompt, 2 tokens out), each request is a \`model.generate(prompt, { maxTokens, temperature: 0, cachePrompt: false, onText })\``,
    '  made at its scheduled time; each text piece is timed as onText delivers it.',
    ...(withTheirs
      ? [
          '- node-llama-cpp: one context with N sequences (`createContext({ contextSize: window, sequences: N })`, batch 512, its micro-batch',
          '  always equal to it), the same warm-up, then each request is `sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })` on',
          '  its own sequence at its scheduled time, each token timed as the iterator yields it. It generates through end-of-generation',
          '  tokens; cuda-llama stops at them (it has no ignore-EOS), so the last row gives the fewest tokens any request got on each side.',
        ]
      : []),
    '- Time to first token is from the scheduled arrival (a request made late counts against its side) to the first output reaching',
    '  JavaScript; time between tokens is every gap between consecutive outputs of a request (cuda-llama: text pieces, a piece held back',
    "  for an incomplete UTF-8 character joins the next). With 16 requests the p99 of time to first token is the slowest request's.",
    "- Generation while all sequences generate: the outputs delivered between the last request's first token and the first request's",
    '  last, per second of that window. There every step decodes one token of every sequence and no prompt, which is what',
    "  llama-batched-bench's S_TG times (all prompts first, then pure decode steps), so it is the figure held against S_TG; the aggregate",
    '  row, every token over the whole run, also pays for the prompts and the arrivals.',
    '',
    ...machineLines(setup, threads, model.path, command, true),
    interferenceLine([...done.values()].flat()),
    '',
    allTables,
    '',
    '## Rounds',
    '',
    '```json',
    JSON.stringify(
      {
        schedules: Object.fromEntries([...work].map(([n, w]) => [n, w.schedule])),
        summary,
      },
      null,
      1,
    ),
    '```',
    '',
  ].join('\n');
  const result = {
    benchmark: 'arrivals',
    sizes: { counts, promptTokens, genTokens, rate, seed, window, threads, model: model.path },
    targets: targets.map((t) => ({ target: t.target, ...(t.verdict ?? { verdict: 'not measured' }), samples: t.samples })),
    summary,
    rounds: Object.fromEntries(done),
    schedules: Object.fromEntries([...work].map(([n, w]) => [n, w.schedule])),
  };
  await writeOutputs('arrivals', result, allTables, page, values.out, values['write-docs'] ? values.docs : undefined);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
