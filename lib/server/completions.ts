/**
 * POST /v1/chat/completions and /v1/completions: one generation per request on the model's engine,
 * as one JSON response or as server-sent events. The request's AbortSignal ends its generation
 * within one engine step when the client goes away or its deadline passes, which frees its sequence.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ChatResult, LlamaModel } from '../model.js';
import type { GenerateResult, StopReason } from '../generation.js';
import { HttpError, errorHeaders, toHttpError } from './errors.js';
import {
  chatMessages,
  generateOptions,
  rejectUnsupported,
  type ChatCompletionBody,
  type CompletionBody,
  type SamplingBody,
} from './openai-schema.js';
import { SseWriter } from './sse.js';
import { queueMs, type ServerMetrics } from './metrics.js';

/** What a request's log line and metrics record about its generation. */
export interface RequestRecord {
  promptTokens?: number;
  cachedTokens?: number;
  completionTokens?: number;
  firstTokenMs?: number;
  error?: string;
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
}

const finishReasons: Record<StopReason, string> = { eos: 'stop', stop: 'stop', maxTokens: 'length', contextFull: 'length', abort: 'stop' };

function usage(result: GenerateResult) {
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: result.tokens.length,
    total_tokens: result.promptTokens + result.tokens.length,
    prompt_tokens_details: { cached_tokens: result.cachedTokens },
  };
}

/** Our extension, in llama-server's spirit: where the time went. */
function timings(result: GenerateResult) {
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
function abortAnswer(error: unknown): unknown {
  if (error instanceof DeadlineError) return new HttpError(504, error.message, { code: 'timeout' });
  if (error instanceof ShutdownError) return new HttpError(503, error.message, { code: 'shutting_down', headers: { 'retry-after': '1' } });
  // nginx's 499: the client closed the request; counted apart from the server's own failures.
  if (error instanceof ClientClosedError) return new HttpError(499, error.message, { code: 'client_closed' });
  return error;
}

export async function handleGeneration(
  host: GenerationHost,
  kind: 'chat' | 'text',
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<unknown> {
  const body = request.body as SamplingBody;
  rejectUnsupported(body);
  const model = host.model();
  if (body.model !== host.modelId) {
    throw new HttpError(404, `The model '${body.model}' does not exist; this server serves '${host.modelId}' (GET /v1/models)`, {
      param: 'model',
      code: 'model_not_found',
    });
  }
  const options = generateOptions(body);
  const messages = kind === 'chat' ? chatMessages(body as ChatCompletionBody) : undefined;
  const prompt = kind === 'text' ? (body as CompletionBody).prompt : undefined;
  const { sequences } = model.contextInfo;
  if (host.inFlight >= sequences + host.maxQueue) {
    throw new HttpError(503, `the queue is full: ${sequences} requests running and ${host.maxQueue} waiting`, {
      code: 'queue_full',
      headers: { 'retry-after': '1' },
    });
  }

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
  host.inFlight++;
  const record = host.record(request);
  const started = performance.now();
  const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${request.id.replace(/-/g, '')}`;
  const created = Math.floor(Date.now() / 1000);
  const generate = { ...options, signal: controller.signal };
  const finish = (result: GenerateResult) => {
    host.metrics.observeGeneration(result);
    record.promptTokens = result.promptTokens;
    record.cachedTokens = result.cachedTokens;
    record.completionTokens = result.tokens.length;
    if (result.tokens.length > 0) record.firstTokenMs = result.timings.timeToFirstTokenMs;
  };
  try {
    if (body.stream !== true) {
      const result = await (messages ? model.chat(messages, generate) : model.generate(prompt as string | number[], generate)).catch(
        (e: unknown) => {
          throw abortAnswer(e);
        },
      );
      finish(result);
      const finishReason = finishReasons[result.stopReason];
      const choice =
        kind === 'chat'
          ? {
              index: 0,
              message: {
                role: 'assistant',
                content: result.text,
                ...((result as ChatResult).reasoning ? { reasoning_content: (result as ChatResult).reasoning } : {}),
              },
              logprobs: null,
              finish_reason: finishReason,
            }
          : { index: 0, text: result.text, logprobs: null, finish_reason: finishReason };
      return {
        id,
        object: kind === 'chat' ? 'chat.completion' : 'text_completion',
        created,
        model: host.modelId,
        choices: [choice],
        usage: usage(result),
        timings: timings(result),
      };
    }
    return await streamGeneration();
  } finally {
    clearTimeout(deadline);
    host.controllers.delete(controller);
    host.inFlight--;
    reply.raw.off('close', onClose);
  }

  async function streamGeneration(): Promise<unknown> {
    const includeUsage = body.stream_options?.include_usage === true;
    const stream = messages ? model.chatStream(messages, generate) : model.stream(prompt as string | number[], generate);
    const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const chunk = (delta: string | null, finishReason: string | null, first = false) => ({
      id,
      object,
      created,
      model: host.modelId,
      choices: [
        kind === 'chat'
          ? {
              index: 0,
              delta: delta === null ? {} : { ...(first ? { role: 'assistant' } : {}), content: delta },
              logprobs: null,
              finish_reason: finishReason,
            }
          : { index: 0, text: delta ?? '', logprobs: null, finish_reason: finishReason },
      ],
      ...(includeUsage ? { usage: null } : {}),
    });
    reply.hijack();
    const sse = new SseWriter(reply.raw, { 'x-request-id': request.id });
    sse.startPings(host.pingIntervalMs);
    let first = true;
    try {
      for await (const piece of stream) {
        if (first) {
          sse.stopPings();
          record.firstTokenMs = performance.now() - started;
        }
        sse.send(chunk(piece, null, first));
        first = false;
      }
      const result = await stream.result;
      finish(result);
      if (first && kind === 'chat') sse.send(chunk('', null, true));
      sse.send(chunk(null, finishReasons[result.stopReason]));
      if (includeUsage) sse.send({ id, object, created, model: host.modelId, choices: [], usage: usage(result), timings: timings(result) });
      sse.done();
    } catch (caught) {
      await stream.result.catch(() => undefined); // the sequence is free once the engine let go of it
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
