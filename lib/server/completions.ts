/**
 * POST /v1/chat/completions and /v1/completions: one generation per request on the model's engine
 * (n completions of it sharing one prompt evaluation), as one JSON response or as server-sent
 * events in OpenAI's shapes: content, reasoning_content and tool_calls deltas, log probabilities,
 * finish reasons, usage. The request's AbortSignal ends its generation within one engine step when
 * the client goes away or its deadline passes, which frees its sequence.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ChatDelta, ChatResult, LlamaModel } from '../model.js';
import type { GenerateResult, StopReason } from '../generation.js';
import type { TokenLogprob } from '../logprobs.js';
import type { TextInfo } from '../generation.js';
import type { GenerateOptions } from '../options.js';
import { HttpError, errorHeaders, toHttpError } from './errors.js';
import {
  chatMessages,
  chatOptions,
  completionOptions,
  rejectUnsupported,
  type ChatCompletionBody,
  type CompletionBody,
  type SamplingBody,
} from './openai-schema.js';
import { SseWriter } from './sse.js';
import { queueMs, type ReplicaLabels, type ServerMetrics } from './metrics.js';
import { chatKey, messageKey, promptKey } from './routing.js';

/** What a request's log line and metrics record about its generation. */
export interface RequestRecord {
  promptTokens?: number;
  cachedTokens?: number;
  completionTokens?: number;
  firstTokenMs?: number;
  error?: string;
  /** The replica that ran it (a pool's server): its metrics labels. */
  replica?: { replica: string; device: string };
}

/** The server's state that every generation route needs. */
export interface GenerationHost {
  model(): LlamaModel;
  modelId: string;
  metrics: ServerMetrics;
  maxQueue: number;
  timeoutMs: number;
  pingIntervalMs: number;
  /** Generations submitted and not settled. */
  inFlight: number;
  /** Every running request's controller, for close() to abort after its deadline. */
  controllers: Set<AbortController>;
  record(request: FastifyRequest): RequestRecord;
  /** Requests that run at once: the model's sequences, or those of a pool's serving replicas together. */
  capacity(): number;
  /**
   * Runs one generation: on the model, or on the replica a pool's router picks for `key`
   * (lib/server/routing.ts), with failover (lib/server/replicas.ts). `reply` gives the text the
   * routing key grows by (the reply); `onRoute` learns where it runs before it does.
   */
  run<T>(
    key: string,
    attempt: (model: LlamaModel) => Promise<T>,
    reply: (value: T) => string,
    onRoute: (labels: ReplicaLabels) => void,
  ): Promise<T>;
}

type AnyResult = GenerateResult | ChatResult;

const finishReasons: Record<StopReason | 'toolCalls', string> = {
  eos: 'stop',
  stop: 'stop',
  maxTokens: 'length',
  contextFull: 'length',
  abort: 'stop',
  toolCalls: 'tool_calls',
};

const choicesOf = (result: AnyResult): AnyResult[] => (result.choices as AnyResult[] | undefined) ?? [result];

const completionTokensOf = (result: AnyResult) => choicesOf(result).reduce((sum, c) => sum + c.tokens.length, 0);

/** Usage: the prompt once (n completions share its evaluation), the tokens of every completion. */
function usage(result: AnyResult) {
  const completionTokens = completionTokensOf(result);
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: completionTokens,
    total_tokens: result.promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: result.cachedTokens },
  };
}

/** Our extension, in llama-server's spirit: where the time went. */
function timings(result: AnyResult) {
  const t = result.timings;
  return {
    queue_ms: queueMs(result),
    prompt_ms: t.promptMs,
    first_token_ms: t.timeToFirstTokenMs,
    generation_ms: t.generationMs,
    total_ms: t.totalMs,
    prompt_tokens_per_second: t.promptTokensPerSecond,
    tokens_per_second: t.tokensPerSecond,
  };
}

/** JSON has no -Infinity: OpenAI writes -9999 for a token with no chance. */
const finite = (logprob: number) => (Number.isFinite(logprob) ? logprob : -9999);

/** Chat's log probabilities: { content: [{ token, logprob, bytes, top_logprobs }] }. */
function chatLogprobs(entries: TokenLogprob[] | undefined) {
  if (entries === undefined) return null;
  return {
    content: entries.map((e) => ({
      token: e.token,
      logprob: finite(e.logprob),
      bytes: e.bytes,
      top_logprobs: e.top.map((a) => ({ token: a.token, logprob: finite(a.logprob), bytes: a.bytes })),
    })),
    refusal: null,
  };
}

/** The legacy completions API's log probabilities: parallel arrays, alternatives as { text: logprob }. */
function textLogprobs(entries: TokenLogprob[] | undefined, offset = 0) {
  if (entries === undefined) return null;
  const textOffset: number[] = [];
  let at = offset;
  for (const e of entries) {
    textOffset.push(at);
    at += e.token.length;
  }
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => finite(e.logprob)),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top.map((a) => [a.token, finite(a.logprob)]))),
    text_offset: textOffset,
  };
}

/**
 * Our extension: what the library could not read of a reply, which would otherwise vanish (an invalid
 * call under 'auto' is no call, and its finish_reason is 'stop'): `tool_call_errors` for calls that
 * are not valid calls, `parse_error` for a reply that is not the template's format or not the JSON
 * value its format asks for. Absent when there is nothing to say.
 */
function readErrors(result: AnyResult) {
  const errors = (result as ChatResult).toolCallErrors;
  return {
    ...(errors !== undefined && errors.length > 0 ? { tool_call_errors: errors } : {}),
    ...(result.parseError !== undefined ? { parse_error: result.parseError } : {}),
  };
}

function chatMessage(result: ChatResult) {
  const toolCalls = result.toolCalls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }));
  return {
    role: 'assistant',
    // OpenAI's shape: no content, null, beside tool calls.
    content: toolCalls.length > 0 && result.text === '' ? null : result.text,
    ...(result.reasoning ? { reasoning_content: result.reasoning } : {}),
    ...(toolCalls.length > 0 ? { tool_calls: toolCalls } : {}),
    ...readErrors(result),
  };
}

class DeadlineError extends Error {
  override name = 'TimeoutError';
}

/** The reason close() aborts what its drain deadline left running. */
export class ShutdownError extends Error {
  override name = 'ShutdownError';
}

class ClientClosedError extends Error {
  override name = 'ClientClosedError';
}

/** An abort reason as the answer (which, for a client that left, nobody reads; the log and metrics do). */
export function abortAnswer(error: unknown): unknown {
  if (error instanceof DeadlineError) return new HttpError(504, error.message, { code: 'timeout' });
  if (error instanceof ShutdownError) return new HttpError(503, error.message, { code: 'shutting_down', headers: { 'retry-after': '1' } });
  // nginx's 499: the client closed the request; counted apart from the server's own failures.
  if (error instanceof ClientClosedError) return new HttpError(499, error.message, { code: 'client_closed' });
  return error;
}

/** A request's abort signal, and what to undo when it settles. */
export interface RequestWatch {
  signal: AbortSignal;
  release(): void;
}

/**
 * Aborts a request when its client goes away, its deadline passes or close() gives up on it
 * (through host.controllers); the reason is one abortAnswer() turns into the response.
 */
export function watchRequest(host: GenerationHost, reply: FastifyReply): RequestWatch {
  const controller = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) controller.abort(new ClientClosedError('the client closed the connection'));
  };
  reply.raw.on('close', onClose);
  const deadline =
    host.timeoutMs > 0
      ? setTimeout(
          () => controller.abort(new DeadlineError(`the request ran past its deadline of ${host.timeoutMs / 1000} s`)),
          host.timeoutMs,
        )
      : undefined;
  deadline?.unref();
  host.controllers.add(controller);
  return {
    signal: controller.signal,
    release() {
      clearTimeout(deadline);
      host.controllers.delete(controller);
      reply.raw.off('close', onClose);
    },
  };
}

export async function handleGeneration(
  host: GenerationHost,
  kind: 'chat' | 'text',
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<unknown> {
  const body = request.body as SamplingBody;
  rejectUnsupported(body);
  host.model(); // 503 while nothing can serve
  if (body.model !== host.modelId) {
    throw new HttpError(404, `The model '${body.model}' does not exist; this server serves '${host.modelId}' (GET /v1/models)`, {
      param: 'model',
      code: 'model_not_found',
    });
  }
  const options = kind === 'chat' ? chatOptions(body as ChatCompletionBody) : completionOptions(body as CompletionBody);
  const messages = kind === 'chat' ? chatMessages(body as ChatCompletionBody) : undefined;
  const prompt = kind === 'text' ? (body as CompletionBody).prompt : undefined;
  const sequences = host.capacity();
  if (host.inFlight >= sequences + host.maxQueue) {
    throw new HttpError(503, `the queue is full: ${sequences} requests running and ${host.maxQueue} waiting`, {
      code: 'queue_full',
      headers: { 'retry-after': '1' },
    });
  }

  const watch = watchRequest(host, reply);
  host.inFlight++;
  const record = host.record(request);
  const started = performance.now();
  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${request.id.replace(/-/g, '')}`;
  const created = Math.floor(Date.now() / 1000);
  const generate: GenerateOptions = { ...options, signal: watch.signal };
  // Routing: the canonical text of the conversation (or the prompt), and what the reply adds to it.
  const key = messages ? chatKey(messages as Parameters<typeof chatKey>[0]) : promptKey(prompt as string | (string | number)[]);
  const replyKey = (result: AnyResult) => {
    const text = choicesOf(result)[0]?.text ?? '';
    return messages ? messageKey('assistant', text) : text;
  };
  const sseHeaders: Record<string, string> = { 'x-request-id': request.id };
  const onRoute = (labels: ReplicaLabels) => {
    if (!('replica' in labels)) return;
    record.replica = labels as { replica: string; device: string };
    // Which replica answered: for clients and tests; a stream's header goes out with its first event.
    sseHeaders['x-replica'] = labels.replica;
    if (!reply.sent) void reply.header('x-replica', labels.replica);
  };
  const finish = (result: AnyResult) => {
    host.metrics.observeGeneration(result, record.replica ?? {});
    record.promptTokens = result.promptTokens;
    record.cachedTokens = result.cachedTokens;
    record.completionTokens = completionTokensOf(result);
    if (result.tokens.length > 0) record.firstTokenMs = result.timings.timeToFirstTokenMs;
  };
  try {
    if (body.stream !== true) {
      const result = await host
        .run<AnyResult>(
          key,
          (model) => (messages ? model.chat(messages, generate) : model.generate(prompt as string | number[], generate)),
          replyKey,
          onRoute,
        )
        .catch((e: unknown) => {
          throw abortAnswer(e);
        });
      finish(result);
      const choices = choicesOf(result).map((choice, index) =>
        kind === 'chat'
          ? {
              index,
              message: chatMessage(choice as ChatResult),
              logprobs: chatLogprobs(choice.logprobs),
              finish_reason: finishReasons[choice.stopReason],
            }
          : {
              index,
              text: choice.text,
              logprobs: textLogprobs(choice.logprobs),
              finish_reason: finishReasons[choice.stopReason],
              ...readErrors(choice),
            },
      );
      return {
        id,
        object: kind === 'chat' ? 'chat.completion' : 'text_completion',
        created,
        model: host.modelId,
        choices,
        usage: usage(result),
        timings: timings(result),
      };
    }
    return await streamGeneration();
  } finally {
    watch.release();
    host.inFlight--;
  }

  async function streamGeneration(): Promise<unknown> {
    const includeUsage = body.stream_options?.include_usage === true;
    const continuousUsage = body.stream_options?.continuous_usage_stats === true;
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const n = options.n ?? 1;
    const opened = new Array<boolean>(n).fill(false);
    const textOffsets = new Array<number>(n).fill(0);
    // Only their sum is reported: the usage covers every choice.
    let completionTokens = 0;
    let promptTokens = 0;
    const envelope = (choice: Record<string, unknown>) => ({
      id,
      object,
      created,
      model: host.modelId,
      choices: [choice],
      ...(continuousUsage ? { usage: usageSoFar() } : includeUsage ? { usage: null } : {}),
    });
    const usageSoFar = () => ({
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    });
    reply.hijack();
    const sse = new SseWriter(reply.raw, sseHeaders);
    sse.startPings(host.pingIntervalMs);
    let first = true;
    const firstOutput = () => {
      if (!first) return;
      first = false;
      sse.stopPings();
      record.firstTokenMs = performance.now() - started;
    };
    const sendChat = (delta: ChatDelta) => {
      firstOutput();
      const index = delta.choice;
      completionTokens += delta.tokens;
      promptTokens = delta.promptTokens;
      const body: Record<string, unknown> = {};
      if (!opened[index]) {
        opened[index] = true;
        body.role = 'assistant';
        if (delta.content === undefined && delta.reasoning === undefined && delta.toolCall === undefined) body.content = '';
      }
      if (delta.content !== undefined) body.content = delta.content;
      if (delta.reasoning !== undefined) body.reasoning_content = delta.reasoning;
      if (delta.toolCall !== undefined) {
        const call = delta.toolCall;
        body.tool_calls = [
          call.name !== undefined
            ? { index: call.index, id: call.id, type: 'function', function: { name: call.name, arguments: call.arguments ?? '' } }
            : { index: call.index, function: { arguments: call.arguments ?? '' } },
        ];
      }
      sse.send(envelope({ index, delta: body, logprobs: chatLogprobs(delta.logprobs), finish_reason: null }));
    };
    const sendText = (text: string, index: number, { tokens, logprobs, promptTokens: prompt }: TextInfo) => {
      firstOutput();
      completionTokens += tokens;
      promptTokens = prompt;
      const offset = textOffsets[index]!;
      textOffsets[index] = offset + text.length;
      sse.send(envelope({ index, text, logprobs: textLogprobs(logprobs, offset), finish_reason: null }));
    };
    let result: AnyResult;
    try {
      // A replica that fails before this request started there sends nothing: the pool runs it again elsewhere.
      result = await host.run<AnyResult>(
        key,
        async (model) => {
          if (!messages) return model.generate(prompt as string | number[], { ...generate, onText: sendText });
          const stream = model.chatStream(messages, generate);
          try {
            for await (const delta of stream) sendChat(delta);
          } catch (caught) {
            await stream.result.catch(() => undefined); // the sequence is free once the engine let go of it
            throw caught;
          }
          return stream.result;
        },
        replyKey,
        onRoute,
      );
      finish(result);
      promptTokens = result.promptTokens;
      completionTokens = completionTokensOf(result);
      choicesOf(result).forEach((choice, index) => {
        if (kind === 'chat' && !opened[index]) sendChat({ choice: index, tokens: 0, promptTokens: result.promptTokens, content: '' });
        // The choice's last chunk, with its finish reason, carries what could not be read of it.
        const end =
          kind === 'chat'
            ? { index, delta: readErrors(choice), logprobs: null, finish_reason: finishReasons[choice.stopReason] }
            : { index, text: '', logprobs: null, finish_reason: finishReasons[choice.stopReason], ...readErrors(choice) };
        sse.send(envelope(end));
      });
      if (includeUsage) sse.send({ id, object, created, model: host.modelId, choices: [], usage: usage(result), timings: timings(result) });
      sse.done();
    } catch (caught) {
      const error = toHttpError(abortAnswer(caught));
      record.error = error.message;
      if (sse.closed) return undefined;
      if (!sse.started) {
        sse.stopPings();
        reply.raw.writeHead(error.statusCode, {
          'content-type': 'application/json; charset=utf-8',
          'x-request-id': request.id,
          ...errorHeaders(error),
        });
        reply.raw.end(JSON.stringify(error.body()));
      } else {
        sse.send(error.body());
        sse.end();
      }
    }
    return undefined;
  }
}
