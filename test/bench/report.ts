/** From measured runs to numbers, markdown tables, notes and the docs page. */
import type { LayerReport } from '../../lib/index.js';
import {
  CONTEXT_SIZE,
  GEN_TOKENS,
  PROMPT_SIZES,
  PROMPT_TOKENS,
  SHORT_PROMPT_TOKENS,
  TARGET_RATIO,
  TTFT_SAMPLES,
  ppSamples,
  isGpuConfig,
  type BenchConfig,
  type SweepPoint,
} from './common.js';
import type { GpuWindow } from './gpu.js';
import { llamaBenchInvocations, type LlamaBenchRun } from './llama-bench.js';
import type { NodeLlamaCppParallelRun, NodeLlamaCppRun } from './node-llama-cpp.js';
import { COLD_REQUEST_TOKENS, type ColdWarmRun, type OursRun } from './ours.js';
import {
  PARALLEL_GEN_TOKENS,
  PARALLEL_PROMPT_TOKENS,
  PARALLEL_SEQUENCES,
  PARALLEL_WINDOW,
  batchedBenchArgs,
  type OursParallelRun,
  type ParallelRun,
} from './parallel.js';
import { intervalVerdict, spread, stats, type Interference, type Measured, type Stats } from './stats.js';

export function fmt(value: number, digits: number): string {
  return value.toFixed(digits);
}

export function pct(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

export function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

export function othersNote(i: Interference | null): string {
  return i ? `; other processes ${pct(i.otherProcesses)}, steal ${pct(i.steal)}` : '';
}

function cell(s: Stats | undefined, digits: number): string {
  if (!s) return '—';
  return s.samples.length === 1 ? fmt(s.median, digits) : `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

/**
 * The interval of a median ratio, when there are per-repetition ratios to take it from: whether
 * a verdict is settled or within the machine's noise is part of reading it.
 */
function intervalNote(samples: number[] | undefined, threshold: number): string {
  return samples ? `; 95% interval ${intervalVerdict(samples, threshold)}` : '';
}

/** Ours against llama-bench: the same engine, so anything under the target is overhead of ours. */
function ratioCell(ratio: number | undefined, samples?: number[]): string {
  if (ratio === undefined) return '—';
  return `${ratio.toFixed(3)} ${ratio >= TARGET_RATIO ? 'ok' : `**below ${TARGET_RATIO}**`}${intervalNote(samples, TARGET_RATIO)}`;
}

/** Ours against node-llama-cpp, as "how many times better": above 1 we are ahead. */
function aheadCell(factor: number | undefined, samples?: number[]): string {
  if (factor === undefined) return '—';
  return `${factor.toFixed(2)}x ${factor >= 1 ? 'ahead' : '**behind**'}${intervalNote(samples, 1)}`;
}

/** a[i] / b[i] for each repetition i (the two measured in the same repetition). */
export function perRepetitionRatios(a: number[], b: number[]): number[] {
  if (a.length !== b.length || a.length === 0) throw new RangeError(`paired ratio of ${a.length} and ${b.length} values`);
  return a.map((x, i) => x / b[i]!);
}

export type Sampled<T> = Measured<T> & { gpu?: GpuWindow };

/** Everything measured for one configuration. */
export interface ConfigRuns {
  config: BenchConfig;
  ours: Sampled<OursRun>[];
  bench: Sampled<LlamaBenchRun>[];
  nodeLlamaCpp: Sampled<NodeLlamaCppRun>[];
  /** From the excluded warm-up load; only with --gpu. */
  layerReport?: LayerReport;
}

export type ConfigSummary = ReturnType<typeof summarizeConfig>;

const ppKey = (n: number) => `pp${n}`;

/** `gpuMode` adds the placement and NVML fields. */
export function summarizeConfig(runs: ConfigRuns, modelPath: string, threads: number, gpuMode: boolean) {
  const { config, ours, bench, nodeLlamaCpp } = runs;
  const sampled = gpuMode && isGpuConfig(config);
  const oursPp = Object.fromEntries(PROMPT_SIZES.map((n) => [ppKey(n), stats(ours.map((o) => o.pp[n]!))]));
  const benchPp = Object.fromEntries(PROMPT_SIZES.map((n) => [ppKey(n), stats(bench.map((b) => b.pp[n].avg_ts))]));
  const nlcPp = nodeLlamaCpp.length
    ? Object.fromEntries(PROMPT_SIZES.map((n) => [ppKey(n), stats(nodeLlamaCpp.map((r) => r.pp[n]!))]))
    : undefined;
  const tgCounts = [...new Set(ours.map((o) => o.tgGeneratedTokens))];
  const first = bench[0]!;

  const cudaLlama = {
    contextInfo: ours[0]!.contextInfo,
    loadMs: stats(ours.map((o) => o.loadMs)),
    warmupMs: stats(ours.map((o) => o.warmupMs)),
    timeToFirstTokenMs: stats(ours.map((o) => o.ttftMs)),
    ppTokensPerSecond: oursPp,
    tg128TokensPerSecond: stats(ours.map((o) => o.tgTokensPerSecond)),
    tg128GeneratedTokens: ours.map((o) => o.tgGeneratedTokens),
    tg128StopReasons: ours.map((o) => o.tgStopReason),
    interference: ours.map((o) => o.interference),
    ...(sampled ? { gpu: ours.map((o) => o.gpu ?? null) } : {}),
  };
  const llamaBench = {
    command: llamaBenchInvocations(modelPath, threads, config)
      .map((args) => `build/Release/llama-bench ${args.join(' ')}`)
      .join(' && '),
    nBatch: first.tg.n_batch,
    nUbatch: first.tg.n_ubatch,
    nThreads: first.tg.n_threads,
    flashAttn: first.tg.flash_attn ?? null,
    typeK: first.tg.type_k ?? null,
    ...(gpuMode
      ? {
          nGpuLayers: first.tg.n_gpu_layers,
          devices: first.tg.devices,
          backends: first.tg.backends ?? null,
          gpuInfo: first.tg.gpu_info ?? null,
        }
      : {}),
    ppTokensPerSecond: benchPp,
    tg128TokensPerSecond: stats(bench.map((b) => b.tg.avg_ts)),
    interference: bench.map((b) => b.interference),
    ...(sampled ? { gpu: bench.map((b) => b.gpu ?? null) } : {}),
  };
  const nodeLlama = nodeLlamaCpp.length
    ? {
        binary: nodeLlamaCpp[0]!.binary,
        settings: {
          contextSize: nodeLlamaCpp[0]!.contextSize,
          threads: nodeLlamaCpp[0]!.threads,
          batchSize: nodeLlamaCpp[0]!.batchSize,
          flashAttention: nodeLlamaCpp[0]!.flashAttention,
        },
        bindingLoadMs: stats(nodeLlamaCpp.map((r) => r.bindingLoadMs)),
        loadMs: stats(nodeLlamaCpp.map((r) => r.loadMs)),
        timeToFirstTokenMs: stats(nodeLlamaCpp.map((r) => r.ttftMs)),
        ppTokensPerSecond: nlcPp!,
        tg128TokensPerSecond: stats(nodeLlamaCpp.map((r) => r.tgTokensPerSecond)),
        tg128GeneratedTokens: nodeLlamaCpp.map((r) => r.tgGeneratedTokens),
        interference: nodeLlamaCpp.map((r) => r.interference),
        ...(sampled ? { gpu: nodeLlamaCpp.map((r) => r.gpu ?? null) } : {}),
      }
    : undefined;

  // Each ratio is the median of the per-repetition ratios: a repetition runs the programs back to
  // back, so drift between repetitions (minutes apart on a shared VM) divides out.
  const perRepVsLlamaBench: Record<string, number[]> = {};
  for (const n of PROMPT_SIZES)
    perRepVsLlamaBench[ppKey(n)] = perRepetitionRatios(
      ours.map((o) => o.pp[n]!),
      bench.map((b) => b.pp[n].avg_ts),
    );
  perRepVsLlamaBench[`tg${GEN_TOKENS}`] = perRepetitionRatios(
    ours.map((o) => o.tgTokensPerSecond),
    bench.map((b) => b.tg.avg_ts),
  );
  // Times: theirs / ours; throughput: ours / theirs. Either way above 1 means we are ahead.
  const perRepVsNodeLlamaCpp: Record<string, number[]> | undefined = nodeLlama
    ? {
        loadMs: perRepetitionRatios(
          nodeLlamaCpp.map((r) => r.loadMs),
          ours.map((o) => o.loadMs),
        ),
        timeToFirstTokenMs: perRepetitionRatios(
          nodeLlamaCpp.map((r) => r.ttftMs),
          ours.map((o) => o.ttftMs),
        ),
        ...Object.fromEntries(
          PROMPT_SIZES.map((n) => [
            ppKey(n),
            perRepetitionRatios(
              ours.map((o) => o.pp[n]!),
              nodeLlamaCpp.map((r) => r.pp[n]!),
            ),
          ]),
        ),
        [`tg${GEN_TOKENS}`]: perRepetitionRatios(
          ours.map((o) => o.tgTokensPerSecond),
          nodeLlamaCpp.map((r) => r.tgTokensPerSecond),
        ),
      }
    : undefined;
  const medians = (perRep: Record<string, number[]>) => Object.fromEntries(Object.entries(perRep).map(([k, v]) => [k, stats(v).median]));
  const vsLlamaBench = medians(perRepVsLlamaBench);
  const vsNodeLlamaCpp = perRepVsNodeLlamaCpp ? medians(perRepVsNodeLlamaCpp) : undefined;
  const ratios = {
    vsLlamaBench,
    targetVsLlamaBench: TARGET_RATIO,
    ...(vsNodeLlamaCpp ? { vsNodeLlamaCpp } : {}),
    perRepetition: { vsLlamaBench: perRepVsLlamaBench, ...(perRepVsNodeLlamaCpp ? { vsNodeLlamaCpp: perRepVsNodeLlamaCpp } : {}) },
  };

  const nlcCol = (s: Stats | undefined, digits: number) => (nodeLlama ? ` ${cell(s, digits)} |` : '');
  const aheadCol = (key: string) => (vsNodeLlamaCpp ? ` ${aheadCell(vsNodeLlamaCpp[key], perRepVsNodeLlamaCpp![key])} |` : '');
  const table = [
    `| metric | cuda-llama median (min–max) | llama-bench median (min–max) |${nodeLlama ? ' node-llama-cpp median (min–max) |' : ''} cuda-llama / llama-bench (target ≥ ${TARGET_RATIO}) |${nodeLlama ? ' cuda-llama vs node-llama-cpp |' : ''}`,
    `|---|---|---|${nodeLlama ? '---|' : ''}---|${nodeLlama ? '---|' : ''}`,
    `| load time, model + context (ms) | ${cell(cudaLlama.loadMs, 0)} | — |${nlcCol(nodeLlama?.loadMs, 0)} — |${aheadCol('loadMs')}`,
    `| time to first token, ${SHORT_PROMPT_TOKENS}-token prompt, ${CONTEXT_SIZE} context (ms) | ${cell(cudaLlama.timeToFirstTokenMs, 1)} | — (no TTFT measurement) |${nlcCol(nodeLlama?.timeToFirstTokenMs, 1)} — |${aheadCol('timeToFirstTokenMs')}`,
    ...PROMPT_SIZES.map(
      (n) =>
        `| prompt processing pp${n} (tok/s) | ${cell(oursPp[ppKey(n)], 2)} | ${cell(benchPp[ppKey(n)], 2)} |${nlcCol(nlcPp?.[ppKey(n)], 2)} ${ratioCell(vsLlamaBench[ppKey(n)], perRepVsLlamaBench[ppKey(n)])} |${aheadCol(ppKey(n))}`,
    ),
    `| generation tg${GEN_TOKENS} (tok/s) | ${cell(cudaLlama.tg128TokensPerSecond, 2)}${tgCounts.some((n) => n < GEN_TOKENS) ? ` (${tgCounts.join('/')} tokens)` : ''} | ${cell(llamaBench.tg128TokensPerSecond, 2)} |${nlcCol(nodeLlama?.tg128TokensPerSecond, 2)} ${ratioCell(vsLlamaBench[`tg${GEN_TOKENS}`], perRepVsLlamaBench[`tg${GEN_TOKENS}`])} |${aheadCol(`tg${GEN_TOKENS}`)}`,
  ].join('\n');

  return { config, layerReport: runs.layerReport, cudaLlama, llamaBench, nodeLlamaCpp: nodeLlama, ratios, table, tgCounts, runs };
}

/** How cuda-llama and llama-bench were told to place the model. */
export function placementLabel(config: BenchConfig): string {
  const layers = config.load.gpuLayers;
  const gpuLayers = layers === undefined ? '' : `, gpuLayers: ${typeof layers === 'number' ? layers : `'${layers}'`}`;
  return `gpu: '${config.load.gpu}'${gpuLayers} / -ngl ${config.ngl} -dev ${config.dev}`;
}

/** One row per configuration, for reading the GPU placements side by side. */
export function overviewTable(summaries: ConfigSummary[]): string {
  return [
    `| configuration | cuda-llama / llama-bench placement | layer report | pp${PROMPT_TOKENS} cuda-llama | pp${PROMPT_TOKENS} llama-bench | ratio | tg${GEN_TOKENS} cuda-llama | tg${GEN_TOKENS} llama-bench | ratio |`,
    '|---|---|---|---|---|---|---|---|---|',
    ...summaries.map(
      (s) =>
        `| ${s.config.name} | ${placementLabel(s.config)} | ${s.layerReport?.summary ?? '—'} | ` +
        `${fmt(s.cudaLlama.ppTokensPerSecond[ppKey(PROMPT_TOKENS)]!.median, 2)} | ${fmt(s.llamaBench.ppTokensPerSecond[ppKey(PROMPT_TOKENS)]!.median, 2)} | ${ratioCell(s.ratios.vsLlamaBench[ppKey(PROMPT_TOKENS)], s.ratios.perRepetition.vsLlamaBench[ppKey(PROMPT_TOKENS)])} | ` +
        `${fmt(s.cudaLlama.tg128TokensPerSecond.median, 2)} | ${fmt(s.llamaBench.tg128TokensPerSecond.median, 2)} | ${ratioCell(s.ratios.vsLlamaBench[`tg${GEN_TOKENS}`], s.ratios.perRepetition.vsLlamaBench[`tg${GEN_TOKENS}`])} |`,
    ),
  ].join('\n');
}

/** Markdown for the configurations: the single table without --gpu, else an overview and a table each. */
export function tables(summaries: ConfigSummary[], gpuMode: boolean): string {
  if (!gpuMode) return summaries[0]!.table;
  return [
    overviewTable(summaries),
    ...summaries.map(
      (s) =>
        `### ${s.config.name}: ${placementLabel(s.config)}\n\n${s.layerReport ? `Layer report: ${s.layerReport.summary}\n\n` : ''}${s.table}`,
    ),
  ].join('\n\n');
}

/** Cold versus warm: what the first request after a load costs, and what load()'s warm-up buys. */
export function summarizeColdWarm(runs: Measured<ColdWarmRun>[]) {
  const pick = (key: keyof ColdWarmRun) => stats(runs.map((r) => r[key]));
  const s = {
    loadMs: pick('loadMs'),
    coldRequestMs: pick('coldRequestMs'),
    coldTtftMs: pick('coldTtftMs'),
    warmRequestMs: pick('warmRequestMs'),
    warmTtftMs: pick('warmTtftMs'),
    loadWithWarmupMs: pick('loadWithWarmupMs'),
    requestAfterWarmupMs: pick('requestAfterWarmupMs'),
    ttftAfterWarmupMs: pick('ttftAfterWarmupMs'),
  };
  const coldCostMs = s.coldRequestMs.median - s.warmRequestMs.median;
  const coldShare = coldCostMs / s.coldRequestMs.median;
  const warmupCostMs = s.loadWithWarmupMs.median - s.loadMs.median;
  const request = `${SHORT_PROMPT_TOKENS}-token prompt, ${COLD_REQUEST_TOKENS} tokens out`;
  const table = [
    `| request (${request}) | total (ms) | time to first token (ms) |`,
    '|---|---|---|',
    `| first after load with warmup: false (cold) | ${cell(s.coldRequestMs, 1)} | ${cell(s.coldTtftMs, 1)} |`,
    `| second after that load (warm, steady state) | ${cell(s.warmRequestMs, 1)} | ${cell(s.warmTtftMs, 1)} |`,
    `| first after load with the default warmup: true | ${cell(s.requestAfterWarmupMs, 1)} | ${cell(s.ttftAfterWarmupMs, 1)} |`,
  ].join('\n');
  const sentence =
    `Cold start: the first request after a load without warm-up took ${fmt(s.coldRequestMs.median, 1)} ms against ${fmt(s.warmRequestMs.median, 1)} ms warm, ` +
    `so ${fmt(Math.max(0, coldCostMs), 1)} ms (${pct(Math.max(0, coldShare))}) of that short request was cold-start cost. ` +
    `load()'s default warm-up moves it into the load: ${fmt(s.loadMs.median, 0)} ms without, ${fmt(s.loadWithWarmupMs.median, 0)} ms with (${warmupCostMs >= 0 ? '+' : '−'}${fmt(Math.abs(warmupCostMs), 0)} ms), ` +
    `and the first request then takes ${fmt(s.requestAfterWarmupMs.median, 1)} ms.`;
  return { ...s, coldCostMs, coldShare, warmupCostMs, table, sentence };
}

/** Parallel sequences: aggregate tok/s by sequence count, ours against llama-batched-bench. */
export function summarizeParallel(
  ours: Measured<OursParallelRun>[],
  reference: Measured<ParallelRun>[],
  node: Measured<NodeLlamaCppParallelRun>[],
  modelPath: string,
  threads: number,
  config: BenchConfig,
) {
  const rows = PARALLEL_SEQUENCES.map((n) => {
    const tg = stats(ours.map((r) => r.tg[n]!));
    const referenceTg = stats(reference.map((r) => r.tg[n]!));
    const nodeTg = node.length ? stats(node.map((r) => r.tg[n]!)) : undefined;
    return {
      ...(nodeTg ? { nodeLlamaCppTgTokensPerSecond: nodeTg, aheadOfNodeLlamaCpp: tg.median / nodeTg.median } : {}),
      sequences: n,
      cudaLlamaTgTokensPerSecond: tg,
      batchedBenchTgTokensPerSecond: referenceTg,
      ratio: tg.median / referenceTg.median,
      cudaLlamaPpTokensPerSecond: stats(ours.map((r) => r.pp[n]!)),
      batchedBenchPpTokensPerSecond: stats(reference.map((r) => r.pp[n]!)),
      generatedPerSequence: ours.map((r) => r.generated[n]!),
    };
  });
  const withNode = node.length > 0;
  const table = [
    `| sequences | cuda-llama aggregate tg (tok/s) | llama-batched-bench S_TG (tok/s) | vs llama-batched-bench |${withNode ? ' node-llama-cpp aggregate tg (tok/s) | vs node-llama-cpp |' : ''} cuda-llama pp (tok/s) | llama-batched-bench S_PP (tok/s) |`,
    `|---|---|---|---|${withNode ? '---|---|' : ''}---|---|`,
    ...rows.map(
      (r) =>
        `| ${r.sequences} | ${cell(r.cudaLlamaTgTokensPerSecond, 2)} | ${cell(r.batchedBenchTgTokensPerSecond, 2)} | ${ratioCell(r.ratio)} | ` +
        (withNode ? `${cell(r.nodeLlamaCppTgTokensPerSecond, 2)} | ${aheadCell(r.aheadOfNodeLlamaCpp)} | ` : '') +
        `${cell(r.cudaLlamaPpTokensPerSecond, 2)} | ${cell(r.batchedBenchPpTokensPerSecond, 2)} |`,
    ),
  ].join('\n');
  const one = rows[0]!;
  const most = rows[rows.length - 1]!;
  const early = rows.filter((r) => r.generatedPerSequence.some((counts) => counts.some((c) => c < PARALLEL_GEN_TOKENS)));
  const sentence =
    `Each sequence: a ${PARALLEL_PROMPT_TOKENS}-token prompt (its own slice of the text; llama-batched-bench takes random tokens) and ${PARALLEL_GEN_TOKENS} generated tokens, ` +
    `in one context with a ${PARALLEL_WINDOW}-token window per sequence for ${most.sequences} sequences on both sides. ` +
    `cuda-llama: model.generateBatch() with greedy sampling, aggregate tg = tokens after each sequence's first over the decode loop's time; llama-batched-bench S_TG = sequences × ${PARALLEL_GEN_TOKENS} over its generation loop (no sampling)` +
    (withNode
      ? `; node-llama-cpp: that many sequences of one context evaluating at once (it batches them), the same aggregate as ours but timed as tokens reach JavaScript`
      : '') +
    '. ' +
    `${most.sequences} sequences at once gave ${fmt(most.cudaLlamaTgTokensPerSecond.median / one.cudaLlamaTgTokensPerSecond.median, 2)}x the tokens per second of one.` +
    (early.length
      ? ` Some sequences ended early (end of generation) at ${early.map((r) => `${r.sequences}: ${r.generatedPerSequence.map((c) => Math.min(...c)).join('/')}`).join('; ')} tokens.`
      : '');
  return { rows, table, sentence, command: `build/Release/llama-batched-bench ${batchedBenchArgs(modelPath, threads, config).join(' ')}` };
}

/** One sweep point's summary: the settings, its KV bytes and speeds. */
export function summarizeSweep(points: { point: SweepPoint; runs: Measured<OursRun>[] }[]) {
  const rows = points.map(({ point, runs }) => ({
    name: point.name,
    group: point.group,
    loadOptions: point.load,
    x: point.x,
    layerReportSummary: runs[0]?.layerReport?.summary ?? null,
    kvCacheBytes: runs[0]?.kvCacheBytes ?? null,
    loadMs: stats(runs.map((r) => r.loadMs)),
    timeToFirstTokenMs: stats(runs.map((r) => r.ttftMs)),
    pp512TokensPerSecond: stats(runs.map((r) => r.pp[PROMPT_TOKENS]!)),
    tg128TokensPerSecond: stats(runs.map((r) => r.tgTokensPerSecond)),
  }));
  const table = [
    `| group | configuration | layer report | KV cache | load (ms) | TTFT (ms) | pp${PROMPT_TOKENS} (tok/s) | tg${GEN_TOKENS} (tok/s) |`,
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.group} | ${r.name} | ${r.layerReportSummary ?? '—'} | ${r.kvCacheBytes === null ? '—' : mib(r.kvCacheBytes)} | ` +
        `${cell(r.loadMs, 0)} | ${cell(r.timeToFirstTokenMs, 1)} | ${cell(r.pp512TokensPerSecond, 2)} | ${cell(r.tg128TokensPerSecond, 2)} |`,
    ),
  ].join('\n');
  return { rows, table };
}

export function buildNotes(summaries: ConfigSummary[], overall: Interference | null, gpuMode: boolean, extra: string[]): string[] {
  const programs = summaries[0]?.nodeLlamaCpp
    ? 'llama-bench, cuda-llama and node-llama-cpp once each, rotating which goes first'
    : 'llama-bench and cuda-llama once, alternating which goes first';
  const sampled = PROMPT_SIZES.filter((n) => ppSamples(n) > 1);
  const samplesNote = sampled.length
    ? ` Within a repetition every program decodes ${sampled.map((n) => `pp${n} ${ppSamples(n)} times`).join(' and ')}, reporting the mean (llama-bench with -r, its avg_ts), and cuda-llama and node-llama-cpp time ${TTFT_SAMPLES} first-token requests (the mean): one short sample swings by 10% on this machine.`
    : '';
  const ratioNote =
    ' Each ratio in the table above is the median of the per-repetition ratios (both programs measured minutes apart at most), not a ratio of the medians.' +
    ' Beside it, from 6 repetitions up, is the distribution-free 95% interval of that median: where the interval holds the threshold (the target, or 1 against node-llama-cpp), the repetitions cannot tell the two sides apart there, and the verdict is within noise.';
  const perRep = gpuMode
    ? `Each repetition runs, for each configuration in turn (${summaries.map((s) => s.config.name).join(', ')}), ${programs}; each does an excluded warm-up after loading the model.${samplesNote}${ratioNote}`
    : `Each repetition runs ${programs}; each does an excluded warm-up after loading the model.${samplesNote}${ratioNote}`;
  const notes: string[] = [
    `Time to first token is from the call to the first generated token reaching JavaScript, ${SHORT_PROMPT_TOKENS}-token prompt on an empty ${CONTEXT_SIZE}-token context. llama-bench has no such measurement (its short-prompt rows time a batch decode without sampling or delivery), so TTFT and load are compared with node-llama-cpp only.`,
    `Load time is Llama.load with warmup: false (model + context, the work node-llama-cpp's loadModel + createContext do); the default warm-up is measured separately (cold versus warm).`,
    "Every program measures in a fresh process of its own: cuda-llama in test/bench/cuda-llama-child.mjs on the compiled package (dist/) under plain node, as a user runs it, node-llama-cpp in its own child, llama-bench and llama-batched-bench as themselves; the benchmark process only orchestrates. Each Node child loads its binding and backends before its timed load (cuda-llama's also lists the devices).",
    `cuda-llama tg${GEN_TOKENS} is (generated − 1) tokens over the time from the first to the last token as the context thread produced them (the engine's pace), after a ${SHORT_PROMPT_TOKENS}-token prompt; llama-bench tg${GEN_TOKENS} is ${GEN_TOKENS} single-token decodes after the same ${SHORT_PROMPT_TOKENS} positions (-d ${SHORT_PROMPT_TOKENS}, excluded from its time), with no sampling, so both sides attend over the same KV cells. pp rows are the prompt decode alone on an empty cache: ${PROMPT_SIZES.join(', ')} tokens of the same text on all sides.`,
    perRep,
  ];
  for (const s of summaries) {
    if (s.tgCounts.some((n) => n < GEN_TOKENS)) {
      notes.push(
        `${gpuMode ? `${s.config.name}: ` : ''}cuda-llama generation stopped early (end of generation) at ${s.tgCounts.join('/')} tokens; tokens/s is over the tokens actually generated.`,
      );
    }
  }
  if (overall) {
    const all = summaries.flatMap((s) => [...s.runs.ours, ...s.runs.bench, ...s.runs.nodeLlamaCpp]);
    const worst = Math.max(...all.map((run) => run.interference?.otherProcesses ?? 0));
    const busy = overall.otherProcesses > 0.02 || worst > 0.05 || overall.steal > 0.02;
    notes.push(
      `Other processes used ${pct(overall.otherProcesses)} of the machine's CPU time during the measured repetitions ` +
        `(worst single run ${pct(worst)}), hypervisor steal ${pct(overall.steal)}${busy ? ': the machine was not quiet, expect noise' : ''}.`,
    );
  }
  const spreads = summaries.flatMap((s) =>
    [
      ...Object.values(s.cudaLlama.ppTokensPerSecond),
      s.cudaLlama.tg128TokensPerSecond,
      ...Object.values(s.llamaBench.ppTokensPerSecond),
      s.llamaBench.tg128TokensPerSecond,
    ].map(spread),
  );
  if (Math.max(...spreads) > 0.1) {
    notes.push(
      'Some rows vary by more than 10% between repetitions: compare medians, and rerun with more --reps before reading a small ratio difference as real.',
    );
  }
  if (!gpuMode) {
    notes.push(
      'For the pp and tg ratios against llama-bench, `test/bench/paired.ts` measures one metric at a time on both sides within a minute, round after round, and takes the median of the per-round ratios: drift that moves a median here by 5–10% from run to run hits both sides of a round alike.',
    );
  }
  for (const s of summaries) {
    if (!s.cudaLlama.contextInfo.threadpool)
      notes.push(
        `${gpuMode ? `${s.config.name}: ` : ''}cuda-llama ran without an attached ggml threadpool (contextInfo.threadpool is false).`,
      );
  }
  return [...notes, ...extra];
}

export interface DocInputs {
  gpuMode: boolean;
  date: string;
  /** "Machine: ..." and, with --gpu, "GPU: ..." lines, without the leading "- ". */
  machineLines: string[];
  commit: string;
  dirty: boolean;
  llamaCpp: { commit: string; tag: string };
  /** "CPU backend: ..." and, with --gpu, "CUDA build: ..." lines. */
  buildLines: string[];
  modelLine: string;
  command: string;
  summaries: ConfigSummary[];
  summary: string;
  tables: string;
  /** Further sections (cold versus warm, sweeps, charts), each starting with its "## " heading. */
  sections: string[];
  notes: string[];
  json: string;
}

export function docPage(d: DocInputs): string {
  const llamaBenchLines = d.gpuMode
    ? d.summaries.map((s) => `- llama-bench ${s.config.name}, each repetition: \`${s.llamaBench.command}\``)
    : [`- llama-bench, each repetition: \`${d.summaries[0]!.llamaBench.command}\``];
  const nlc = d.summaries[0]?.nodeLlamaCpp;
  return [
    `# Benchmarks: cuda-llama vs llama-bench${nlc ? ' vs node-llama-cpp' : ''} (${d.gpuMode ? 'CPU, full and partial CUDA offload' : 'CPU'})`,
    '',
    `Generated by \`test/bench/compare.ts ${d.gpuMode ? '--gpu ' : ''}--write-docs\`; rerun it to refresh this page. cuda-llama and llama-bench run`,
    'the same GGUF file through the same libllama/libggml build (llama-bench is built from this',
    `repository's build folder), with the same thread count${d.gpuMode ? ' and the same layer placement' : ''}; node-llama-cpp runs the same file with its own`,
    'prebuilt binary. All three are interleaved in one run.',
    '',
    `- Date (UTC): ${d.date.replace('T', ' ').replace(/\.\d+Z$/, '')}`,
    ...d.machineLines.map((l) => `- ${l}`),
    `- cuda-llama commit: ${d.commit}${d.dirty ? ' (with uncommitted changes in lib/ or native/)' : ''}`,
    `- llama.cpp commit: ${d.llamaCpp.commit} (${d.llamaCpp.tag}, from vendor/llama.cpp.pin.json)`,
    ...d.buildLines.map((l) => `- ${l}`),
    `- Node: ${process.version}`,
    `- Model: ${d.modelLine}`,
    `- Command: \`${d.command}\``,
    ...llamaBenchLines,
    ...(nlc ? [`- node-llama-cpp: ${JSON.stringify(nlc.binary)}`] : []),
    '',
    d.summary,
    '',
    d.tables,
    '',
    ...d.notes.map((n) => `- ${n}`),
    '',
    ...d.sections.flatMap((s) => [s, '']),
    '## Raw result',
    '',
    '```json',
    d.json,
    '```',
    '',
  ].join('\n');
}
