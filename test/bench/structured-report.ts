/** The structured-output benchmark's result (structured.ts), its markdown page and its section of docs/benchmarks.md. */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { repoRoot } from './common.js';
import type { LevelFigures } from './serve-load.js';
import { SERVERS, type ModelShape, type ServerName } from './serve-servers.js';
import { intervalVerdict, stats } from './stats.js';

export type Kind = 'plain' | 'schema' | 'mixed';

/** One level (clients × kind) on one server in one round. */
export interface KindLevel {
  figures: LevelFigures;
  /** Transport errors, requests without exactly max-tokens completion tokens, schema output not opening as the schema's JSON. */
  errors: number;
  firstErrors: string[];
  /** Per request, in the order the requests finished. */
  hashes: string[];
  /** Share of the machine's CPU that neither the server nor the load generator used. */
  otherCpu: number;
}

/** The plain requests of clients 1.. at the largest client count: beside client 0's plain requests, or its schema requests. */
export interface BesideFigures {
  /** Median gap between content events, pooled over those requests. */
  itlP50Ms: number;
  /** Median over those requests of (completion tokens − 1) / (time from first content to the end). */
  decodeTokensPerSecond: number;
}

export interface SideRound {
  levels: { clients: number; plain: KindLevel; schema: KindLevel }[];
  neighbour: { clients: number; mixed: KindLevel; alone: BesideFigures; beside: BesideFigures };
}

export interface StructuredResult {
  date: string;
  commit: string;
  dirty: boolean;
  machine: string;
  command: string;
  model: { source: string; served: string; zeroedTokens: number[]; shape: ModelShape };
  settings: {
    rounds: number;
    levels: number[];
    neighbourClients: number;
    parallel: number;
    slotContext: number;
    threads: number;
    batch: number;
    ubatch: number;
    maxTokens: number;
    promptTokens: number;
    gpu: string[] | null;
  };
  /** How a schema request carries it: response_format json_schema, or the same grammar as GBNF in `grammar`. */
  constraint: 'response_format' | 'grammar';
  schema: Record<string, unknown>;
  /** The GBNF sent, with constraint 'grammar'. */
  grammar?: string;
  requestsPerLevel: number[];
  commands: Record<ServerName, string>;
  exits: Record<ServerName, string[]>;
  rounds: { first: ServerName; kindsFirst: Kind; sides: Partial<Record<ServerName, SideRound>> }[];
  wallSeconds: number;
}

const fixed = (v: number, digits: number) => (Number.isFinite(v) ? v.toFixed(digits) : '—');
const median = (values: number[], digits: number) => {
  const finite = values.filter(Number.isFinite);
  return finite.length ? stats(finite).median.toFixed(digits) : '—';
};
/** "median; low–high, where" against 1 (stats.ts intervalVerdict: "within noise" where the interval holds 1). */
function ratioCell(samples: number[]): string {
  const finite = samples.filter(Number.isFinite);
  return finite.length ? `${stats(finite).median.toFixed(3)}; ${intervalVerdict(finite, 1)}` : '—';
}
function sides(result: StructuredResult, name: ServerName): SideRound[] {
  return result.rounds.flatMap((r) => (r.sides[name] ? [r.sides[name]] : []));
}
/** Per round where both exist: a(side) / b(side) on one server. */
function withinServer(result: StructuredResult, name: ServerName, a: (s: SideRound) => number, b: (s: SideRound) => number): number[] {
  return sides(result, name).map((s) => a(s) / b(s));
}
/** Per round where both servers ran: pick(cuda-llama) / pick(llama-server). */
function acrossServers(result: StructuredResult, pick: (s: SideRound) => number): number[] {
  return result.rounds.flatMap((r) =>
    r.sides['cuda-llama'] && r.sides['llama-server'] ? [pick(r.sides['cuda-llama']) / pick(r.sides['llama-server'])] : [],
  );
}
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

function schemaTable(result: StructuredResult): string {
  const lines = [
    `| clients | server | plain tok/s (median) | schema tok/s | schema / plain, median of ${result.rounds.length} rounds; 95% interval | errors plain / schema |`,
    '|---|---|---|---|---|---|',
  ];
  result.settings.levels.forEach((clients, li) => {
    for (const name of SERVERS) {
      const s = sides(result, name);
      const tps = (k: 'plain' | 'schema') =>
        median(
          s.map((x) => x.levels[li]![k].figures.tokensPerSecond),
          1,
        );
      const errors = (k: 'plain' | 'schema') => sum(s.map((x) => x.levels[li]![k].errors));
      const ratio = withinServer(
        result,
        name,
        (x) => x.levels[li]!.schema.figures.tokensPerSecond,
        (x) => x.levels[li]!.plain.figures.tokensPerSecond,
      );
      lines.push(
        `| ${clients} | ${name} | ${tps('plain')} | ${tps('schema')} | ${ratioCell(ratio)} | ${errors('plain')} / ${errors('schema')} |`,
      );
    }
  });
  lines.push(
    '',
    '| clients | schema tok/s, cuda-llama / llama-server; 95% interval | plain tok/s, cuda-llama / llama-server; 95% interval |',
    '|---|---|---|',
  );
  result.settings.levels.forEach((clients, li) => {
    const across = (k: 'plain' | 'schema') => ratioCell(acrossServers(result, (x) => x.levels[li]![k].figures.tokensPerSecond));
    lines.push(`| ${clients} | ${across('schema')} | ${across('plain')} |`);
  });
  return lines.join('\n');
}

function neighbourTable(result: StructuredResult): string {
  const c = result.settings.neighbourClients;
  const lines = [
    `| server | plain requests' time between tokens p50, all ${c} plain (ms) | with one schema neighbour (ms) | with / without; 95% interval | their decode tok/s with / without; 95% interval | errors (mixed level) |`,
    '|---|---|---|---|---|---|',
  ];
  for (const name of SERVERS) {
    const s = sides(result, name);
    const itl = withinServer(
      result,
      name,
      (x) => x.neighbour.beside.itlP50Ms,
      (x) => x.neighbour.alone.itlP50Ms,
    );
    const decode = withinServer(
      result,
      name,
      (x) => x.neighbour.beside.decodeTokensPerSecond,
      (x) => x.neighbour.alone.decodeTokensPerSecond,
    );
    lines.push(
      `| ${name} | ${median(
        s.map((x) => x.neighbour.alone.itlP50Ms),
        1,
      )} | ${median(
        s.map((x) => x.neighbour.beside.itlP50Ms),
        1,
      )} | ${ratioCell(itl)} | ${ratioCell(decode)} | ${sum(s.map((x) => x.neighbour.mixed.errors))} |`,
    );
  }
  return lines.join('\n');
}

/** Requests that generated the same text on both servers (multisets of hashes, round by round). */
function sameText(result: StructuredResult, pick: (s: SideRound) => KindLevel[]): string {
  let same = 0;
  let all = 0;
  for (const r of result.rounds) {
    const ours = r.sides['cuda-llama'];
    const theirs = r.sides['llama-server'];
    if (!ours || !theirs) continue;
    const theirHashes = new Set(pick(theirs).flatMap((l) => l.hashes));
    for (const h of pick(ours).flatMap((l) => l.hashes)) {
      all++;
      if (theirHashes.has(h)) same++;
    }
  }
  return `${same} of ${all}`;
}

function checksTable(result: StructuredResult): string {
  const all = (s: SideRound, kind: Kind) => (kind === 'mixed' ? [s.neighbour.mixed] : s.levels.map((l) => l[kind]));
  const row = (label: string, cell: (name: ServerName, kind: Kind) => string) =>
    `| ${label} | ${SERVERS.flatMap((n) => (['plain', 'schema', 'mixed'] as const).map((k) => cell(n, k))).join(' | ')} |`;
  const levels = (name: ServerName, kind: Kind) => sides(result, name).flatMap((s) => all(s, kind));
  const errors = SERVERS.flatMap((name) =>
    (['plain', 'schema', 'mixed'] as const).flatMap((kind) =>
      [...new Set(levels(name, kind).flatMap((l) => l.firstErrors))].map((e) => `- ${name}, ${kind}: ${e}`),
    ),
  );
  return [
    `| all rounds | ${SERVERS.flatMap((n) => [`${n} plain`, `${n} schema`, `${n} mixed`]).join(' | ')} |`,
    '|---|---|---|---|---|---|---|',
    row('requests', (n, k) => String(sum(levels(n, k).map((l) => l.figures.requests)))),
    row(`errors (incl. not exactly ${result.settings.maxTokens} tokens, schema output not its JSON)`, (n, k) =>
      String(sum(levels(n, k).map((l) => l.errors))),
    ),
    row('completion tokens per request (mean)', (n, k) => {
      const ls = levels(n, k);
      return fixed(
        sum(ls.map((l) => l.figures.completionTokens)) / Math.max(1, sum(ls.map((l) => l.figures.requests - l.figures.errors))),
        1,
      );
    }),
    row('content events per completion token', (n, k) => {
      const ls = levels(n, k);
      return fixed(sum(ls.map((l) => l.figures.contentEvents)) / Math.max(1, sum(ls.map((l) => l.figures.completionTokens))), 3);
    }),
    row('requests sent again on a new connection', (n, k) => String(sum(levels(n, k).map((l) => l.figures.reconnected)))),
    row(
      "other processes' CPU share (median)",
      (n, k) =>
        `${median(
          levels(n, k).map((l) => l.otherCpu * 100),
          0,
        )}%`,
    ),
    '',
    `Same generated text on both servers: plain ${sameText(result, (s) => all(s, 'plain'))}, schema ${sameText(result, (s) => all(s, 'schema'))}, mixed ${sameText(result, (s) => all(s, 'mixed'))}.`,
    ...(errors.length ? ['', 'Errors seen:', '', ...errors] : []),
  ].join('\n');
}

/** What a schema request adds to the plain one, as the page and the docs section say it. */
function constraintWords(result: StructuredResult): string {
  return result.constraint === 'grammar'
    ? "`grammar`: llama.cpp's conversion of the schema below to GBNF, without the chat format's generation-prompt prefix (llama-server refuses `response_format` on this model: test/bench/README.md says why)"
    : '`response_format: {type: "json_schema", json_schema: {name: "bench", schema}}`';
}

export function renderPage(result: StructuredResult): string {
  const s = result.settings;
  const shape = result.model.shape;
  return [
    `# Structured output: cuda-llama serve vs llama-server (${s.gpu ? `CUDA, ${s.gpu.join(', ')}` : 'CPU'})`,
    '',
    'Generated by `test/bench/structured.ts`. The load generator of the serving benchmark (serve-load.ts: closed-loop clients streaming',
    'OpenAI chat completions over keep-alive HTTP) drives both servers on the same model file, slots, per-slot window, threads and',
    'batches. A round starts each server in turn (alternating which goes first), sends one excluded plain and one excluded schema request,',
    'then at each client count runs the plain requests and the same number of schema requests (which kind goes first alternates every two',
    `rounds), and at ${s.neighbourClients} clients, between those two, the mixed level: client 0 sends schema requests, the other ${s.neighbourClients - 1} plain ones.`,
    `Every request is distinct and the same on both servers and in every round: ${s.promptTokens} one-token words in a user message, max_tokens ${s.maxTokens},`,
    `temperature 0, ignore_eos, stream_options.include_usage; a schema request adds ${constraintWords(result)},`,
    `with the schema below, whose JSON cannot close within ${s.maxTokens} tokens, so both kinds generate exactly ${s.maxTokens} tokens (any other count is an error).`,
    "Aggregate tok/s: completion tokens (usage) of a level's requests over its wall time. Time between tokens: gaps between content events.",
    'Each ratio is the median of the per-round ratios with its distribution-free 95% interval; where the interval holds 1, the rounds',
    'cannot tell the two apart (within noise).',
    '',
    `- Date (UTC): ${result.date}`,
    `- Machine: ${result.machine}`,
    `- cuda-llama commit: ${result.commit}${result.dirty ? ' (with uncommitted changes)' : ''}`,
    `- Model: ${result.model.served} (${shape.architecture}, ${shape.layers} layers, embedding ${shape.embedding}, vocabulary ${shape.vocab}, ${shape.weightType} weights, ${(shape.fileBytes / 2 ** 20).toFixed(0)} MiB), a copy of ${result.model.source} with the output rows of tokens ${result.model.zeroedTokens.join(', ')} zeroed`,
    `- Slots ${s.parallel} of ${s.slotContext} tokens each, ${s.threads} threads, batch ${s.batch}, ubatch ${s.ubatch}; clients ${s.levels.join(', ')} (${result.requestsPerLevel.join(', ')} requests per level and kind); ${s.rounds} rounds; ${result.wallSeconds.toFixed(0)} s`,
    `- Command: \`${result.command}\``,
    `- cuda-llama: \`${result.commands['cuda-llama']}\``,
    `- llama-server: \`${result.commands['llama-server']}\``,
    `- How the servers ended on SIGTERM: ${SERVERS.map((n) => `${n} ${[...new Set(result.exits[n])].join(', ')}`).join('; ')}`,
    `- Schema: \`${JSON.stringify(result.schema)}\``,
    ...(result.grammar ? ['', 'The grammar sent:', '', '```', result.grammar, '```'] : []),
    '',
    '## JSON schema against plain requests',
    '',
    schemaTable(result),
    '',
    `## A schema request beside plain ones (${s.neighbourClients} clients)`,
    '',
    `The plain requests of clients 1 to ${s.neighbourClients - 1} in the mixed level, against the same clients' plain requests in the all-plain level of the same`,
    'server and round: what one grammar in the batch costs the requests beside it.',
    '',
    neighbourTable(result),
    '',
    '## Checks',
    '',
    checksTable(result),
    '',
  ].join('\n');
}

/** The section of docs/benchmarks.md: the run, the two tables, the page. */
export function docsSection(result: StructuredResult, page: string): string {
  const s = result.settings;
  return [
    '## Structured output',
    '',
    `\`${result.command}\` at \`${result.commit}\`${result.dirty ? ' (with uncommitted changes)' : ''}, ${result.date} UTC, ${result.machine}`,
    `([page](${page})): ${s.rounds} rounds, each server a fresh process per round (alternating which goes first), ${s.parallel} slots of`,
    `${s.slotContext} tokens, ${s.threads} threads${s.gpu ? `, full offload to ${s.gpu.join(', ')}` : ', CPU only'}; ${s.promptTokens}-word prompts, exactly ${s.maxTokens} greedy tokens`,
    `(ignore_eos) with and without ${result.constraint === 'grammar' ? 'the GBNF of' : '`response_format`'} a JSON schema (an array of short strings too long to close within them).`,
    `Model: ${result.model.source} (${result.model.shape.layers} layers, embedding ${result.model.shape.embedding}, vocabulary ${result.model.shape.vocab}, ${result.model.shape.weightType} weights).`,
    ...(result.constraint === 'grammar'
      ? [
          "Both servers get the schema's grammar in the `grammar` field: llama-server refuses `response_format` on this model",
          '([test/bench/README.md](../test/bench/README.md) says why), which cuda-llama serves.',
        ]
      : []),
    'Each ratio is the median of the per-round ratios with its 95% interval; "within noise" where it holds 1.',
    '',
    schemaTable(result),
    '',
    `One client of ${s.neighbourClients} sending schema requests, the rest plain, against all ${s.neighbourClients} plain (the plain requests of clients 1–${s.neighbourClients - 1}):`,
    '',
    neighbourTable(result),
    '',
  ].join('\n');
}

/** Replaces the `## Structured output` section of docs/benchmarks.md, or adds it before `## GPU` (else at the end). */
export async function writeDocsSection(section: string, path = join(repoRoot, 'docs', 'benchmarks.md')): Promise<void> {
  const lines = (await readFile(path, 'utf8')).split('\n');
  const start = lines.findIndex((l) => l === '## Structured output');
  if (start !== -1) {
    const next = lines.findIndex((l, i) => i > start && l.startsWith('## '));
    lines.splice(start, (next === -1 ? lines.length : next) - start, ...section.split('\n'));
  } else {
    const gpu = lines.findIndex((l) => l === '## GPU');
    lines.splice(gpu === -1 ? lines.length : gpu, 0, ...section.split('\n'));
  }
  await writeFile(path, `${lines.join('\n').replace(/\n*$/, '')}\n`);
}
