/**
 * The load generator of serve.ts and structured.ts: closed-loop clients, each sending streaming chat completions one
 * after another over keep-alive HTTP, timing every SSE event as it arrives. Plain node:http with a
 * small SSE parser: the client shares the machine's cores with the server it measures, and
 * fetch's streams cost more per event.
 */
import { createHash } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { performance } from 'node:perf_hooks';
import { MODEL_ALIAS } from './serve-servers.js';

/** One streamed request as the client saw it; times in ms from the moment it was sent. */
export interface RequestRecord {
  client: number;
  /** RequestSpec.kind of the request. */
  kind?: string;
  /** Time to the first event with content (a role-only chunk or a ping is not a token). */
  ttftMs?: number;
  /** Gaps between consecutive content events. */
  gapsMs: number[];
  totalMs: number;
  /** Events that carried content: below completionTokens when a server sent several tokens in one. */
  contentEvents: number;
  /** From the final usage chunk; undefined when the server sent none. */
  completionTokens?: number;
  promptTokens?: number;
  finishReason?: string;
  /** sha256 of the streamed text, to compare what the two servers generated for the same request. */
  textHash: string;
  /**
   * The request went out again on a new connection because the kept-alive one it was first sent on
   * had been closed by the server (llama-server closes the connection after each streamed response).
   */
  reconnected: boolean;
  error?: string;
  /** The streamed text, where RequestSpec.keepText asked for it. */
  text?: string;
}

export interface LevelRun {
  clients: number;
  requests: RequestRecord[];
  /** From the first request sent to the last one finished. */
  wallMs: number;
}

/**
 * A prompt of exactly `tokens` words, each one token in the llama SPM vocabulary after a space;
 * the first words spell `id` (so no two requests share more than the chat template's prefix, and
 * neither server can reuse another request's cached prompt), the rest come from a generator
 * seeded by it.
 */
const WORDS = (
  'the of and to in is was for on that with as by at from his her it an be are this which or had not but have were one ' +
  'all they their there been has more when who will would can no out so up said what its about into than them only other ' +
  'new some could time these two may then do first any my now such like our over man me even most made after also did ' +
  'many before must through back years where much your way well down should because each just those people how too ' +
  'little state good very make world still own see men work long get here between both life being under never day same ' +
  'another know while last might us great old year off come since against go came right used take three'
).split(' ');

export function promptText(id: number, tokens: number): string {
  const words: string[] = [];
  let rest = id;
  for (let i = 0; i < Math.min(3, tokens); i++) {
    words.push(WORDS[rest % WORDS.length]!);
    rest = Math.floor(rest / WORDS.length);
  }
  // mulberry32: the same words for the same id on both servers and in every round.
  let state = (id + 1) * 0x9e3779b1;
  const next = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  while (words.length < tokens) words.push(WORDS[Math.floor(next() * WORDS.length)]!);
  return words.join(' ');
}

export interface RequestSpec {
  /** The caller's name for what the request is (structured.ts: 'plain' or 'schema'), copied to RequestRecord.kind. */
  kind?: string;
  content: string;
  maxTokens: number;
  /** More body fields (response_format, ignore_eos...), sent after the defaults above: one of the same name replaces its default. */
  body?: Record<string, unknown>;
  /** Keep the streamed text in RequestRecord.text (to check its shape; otherwise only its hash). */
  keepText?: boolean;
}

const REQUEST_TIMEOUT_MS = 600_000;

interface ChunkJson {
  choices?: { delta?: { content?: string | null; reasoning_content?: string | null }; finish_reason?: string | null }[];
  usage?: { completion_tokens?: number; prompt_tokens?: number } | null;
  error?: { message?: string };
}

/** One streaming chat completion, greedy, with usage in the last chunk (and the spec's own body fields). */
export function streamChat(agent: Agent, baseUrl: string, client: number, spec: RequestSpec): Promise<RequestRecord> {
  const body = JSON.stringify({
    model: MODEL_ALIAS,
    messages: [{ role: 'user', content: spec.content }],
    max_tokens: spec.maxTokens,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
    ...spec.body,
  });
  const url = new URL('/v1/chat/completions', baseUrl);
  return new Promise((resolve) => {
    let started = performance.now();
    let answered = false;
    const record: RequestRecord = { client, kind: spec.kind, gapsMs: [], totalMs: 0, contentEvents: 0, textHash: '', reconnected: false };
    const hash = createHash('sha256');
    let lastContent: number | undefined;
    let text = '';
    let done = false;
    let settled = false;
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      record.totalMs = performance.now() - started;
      record.textHash = hash.digest('hex').slice(0, 16);
      if (spec.keepText) record.text = text;
      if (error === undefined && !done) error = 'stream ended without data: [DONE]';
      if (error !== undefined) record.error = error;
      resolve(record);
    };
    const onEvent = (data: string) => {
      if (data === '[DONE]') {
        done = true;
        return;
      }
      let chunk: ChunkJson;
      try {
        chunk = JSON.parse(data) as ChunkJson;
      } catch {
        record.error ??= `not JSON: ${data.slice(0, 120)}`;
        return;
      }
      if (chunk.error) {
        record.error ??= `error event: ${chunk.error.message ?? data.slice(0, 200)}`;
        return;
      }
      const choice = chunk.choices?.[0];
      const piece = (choice?.delta?.content ?? '') + (choice?.delta?.reasoning_content ?? '');
      if (piece !== '') {
        const now = performance.now() - started;
        if (lastContent === undefined) record.ttftMs = now;
        else record.gapsMs.push(now - lastContent);
        lastContent = now;
        record.contentEvents++;
        hash.update(piece);
        if (spec.keepText) text += piece;
      }
      if (choice?.finish_reason) record.finishReason = choice.finish_reason;
      if (chunk.usage) {
        record.completionTokens = chunk.usage.completion_tokens;
        record.promptTokens = chunk.usage.prompt_tokens;
      }
    };
    const send = () => {
      const req = httpRequest(
        url,
        {
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), accept: 'text/event-stream' },
          timeout: REQUEST_TIMEOUT_MS,
        },
        (res) => {
          answered = true;
          res.setEncoding('utf8');
          if (res.statusCode !== 200) {
            let text = '';
            res.on('data', (c: string) => (text += c));
            res.on('end', () => finish(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`));
            res.on('error', (e) => finish(`HTTP ${res.statusCode}, then ${e.message}`));
            return;
          }
          let buffer = '';
          res.on('data', (c: string) => {
            buffer += c;
            // Events end with a blank line; a server may send \r\n line ends.
            for (let end = buffer.search(/\r?\n\r?\n/); end !== -1; end = buffer.search(/\r?\n\r?\n/)) {
              const event = buffer.slice(0, end);
              buffer = buffer.slice(end + (buffer[end] === '\r' ? 4 : 2));
              const data = event
                .split(/\r?\n/)
                .filter((line) => line.startsWith('data:'))
                .map((line) => line.slice(5).trimStart())
                .join('\n');
              if (data !== '') onEvent(data);
            }
          });
          res.on('end', () => finish());
          res.on('error', (e) => finish(`response: ${e.message}`));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)));
      req.on('error', (e) => {
        // Node's documented retry: a reused socket that the server closed meanwhile fails at once,
        // before any answer; the server never saw the request. The next pooled socket may be
        // closed too; only a fresh connection's failure is an error.
        if (req.reusedSocket && !answered) {
          record.reconnected = true;
          started = performance.now();
          send();
        } else finish(`request: ${e.message}${answered ? ' (after the answer began)' : ''}`);
      });
      req.end(body);
    };
    send();
  });
}

/**
 * `clients` clients at once, each sending its share of `specs` one after another (client c takes
 * specs c, c + clients, ...): the server always has `clients` requests in flight until the end.
 */
export async function runLevel(baseUrl: string, clients: number, specs: RequestSpec[]): Promise<LevelRun> {
  // One keep-alive connection per client, as each OpenAI client holds its own: with one agent for
  // all, a socket freed by one client's response goes to another client's queued request before its
  // own client's next one, after the server (llama-server) may have closed it.
  const agents = Array.from({ length: clients }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
  try {
    const requests: RequestRecord[] = [];
    const started = performance.now();
    await Promise.all(
      agents.map(async (agent, c) => {
        for (let i = c; i < specs.length; i += clients) requests.push(await streamChat(agent, baseUrl, c, specs[i]!));
      }),
    );
    return { clients, requests, wallMs: performance.now() - started };
  } finally {
    for (const agent of agents) agent.destroy();
  }
}

/** Nearest-rank percentile; NaN for no samples. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/** What a level gives per server and round. */
export interface LevelFigures {
  /** Completion tokens of all requests over the level's wall time. */
  tokensPerSecond: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  /** Over the gaps of every request of the level. */
  itlP99Ms: number;
  itlP50Ms: number;
  errors: number;
  /** Requests that finished without error but with fewer completion tokens than asked for. */
  short: number;
  requests: number;
  /** Requests sent again on a new connection (RequestRecord.reconnected). */
  reconnected: number;
  completionTokens: number;
  contentEvents: number;
  promptTokensMedian: number;
  firstErrors: string[];
}

export function levelFigures(run: LevelRun, maxTokens: number): LevelFigures {
  const ok = run.requests.filter((r) => r.error === undefined);
  const tokens = (r: RequestRecord) => r.completionTokens ?? r.contentEvents;
  const completionTokens = run.requests.reduce((sum, r) => sum + (r.error === undefined ? tokens(r) : 0), 0);
  const ttfts = ok.flatMap((r) => (r.ttftMs === undefined ? [] : [r.ttftMs]));
  const gaps = ok.flatMap((r) => r.gapsMs);
  const prompts = ok.flatMap((r) => (r.promptTokens === undefined ? [] : [r.promptTokens]));
  const errors = run.requests.filter((r) => r.error !== undefined);
  return {
    tokensPerSecond: completionTokens / (run.wallMs / 1000),
    ttftP50Ms: percentile(ttfts, 50),
    ttftP99Ms: percentile(ttfts, 99),
    itlP50Ms: percentile(gaps, 50),
    itlP99Ms: percentile(gaps, 99),
    errors: errors.length,
    short: ok.filter((r) => tokens(r) < maxTokens).length,
    requests: run.requests.length,
    reconnected: run.requests.filter((r) => r.reconnected).length,
    completionTokens,
    contentEvents: ok.reduce((sum, r) => sum + r.contentEvents, 0),
    promptTokensMedian: percentile(prompts, 50),
    firstErrors: [...new Set(errors.map((r) => r.error!))].slice(0, 3),
  };
}
