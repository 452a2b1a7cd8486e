/** The serving benchmark's result (serve.ts) and its markdown page. */
import type { LevelFigures } from './serve-load.js';
import type { MemorySample, ModelShape, ServerName } from './serve-servers.js';
import { SERVERS } from './serve-servers.js';
import { intervalVerdict, stats, targetVerdict, verdictWords, type Stats } from './stats.js';

/** One server's memory in one round; samples are undefined where /proc could not be read. */
export interface SideMemory {
  /** Right after /health answered 200. */
  loaded?: MemorySample;
  /** After the warm-up request. */
  ready?: MemorySample;
  /** Half a second after the last level, idle. */
  idle?: MemorySample;
  /** Highest VmRSS and RssAnon of the 250 ms samples taken while the levels ran. */
  peakRss: number;
  peakAnon: number;
}

export interface SideLevel {
  figures: LevelFigures;
  /** Per request, in the order the requests finished. */
  hashes: string[];
  /** Share of the machine's CPU used by processes other than the server and the load generator. */
  otherCpu: number;
}

/** The settings both serving benchmarks (serve.ts, structured.ts) run their servers and load with. */
export interface ServeSettings {
  rounds: number;
  levels: number[];
  parallel: number;
  slotContext: number;
  threads: number;
  batch: number;
  ubatch: number;
  maxTokens: number;
  promptTokens: number;
  gpu: string[] | null;
}

/** What serve.ts and structured.ts both record of a run: when, where, what, and how the servers started and ended (serve-run.ts runHeader). */
export interface ServeRunHeader {
  date: string;
  commit: string;
  dirty: boolean;
  machine: string;
  command: string;
  model: { source: string; served: string; zeroedTokens: number[]; shape: ModelShape };
  settings: ServeSettings;
  requestsPerLevel: number[];
  commands: Record<ServerName, string>;
  /** How each server process ended when it was stopped, per round. */
  exits: Record<ServerName, string[]>;
  wallSeconds: number;
}

export interface ServeResult extends ServeRunHeader {
  kvBytes: number;
  memory: Record<ServerName, SideMemory[]>;
  rounds: { first: ServerName; levels: { clients: number; sides: Partial<Record<ServerName, SideLevel>> }[] }[];
}

const MiB = 2 ** 20;
/** Issue 27: memory beyond the model and the KV cache. */
const OVERHEAD_TARGET_MIB = 100;

type Key = 'tokensPerSecond' | 'ttftP50Ms' | 'ttftP99Ms' | 'itlP50Ms' | 'itlP99Ms';
const rows: { key: Key; label: string; digits: number; target?: 'higher' | 'lower' }[] = [
  { key: 'tokensPerSecond', label: 'aggregate tok/s', digits: 1, target: 'higher' },
  { key: 'ttftP50Ms', label: 'TTFT p50 (ms)', digits: 0 },
  { key: 'ttftP99Ms', label: 'TTFT p99 (ms)', digits: 0, target: 'lower' },
  { key: 'itlP50Ms', label: 'time between tokens p50 (ms)', digits: 1 },
  { key: 'itlP99Ms', label: 'time between tokens p99 (ms)', digits: 1 },
];

const range = (s: Stats, digits: number) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
export const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

function levelSides(result: ServeResult, li: number): Record<ServerName, SideLevel[]> {
  const pick = (name: ServerName) => result.rounds.flatMap((r) => (r.levels[li]?.sides[name] ? [r.levels[li]!.sides[name]!] : []));
  return { 'cuda-llama': pick('cuda-llama'), 'llama-server': pick('llama-server') };
}

/** Per round where both servers ran: pick(cuda-llama) / pick(llama-server), where that is a finite number. */
export function serverRatios<T>(rounds: Partial<Record<ServerName, T>>[], pick: (side: T) => number): number[] {
  return rounds.flatMap((r) => {
    const ours = r['cuda-llama'] === undefined ? undefined : pick(r['cuda-llama']);
    const theirs = r['llama-server'] === undefined ? undefined : pick(r['llama-server']);
    return ours !== undefined && theirs !== undefined && theirs > 0 && Number.isFinite(ours / theirs) ? [ours / theirs] : [];
  });
}

/** Per-round ratios cuda-llama / llama-server of one figure at one level. */
function ratios(result: ServeResult, li: number, key: Key): number[] {
  return serverRatios(
    result.rounds.map((r) => r.levels[li]?.sides ?? {}),
    (s) => s.figures[key],
  );
}

/** Against a target of 1: pass only when the whole interval is on the right side, within noise when it holds 1. */
function targetWords(samples: number[], target: 'higher' | 'lower'): string {
  return verdictWords(targetVerdict(samples, 1, target === 'higher' ? 'atLeast' : 'atMost'));
}

function verdict(samples: number[], target: 'higher' | 'lower' | undefined): string {
  if (samples.length === 0) return '—';
  const interval = intervalVerdict(samples, 1);
  if (target === undefined) return `${interval} (no target)`;
  return `${targetWords(samples, target)} (${target === 'higher' ? '≥' : '≤'} 1); ${interval}`;
}

/**
 * How many of cuda-llama's requests generated a text that llama-server also generated in the same
 * round ("same of all"): the same requests went to both, greedy. They finished in different orders
 * on the two sides, so the hashes are compared as multisets: each of llama-server's counts once.
 */
export function sameText<T>(rounds: Partial<Record<ServerName, T>>[], hashes: (side: T) => string[]): string {
  let same = 0;
  let all = 0;
  for (const r of rounds) {
    if (r['cuda-llama'] === undefined || r['llama-server'] === undefined) continue;
    const theirs = new Map<string, number>();
    for (const h of hashes(r['llama-server'])) theirs.set(h, (theirs.get(h) ?? 0) + 1);
    for (const h of hashes(r['cuda-llama'])) {
      all++;
      const left = theirs.get(h) ?? 0;
      if (left > 0) {
        same++;
        theirs.set(h, left - 1);
      }
    }
  }
  return `${same} of ${all}`;
}

function levelTable(result: ServeResult, li: number): string {
  const clients = result.settings.levels[li]!;
  const sides = levelSides(result, li);
  const figure = (name: ServerName, key: Key) => stats(sides[name].map((s) => s.figures[key]).filter(Number.isFinite));
  const lines = [
    `### ${clients} concurrent client${clients === 1 ? '' : 's'} (${result.requestsPerLevel[li]} requests a round)`,
    '',
    `| figure | cuda-llama, median (min–max) over rounds | llama-server, median (min–max) | ratio cuda-llama / llama-server, median of ${result.rounds.length} rounds | 95% interval of the median ratio; verdict |`,
    '|---|---|---|---|---|',
  ];
  for (const row of rows) {
    const r = ratios(result, li, row.key);
    const ours = figure('cuda-llama', row.key);
    const theirs = figure('llama-server', row.key);
    lines.push(
      `| ${row.label} | ${ours.samples.length ? range(ours, row.digits) : '—'} | ${theirs.samples.length ? range(theirs, row.digits) : '—'} | ` +
        `${r.length ? stats(r).median.toFixed(3) : '—'} | ${verdict(r, row.target)} |`,
    );
  }
  const count = (name: ServerName, pick: (f: LevelFigures) => number) => sum(sides[name].map((s) => pick(s.figures)));
  const perRequest = (name: ServerName) => {
    const requests = count(name, (f) => f.requests - f.errors);
    return requests ? (count(name, (f) => f.completionTokens) / requests).toFixed(1) : '—';
  };
  lines.push(
    `| errors (all rounds) | ${count('cuda-llama', (f) => f.errors)} | ${count('llama-server', (f) => f.errors)} | | |`,
    `| requests with fewer than ${result.settings.maxTokens} completion tokens | ${count('cuda-llama', (f) => f.short)} | ${count('llama-server', (f) => f.short)} | | |`,
    `| requests sent again on a new connection (the kept-alive one had been closed by the server) | ${count('cuda-llama', (f) => f.reconnected)} | ${count('llama-server', (f) => f.reconnected)} | | |`,
    `| completion tokens per request (mean) | ${perRequest('cuda-llama')} | ${perRequest('llama-server')} | | |`,
    `| content events per completion token | ${(
      count('cuda-llama', (f) => f.contentEvents) /
      Math.max(
        1,
        count('cuda-llama', (f) => f.completionTokens),
      )
    ).toFixed(3)} | ` +
      `${(
        count('llama-server', (f) => f.contentEvents) /
        Math.max(
          1,
          count('llama-server', (f) => f.completionTokens),
        )
      ).toFixed(3)} | | |`,
    `| prompt tokens (usage, median) | ${stats(sides['cuda-llama'].map((s) => s.figures.promptTokensMedian)).median} | ${stats(sides['llama-server'].map((s) => s.figures.promptTokensMedian)).median} | | |`,
    `| other processes' CPU share while measured (median) | ${(stats(sides['cuda-llama'].map((s) => s.otherCpu)).median * 100).toFixed(0)}% | ${(stats(sides['llama-server'].map((s) => s.otherCpu)).median * 100).toFixed(0)}% | | |`,
    `| same generated text on both sides | ${sameText(
      result.rounds.map((r) => r.levels[li]?.sides ?? {}),
      (s) => s.hashes,
    )} | | | |`,
  );
  const errors = SERVERS.flatMap((name) => [...new Set(sides[name].flatMap((s) => s.figures.firstErrors))].map((e) => `- ${name}: ${e}`));
  if (errors.length) lines.push('', 'Errors seen:', '', ...errors);
  return lines.join('\n');
}

function memoryTable(result: ServeResult): string {
  const model = result.model.shape.fileBytes;
  const kv = result.kvBytes;
  const mib = (bytes: number) => (bytes / MiB).toFixed(1);
  const med = (name: ServerName, pick: (m: SideMemory) => number | undefined) => {
    const values = result.memory[name].map(pick).filter((v): v is number => v !== undefined && Number.isFinite(v));
    return values.length ? stats(values) : undefined;
  };
  const cell = (s: Stats | undefined) => (s ? `${mib(s.median)} (${mib(s.min)}–${mib(s.max)})` : '—');
  const line = (label: string, pick: (m: SideMemory) => number | undefined) =>
    `| ${label} | ${SERVERS.map((n) => cell(med(n, pick))).join(' | ')} |`;
  // llama.cpp's own memory beyond the file and the KV cache (CPU-repacked weights, compute
  // buffers) is the same in both servers, since both run the same libllama on the same model and
  // settings; what cuda-llama's server adds is its peak RSS less llama-server's, round by round.
  const added = result.memory['cuda-llama'].flatMap((m, i) => {
    const theirs = result.memory['llama-server'][i];
    return theirs && Number.isFinite(m.peakRss - theirs.peakRss) ? [m.peakRss - theirs.peakRss] : [];
  });
  const overhead = added.length ? stats(added) : undefined;
  return [
    `| MiB, median (min–max) over rounds | ${SERVERS.join(' | ')} |`,
    '|---|---|---|',
    line('RSS after /health 200', (m) => m.loaded?.rss),
    line('RSS after the warm-up request', (m) => m.ready?.rss),
    line('peak RSS while the levels ran (250 ms samples)', (m) => m.peakRss),
    line('VmHWM at the end', (m) => m.idle?.hwm),
    line('RSS idle after the run', (m) => m.idle?.rss),
    line('RssAnon idle after the run', (m) => m.idle?.rssAnon),
    line('RssFile idle after the run', (m) => m.idle?.rssFile),
    line(`**peak RSS − model file (${mib(model)}) − KV cache (${mib(kv)})**`, (m) => m.peakRss - model - kv),
    line('idle RSS − model file − KV cache', (m) => (m.idle ? m.idle.rss - model - kv : undefined)),
    line('peak RssAnon − KV cache', (m) => m.peakAnon - kv),
    `| **peak RSS, cuda-llama's less llama-server's in the same round** (what Node, V8, Fastify and cuda-llama add) | ${cell(overhead)} | — |`,
    '',
    'Both servers hold far more than the file and the KV cache: llama.cpp repacks Q4_0 weights for the CPU into anonymous memory',
    'and allocates its compute buffers, in both alike. So the server memory beyond the model and the KV cache is read as the',
    "difference between the two servers' peak RSS (llama-server's own HTTP layer, a few MiB, is thereby counted as zero).",
    `Target (issue 27): cuda-llama's server memory beyond the model and the KV cache under ${OVERHEAD_TARGET_MIB} MiB: ` +
      (overhead
        ? `${overhead.max / MiB < OVERHEAD_TARGET_MIB ? 'meets' : '**misses**'} (median ${mib(overhead.median)} MiB, largest ${mib(overhead.max)} MiB).`
        : 'not measured.'),
  ].join('\n');
}

/** The page's list of what ran where: the run header, with the model and the slots as each page words them. */
export function headerLines(result: ServeRunHeader, model: string, slots: string): string[] {
  return [
    `- Date (UTC): ${result.date}`,
    `- Machine: ${result.machine}`,
    `- cuda-llama commit: ${result.commit}${result.dirty ? ' (with uncommitted changes)' : ''}`,
    `- Model: ${model}`,
    `- ${slots}`,
    `- Command: \`${result.command}\``,
    `- cuda-llama: \`${result.commands['cuda-llama']}\``,
    `- llama-server: \`${result.commands['llama-server']}\``,
    `- How the servers ended on SIGTERM: ${SERVERS.map((n) => `${n} ${[...new Set(result.exits[n])].join(', ')}`).join('; ')}`,
  ];
}

export function renderPage(result: ServeResult): string {
  const s = result.settings;
  const shape = result.model.shape;
  const summary = [
    '| clients | tok/s ratio (target ≥ 1) | TTFT p99 ratio (target ≤ 1) | errors cuda-llama / llama-server |',
    '|---|---|---|---|',
    ...s.levels.map((clients, li) => {
      const tps = ratios(result, li, 'tokensPerSecond');
      const ttft = ratios(result, li, 'ttftP99Ms');
      const sides = levelSides(result, li);
      const errors = SERVERS.map((n) => sum(sides[n].map((x) => x.figures.errors))).join(' / ');
      const cell = (r: number[], target: 'higher' | 'lower') =>
        r.length === 0 ? '—' : `${stats(r).median.toFixed(3)} ${targetWords(r, target)}`;
      return `| ${clients} | ${cell(tps, 'higher')} | ${cell(ttft, 'lower')} | ${errors} |`;
    }),
  ].join('\n');
  return [
    `# Serving: cuda-llama serve vs llama-server (${s.gpu ? `CUDA, ${s.gpu.join(', ')}` : 'CPU'})`,
    '',
    'Generated by `test/bench/serve.ts`. One load generator (closed-loop clients, streaming OpenAI chat completions over',
    'keep-alive HTTP, SSE events timed as they arrive) drives both servers on the same model file, slots, per-slot window, threads',
    'and batches. A round starts each server in turn (alternating which goes first), waits for /health 200, sends one excluded',
    'warm-up request, runs every level and stops it; each figure is the median over rounds, each ratio the median of the per-round',
    'ratios with its distribution-free 95% interval (where it holds 1, the rounds cannot tell the two servers apart).',
    `Every request is distinct (no request can reuse another's cached prompt beyond the chat template's first tokens) and the same on both sides:`,
    `${s.promptTokens} words of one token each in a user message, max_tokens ${s.maxTokens}, temperature 0, stream_options.include_usage.`,
    'Time to first token: from sending the request to the first SSE event with content (a role-only chunk or a ping is not one);',
    'time between tokens: the gaps between content events of a request, pooled over the level. Aggregate tok/s: completion tokens',
    "(usage) of the level's requests over its wall time. Both servers have the same slots at every level: above that, requests queue in the server.",
    `The model served is a copy of ${result.model.source} whose output rows of tokens ${result.model.zeroedTokens.join(', ')} (end of generation) are zero,`,
    'so greedy decoding never stops early; the tables show completion tokens per request, so an early stop would show.',
    '',
    ...headerLines(
      result,
      `${result.model.served} (${shape.architecture}, ${shape.layers} layers, embedding ${shape.embedding}, ${shape.heads} heads / ${shape.headsKv} KV heads, vocabulary ${shape.vocab}, ${shape.weightType} weights, ${(shape.fileBytes / MiB).toFixed(0)} MiB)`,
      `Slots ${s.parallel} of ${s.slotContext} tokens each (KV cache ${(result.kvBytes / MiB).toFixed(1)} MiB, f16), ${s.threads} threads, batch ${s.batch}, ubatch ${s.ubatch}; clients ${s.levels.join(', ')}; ${s.rounds} rounds; ${result.wallSeconds.toFixed(0)} s`,
    ),
    '',
    '## Summary',
    '',
    summary,
    '',
    '## By level',
    '',
    s.levels.map((_, li) => levelTable(result, li)).join('\n\n'),
    '',
    '## Server memory',
    '',
    'From /proc/<pid>/status of each server process (VmRSS, VmHWM, RssAnon, RssFile). The KV cache is computed from the model',
    'shape (slots × window cells, padded to 256, × layers × K and V × KV width × 2 bytes), not read from either server. The model file',
    'is memory-mapped by both, so its pages count in RSS as far as they are resident (RssFile); weights that the CPU backend repacks',
    'are copied into anonymous memory, which RssAnon shows. Either way the two servers load the same file through the same',
    'libllama, so the difference between their rows is what the servers themselves add (Node and V8 on one side, the C++ HTTP server on the other).',
    '',
    memoryTable(result),
    '',
  ].join('\n');
}
