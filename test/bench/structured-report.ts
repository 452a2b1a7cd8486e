/** The structured-output benchmark's result (structured.ts) and its markdown page. */
import { headerLines, sameText, serverRatios, sum, type ServeRunHeader, type ServeSettings, type SideLevel } from './serve-report.js';
import { SERVERS, type ServerName } from './serve-servers.js';
import { intervalVerdict, stats } from './stats.js';

export type Kind = 'plain' | 'schema' | 'mixed';

/** One level (clients × kind) on one server in one round. */
export interface KindLevel extends SideLevel {
  /** Transport errors, requests without exactly max-tokens completion tokens, schema output not opening as the schema's JSON. */
  errors: number;
  firstErrors: string[];
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

export interface StructuredResult extends ServeRunHeader {
  settings: ServeSettings & { neighbourClients: number };
  /** How a schema request carries it: the schema's grammar as GBNF in `grammar`, or response_format json_schema. */
  constraint: 'grammar' | 'response_format';
  schema: Record<string, unknown>;
  /** The GBNF sent, with constraint 'grammar'. */
  grammar?: string;
  rounds: { first: ServerName; kindsFirst: Kind; sides: Partial<Record<ServerName, SideRound>> }[];
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
  return serverRatios(
    result.rounds.map((r) => r.sides),
    pick,
  );
}

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

function checksTable(result: StructuredResult): string {
  const all = (s: SideRound, kind: Kind) => (kind === 'mixed' ? [s.neighbour.mixed] : s.levels.map((l) => l[kind]));
  const row = (label: string, cell: (name: ServerName, kind: Kind) => string) =>
    `| ${label} | ${SERVERS.flatMap((n) => (['plain', 'schema', 'mixed'] as const).map((k) => cell(n, k))).join(' | ')} |`;
  const levels = (name: ServerName, kind: Kind) => sides(result, name).flatMap((s) => all(s, kind));
  const same = (kind: Kind) =>
    sameText(
      result.rounds.map((r) => r.sides),
      (s) => all(s, kind).flatMap((l) => l.hashes),
    );
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
    `Same generated text on both servers: ${(['plain', 'schema', 'mixed'] as const).map((k) => `${k} ${same(k)}`).join(', ')}.`,
    ...(errors.length ? ['', 'Errors seen:', '', ...errors] : []),
  ].join('\n');
}

/** What a schema request adds to the plain one, as the page says it. */
function constraintWords(result: StructuredResult): string {
  return result.constraint === 'grammar'
    ? "`grammar`: llama.cpp's conversion of the schema below to GBNF, without the chat format's generation-prompt prefix (the default: llama-server refuses `response_format` on the synthetic models, test/bench/README.md says why)"
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
    ...headerLines(
      result,
      `${result.model.served} (${shape.architecture}, ${shape.layers} layers, embedding ${shape.embedding}, vocabulary ${shape.vocab}, ${shape.weightType} weights, ${(shape.fileBytes / 2 ** 20).toFixed(0)} MiB), a copy of ${result.model.source} with the output rows of tokens ${result.model.zeroedTokens.join(', ')} zeroed`,
      `Slots ${s.parallel} of ${s.slotContext} tokens each, ${s.threads} threads, batch ${s.batch}, ubatch ${s.ubatch}; clients ${s.levels.join(', ')} (${result.requestsPerLevel.join(', ')} requests per level and kind); ${s.rounds} rounds; ${result.wallSeconds.toFixed(0)} s`,
    ),
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
