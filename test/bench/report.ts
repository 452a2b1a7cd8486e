/** From measured runs to numbers, markdown tables, notes and the docs page. */
import type { LayerReport } from '../../lib/index.js';
import { CONTEXT_SIZE, GEN_TOKENS, PROMPT_TOKENS, SHORT_PROMPT_TOKENS, TARGET_RATIO, isGpuConfig, type BenchConfig } from './common.js';
import type { GpuWindow } from './gpu.js';
import { llamaBenchArgs, type LlamaBenchRun } from './llama-bench.js';
import type { OursRun } from './ours.js';
import { spread, stats, type Interference, type Measured, type Stats } from './stats.js';

export function fmt(value: number, digits: number): string {
  return value.toFixed(digits);
}

export function pct(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

export function othersNote(i: Interference | null): string {
  return i ? `; other processes ${pct(i.otherProcesses)}, steal ${pct(i.steal)}` : '';
}

function cell(s: Stats, digits: number): string {
  return s.samples.length === 1 ? fmt(s.median, digits) : `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

function ratioCell(ratio: number): string {
  return `${ratio.toFixed(3)} ${ratio >= TARGET_RATIO ? 'ok' : `**below ${TARGET_RATIO}**`}`;
}

export type Sampled<T> = Measured<T> & { gpu?: GpuWindow };

/** Everything measured for one configuration. */
export interface ConfigRuns {
  config: BenchConfig;
  ours: Sampled<OursRun>[];
  bench: Sampled<LlamaBenchRun>[];
  /** From the excluded warm-up load; only with --gpu. */
  layerReport?: LayerReport;
}

export type ConfigSummary = ReturnType<typeof summarizeConfig>;

/** `gpuMode` adds the placement and NVML fields; without it the shape is the CPU-only result's, unchanged. */
export function summarizeConfig(runs: ConfigRuns, modelPath: string, threads: number, gpuMode: boolean) {
  const { config, ours, bench } = runs;
  const loadMs = stats(ours.map((o) => o.loadMs));
  const ttftMs = stats(ours.map((o) => o.ttftMs));
  const oursPp = stats(ours.map((o) => o.ppTokensPerSecond));
  const oursTg = stats(ours.map((o) => o.tgTokensPerSecond));
  const benchPp = stats(bench.map((b) => b.pp.avg_ts));
  const benchTg = stats(bench.map((b) => b.tg.avg_ts));
  const tgCounts = [...new Set(ours.map((o) => o.tgGeneratedTokens))];
  const contextInfo = ours[0]!.contextInfo;
  const first = bench[0]!;
  const sampled = gpuMode && isGpuConfig(config);

  const cudaLlama = {
    contextInfo,
    loadMs,
    timeToFirstTokenMs: ttftMs,
    pp512TokensPerSecond: oursPp,
    tg128TokensPerSecond: oursTg,
    tg128GeneratedTokens: ours.map((o) => o.tgGeneratedTokens),
    tg128StopReasons: ours.map((o) => o.tgStopReason),
    interference: ours.map((o) => o.interference),
    ...(sampled ? { gpu: ours.map((o) => o.gpu ?? null) } : {}),
  };
  const llamaBench = {
    command: `build/Release/llama-bench ${llamaBenchArgs(modelPath, threads, 1, config).join(' ')}`,
    nBatch: first.pp.n_batch,
    nUbatch: first.pp.n_ubatch,
    nThreads: first.pp.n_threads,
    flashAttn: first.pp.flash_attn ?? null,
    typeK: first.pp.type_k ?? null,
    ...(gpuMode ? { nGpuLayers: first.pp.n_gpu_layers, devices: first.pp.devices, backends: first.pp.backends ?? null, gpuInfo: first.pp.gpu_info ?? null } : {}),
    pp512TokensPerSecond: benchPp,
    tg128TokensPerSecond: benchTg,
    interference: bench.map((b) => b.interference),
    ...(sampled ? { gpu: bench.map((b) => b.gpu ?? null) } : {}),
  };
  const ratios = { pp512: oursPp.median / benchPp.median, tg128: oursTg.median / benchTg.median, target: TARGET_RATIO };

  const table = [
    `| metric | cuda-llama median (min–max) | llama-bench median (min–max) | ratio (target ≥ ${TARGET_RATIO}) |`,
    '|---|---|---|---|',
    `| load time (ms) | ${cell(loadMs, 0)} | — | — |`,
    `| time to first token, ${SHORT_PROMPT_TOKENS}-token prompt, ${CONTEXT_SIZE} context (ms) | ${cell(ttftMs, 1)} | — (no TTFT reference) | — |`,
    `| prompt processing pp${PROMPT_TOKENS} (tok/s) | ${cell(oursPp, 2)} | ${cell(benchPp, 2)} | ${ratioCell(ratios.pp512)} |`,
    `| generation tg${GEN_TOKENS} (tok/s) | ${cell(oursTg, 2)}${tgCounts.some((n) => n < GEN_TOKENS) ? ` (${tgCounts.join('/')} tokens)` : ''} | ${cell(benchTg, 2)} | ${ratioCell(ratios.tg128)} |`,
  ].join('\n');

  return { config, layerReport: runs.layerReport, cudaLlama, llamaBench, ratios, table, tgCounts, runs };
}

/** How cuda-llama and llama-bench were told to place the model. */
export function placementLabel(config: BenchConfig): string {
  const layers = config.load.gpuLayers;
  const gpuLayers = layers === undefined ? '' : `, gpuLayers: ${typeof layers === 'number' ? layers : `'${layers}'`}`;
  return `gpu: '${config.load.gpu}'${gpuLayers} / -ngl ${config.ngl} -dev ${config.dev}`;
}

/** One row per configuration, for reading the three side by side. */
export function overviewTable(summaries: ConfigSummary[]): string {
  return [
    `| configuration | cuda-llama / llama-bench placement | layer report | pp${PROMPT_TOKENS} cuda-llama | pp${PROMPT_TOKENS} llama-bench | ratio | tg${GEN_TOKENS} cuda-llama | tg${GEN_TOKENS} llama-bench | ratio |`,
    '|---|---|---|---|---|---|---|---|---|',
    ...summaries.map((s) => `| ${s.config.name} | ${placementLabel(s.config)} | ${s.layerReport?.summary ?? '—'} | ` +
      `${fmt(s.cudaLlama.pp512TokensPerSecond.median, 2)} | ${fmt(s.llamaBench.pp512TokensPerSecond.median, 2)} | ${ratioCell(s.ratios.pp512)} | ` +
      `${fmt(s.cudaLlama.tg128TokensPerSecond.median, 2)} | ${fmt(s.llamaBench.tg128TokensPerSecond.median, 2)} | ${ratioCell(s.ratios.tg128)} |`),
  ].join('\n');
}

/** Markdown for the configurations: the single table without --gpu, else an overview and a table each. */
export function tables(summaries: ConfigSummary[], gpuMode: boolean): string {
  if (!gpuMode) return summaries[0]!.table;
  return [
    overviewTable(summaries),
    ...summaries.map((s) => `### ${s.config.name}: ${placementLabel(s.config)}\n\n${s.layerReport ? `Layer report: ${s.layerReport.summary}\n\n` : ''}${s.table}`),
  ].join('\n\n');
}

export function buildNotes(summaries: ConfigSummary[], overall: Interference | null, gpuMode: boolean, extra: string[]): string[] {
  const perRep = gpuMode
    ? `Each repetition runs, for each configuration in turn (${summaries.map((s) => s.config.name).join(', ')}), llama-bench -r 1 and cuda-llama once, alternating which goes first; both do an excluded warm-up after loading the model.`
    : `Each repetition runs llama-bench -r 1 and cuda-llama once, alternating which goes first; both do an excluded warm-up after loading the model.`;
  const notes: string[] = [
    `TTFT is reported for cuda-llama only: llama-bench has no time-to-first-token measurement (its short-prompt rows time a batch decode without sampling or delivery), so it is not a TTFT reference.`,
    `cuda-llama tg${GEN_TOKENS} is (generated − 1) tokens over the time from the first to the last token as the context thread produced them (the engine's pace; time to first token is on the JavaScript clock), after a ${SHORT_PROMPT_TOKENS}-token prompt; llama-bench tg${GEN_TOKENS} is ${GEN_TOKENS} single-token decodes from an empty cache, with no sampling.`,
    perRep,
  ];
  for (const s of summaries) {
    if (s.tgCounts.some((n) => n < GEN_TOKENS)) {
      notes.push(`${gpuMode ? `${s.config.name}: ` : ''}cuda-llama generation stopped early (end of generation) at ${s.tgCounts.join('/')} tokens; tokens/s is over the tokens actually generated.`);
    }
  }
  if (overall) {
    const all = summaries.flatMap((s) => [...s.runs.ours, ...s.runs.bench]);
    const worst = Math.max(...all.map((run) => run.interference?.otherProcesses ?? 0));
    const busy = overall.otherProcesses > 0.02 || worst > 0.05 || overall.steal > 0.02;
    notes.push(`Other processes used ${pct(overall.otherProcesses)} of the machine's CPU time during the measured repetitions ` +
      `(worst single run ${pct(worst)}), hypervisor steal ${pct(overall.steal)}${busy ? ': the machine was not quiet, expect noise' : ''}.`);
  }
  const spreads = summaries.flatMap((s) => [s.cudaLlama.pp512TokensPerSecond, s.cudaLlama.tg128TokensPerSecond, s.llamaBench.pp512TokensPerSecond, s.llamaBench.tg128TokensPerSecond].map(spread));
  if (Math.max(...spreads) > 0.1) {
    notes.push('Some rows vary by more than 10% between repetitions: compare medians, and rerun with more --reps before reading a small ratio difference as real.');
  }
  for (const s of summaries) {
    if (!s.cudaLlama.contextInfo.threadpool) notes.push(`${gpuMode ? `${s.config.name}: ` : ''}cuda-llama ran without an attached ggml threadpool (contextInfo.threadpool is false).`);
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
  notes: string[];
  json: string;
}

export function docPage(d: DocInputs): string {
  const llamaBenchLines = d.gpuMode
    ? d.summaries.map((s) => `- llama-bench ${s.config.name}, once per repetition: \`${s.llamaBench.command}\``)
    : [`- llama-bench, once per repetition: \`${d.summaries[0]!.llamaBench.command}\``];
  return [
    `# Benchmarks: cuda-llama vs llama-bench (${d.gpuMode ? 'CPU, full and partial CUDA offload' : 'CPU'})`,
    '',
    `Generated by \`test/bench/compare.ts ${d.gpuMode ? '--gpu ' : ''}--write-docs\`; rerun it to refresh this page. Both sides run`,
    'the same GGUF file through the same libllama/libggml build (llama-bench is built from this',
    `repository's build folder), with the same thread count${d.gpuMode ? ' and the same layer placement' : ''}, interleaved in one run.`,
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
    '',
    d.summary,
    '',
    d.tables,
    '',
    ...d.notes.map((n) => `- ${n}`),
    '',
    '## Raw result',
    '',
    '```json',
    d.json,
    '```',
    '',
  ].join('\n');
}
