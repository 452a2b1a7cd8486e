/**
 * createServer(model, options): an OpenAI-compatible HTTP server on Fastify. Fastify owns HTTP
 * (JSON-schema validation without coercion, the body limit, pino logs, graceful close); this file
 * owns auth, the routes that are not generations, one log line and one metrics record per request,
 * and draining: close() stops accepting, lets running requests finish up to a deadline, then aborts
 * what is left. The model is the caller's: close() never disposes it.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { basename } from 'node:path';
import { performance } from 'node:perf_hooks';
import Fastify, { LogController, type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { Registry } from 'prom-client';
import { Llama } from '../llama.js';
import type { LlamaModel } from '../model.js';
import type { GpuTelemetry } from '../gpu/telemetry.js';
import { expectObject, optionalInteger, optionalNumber, rejectUnknownKeys, typeError } from '../validate.js';
import { ShutdownError, handleGeneration, type GenerationHost, type RequestRecord } from './completions.js';
import { EmbeddingLine, embeddingsSchema, embeddingsSchemaErrors, handleEmbeddings, handleRerank, rerankSchema } from './embeddings.js';
import { CudaLlamaError, ErrorCode } from '../errors.js';
import { HttpError, errorHeaders, toHttpError } from './errors.js';
import { ServerMetrics, type ReplicaLabels } from './metrics.js';
import { ReplicaPool } from './replicas.js';
import { chatCompletionSchema, completionSchema, detokenizeSchema, tokenizeSchema } from './openai-schema.js';

export interface ServerOptions {
  /** Required as `Authorization: Bearer <key>` on every route but GET /health. Default: none (no auth). */
  apiKey?: string;
  /** The model id that /v1/models lists and requests must name. Default: the file name without `.gguf`. */
  alias?: string;
  /** Requests that may wait for a sequence beyond the `sequences` running; one more is a 503 with Retry-After. Default 256. */
  maxQueue?: number;
  /** Per-request deadline in seconds (queue, prompt and generation); past it the generation stops and the answer is a 504. 0: none. Default 600. */
  timeout?: number;
  /** Largest request body in bytes; larger is a 413. Default 16 MiB. */
  bodyLimit?: number;
  /** Seconds between `: ping` comments on a stream while its prompt waits or is processed. Default 5. */
  pingInterval?: number;
  /** Fastify's logger: true for JSON lines on stdout (pino), pino options, or false (default). */
  logger?: FastifyServerOptions['logger'];
  /** GPU readings for /metrics. Default: Llama.telemetry (NVML). */
  telemetry?: () => GpuTelemetry;
}

export interface LlamaServer {
  /** The Fastify instance: add routes or plugins before listen(); `app.server` is the Node http.Server. */
  readonly app: FastifyInstance;
  /** The Prometheus registry /metrics serves. */
  readonly metrics: Registry;
  /** Starts listening; resolves with the address (http://host:port). Default 127.0.0.1:8080. */
  listen(options?: { host?: string; port?: number }): Promise<string>;
  /**
   * Stops accepting, lets running requests finish for up to `drainTimeout` seconds (default 30),
   * aborts the rest and resolves when every connection is closed. Another call while it drains sets
   * a new deadline (0: abort now). Does not dispose the model.
   */
  close(options?: { drainTimeout?: number }): Promise<void>;
}

const serverKeys = ['apiKey', 'alias', 'maxQueue', 'timeout', 'bodyLimit', 'pingInterval', 'logger', 'telemetry'] as const;

const digest = (text: string) => createHash('sha256').update(text).digest();

/** A label for requests_total that stays bounded: the route pattern, or 'unmatched'. */
function routeLabel(request: FastifyRequest): string {
  return request.routeOptions.url ?? 'unmatched';
}

/** A CUDA device's PCI bus id (ggml's deviceId), which finds its NVML readings; null for the CPU or an unknown name. */
function pciBusIdOf(device: string): string | null {
  if (device === 'CPU') return null;
  return Llama.devices().find((d) => d.name === device)?.deviceId ?? null;
}

/**
 * An OpenAI-compatible server for `model` (or for the model a promise will give: until it does,
 * /health and generations answer 503), or for a ReplicaPool: several instances of one model behind
 * a router with failover (lib/server/replicas.ts). Nothing listens until listen().
 */
export function createServer(model: LlamaModel | Promise<LlamaModel> | ReplicaPool, options: ServerOptions = {}): LlamaServer {
  if (model instanceof ReplicaPool)
    return createServerOn(
      model,
      model.ready.then(() => undefined),
      options,
    );
  return createServerOn(undefined, model, options);
}

function createServerOn(
  pool: ReplicaPool | undefined,
  model: LlamaModel | Promise<LlamaModel | undefined>,
  options: ServerOptions,
): LlamaServer {
  const o = expectObject('options', options);
  rejectUnknownKeys('options', o, serverKeys);
  if (options.apiKey !== undefined && (typeof options.apiKey !== 'string' || options.apiKey === ''))
    throw typeError('options.apiKey', 'a non-empty string', options.apiKey);
  if (options.alias !== undefined && (typeof options.alias !== 'string' || options.alias === ''))
    throw typeError('options.alias', 'a non-empty string', options.alias);
  const maxQueue = optionalInteger('options.maxQueue', options.maxQueue, 0, 1_000_000) ?? 256;
  const timeout = optionalNumber('options.timeout', options.timeout, 0, 86_400) ?? 600;
  const bodyLimit = optionalInteger('options.bodyLimit', options.bodyLimit, 1, 2 ** 31 - 1) ?? 16 * 1024 * 1024;
  const pingInterval = options.pingInterval ?? 5;
  if (typeof pingInterval !== 'number' || !(pingInterval > 0))
    throw typeError('options.pingInterval', 'a positive number of seconds', pingInterval);
  if (options.telemetry !== undefined && typeof options.telemetry !== 'function')
    throw typeError('options.telemetry', 'a function', options.telemetry);

  let loaded: LlamaModel | undefined;
  let loadError: unknown;
  // A single model whose context failed (ERR_CONTEXT_FAILED) stays failed: every later request would
  // be refused, so /health says so, for a supervisor to restart the server. A pool reloads instead.
  let contextFailed: CudaLlamaError | undefined;
  let draining = false;
  const ready = Promise.resolve(model).then(
    (m) => (loaded = m ?? undefined),
    (error: unknown) => {
      loadError = error;
    },
  );
  void ready;
  const keyDigest = options.apiKey === undefined ? undefined : digest(options.apiKey);
  const records = new WeakMap<FastifyRequest, RequestRecord>();
  const telemetry = options.telemetry ?? (() => Llama.telemetry());

  const app = Fastify({
    logger: options.logger ?? false,
    // One line per request is ours (the onRequest hook), with the tokens and timings.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.-]{1,128}$/.test(given) ? given : randomUUID();
    },
    // Types are what the schema says: a string where a number belongs is the client's mistake.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allowUnionTypes: true } },
    forceCloseConnections: 'idle',
    // A request that reaches a closing server gets our 503 (OpenAI's shape, Retry-After), not Fastify's.
    return503OnClosing: false,
  });

  const host: GenerationHost = {
    model() {
      if (pool) {
        if (draining) throw new HttpError(503, 'the server is shutting down', { code: 'shutting_down', headers: { 'retry-after': '1' } });
        // Requests without a prompt (embeddings, rerank, tokenize) go to the least loaded serving replica.
        return pool.pick().model!;
      }
      if (loaded === undefined) {
        const message =
          loadError === undefined
            ? 'the model is loading'
            : `the model failed to load: ${loadError instanceof Error ? loadError.message : String(loadError)}`;
        throw new HttpError(503, message, { code: 'model_not_ready', headers: { 'retry-after': '1' } });
      }
      if (draining) throw new HttpError(503, 'the server is shutting down', { code: 'shutting_down', headers: { 'retry-after': '1' } });
      if (contextFailed)
        throw new HttpError(
          503,
          `the model's context failed and this server cannot answer until it is restarted: ${contextFailed.message}`,
          {
            code: 'context_failed',
          },
        );
      return loaded;
    },
    modelId: '',
    metrics: undefined as unknown as ServerMetrics,
    maxQueue,
    timeoutMs: timeout * 1000,
    pingIntervalMs: pingInterval * 1000,
    inFlight: 0,
    controllers: new Set(),
    record(request) {
      let r = records.get(request);
      if (!r) records.set(request, (r = {}));
      return r;
    },
    capacity: () => (pool ? pool.capacity() : (loaded?.contextInfo.sequences ?? 1)),
    run(key, attempt, reply, onRoute) {
      if (!pool) {
        onRoute({});
        return attempt(host.model()).catch((error: unknown) => {
          if (error instanceof CudaLlamaError && error.code === ErrorCode.CONTEXT_FAILED) contextFailed ??= error;
          throw error;
        });
      }
      return pool.run(
        key,
        (m, replica) => {
          onRoute(replica.labels);
          return attempt(m);
        },
        reply,
      );
    },
  };
  const modelPath = pool ? pool.path : model instanceof Promise ? undefined : model.info.path;
  host.modelId = options.alias ?? (modelPath ? basename(modelPath).replace(/\.gguf$/i, '') : 'model');
  void ready.then(() => {
    if (options.alias === undefined && loaded) host.modelId = basename(loaded.info.path).replace(/\.gguf$/i, '');
  });
  // The sequence count is known once the model is; until then nothing runs.
  // A replica's device never changes: its PCI bus id is read from the registry once, not at every scrape.
  const replicaBusIds = pool ? pool.replicas.map((r) => pciBusIdOf(r.device)) : [];
  const metrics = new ServerMetrics({
    sequences: () => loaded?.contextInfo.sequences ?? 1,
    telemetry,
    inFlight: () => host.inFlight,
    engineStats: () => (loaded === undefined || loaded.disposed ? undefined : loaded.engineStats()),
    ...(pool
      ? {
          replicas: () =>
            pool.replicas.map((r, i) => ({
              labels: r.labels,
              pciBusId: replicaBusIds[i]!,
              up: r.serving,
              load: r.load,
              sequences: r.model?.contextInfo.sequences ?? 1,
              failovers: r.failovers,
              engineStats: () => (r.model === undefined || r.model.disposed ? undefined : r.model.engineStats()),
            })),
        }
      : {}),
  });
  // A pool's request series carry the replica that ran the request ('' for one that ran on none).
  const replicaLabels = (record: { replica?: ReplicaLabels } | undefined): ReplicaLabels =>
    pool ? (record?.replica ?? { replica: '', device: '' }) : {};
  host.metrics = metrics;

  app.addHook('onRequest', async (request, reply) => {
    const started = performance.now();
    reply.header('x-request-id', request.id);
    reply.raw.once('close', () => {
      // Closed before any answer went out: the client left (nginx's 499), whatever the handler does next.
      const status = reply.raw.headersSent || reply.raw.writableFinished ? reply.raw.statusCode : 499;
      const route = routeLabel(request);
      const record = records.get(request) ?? {};
      const durationMs = performance.now() - started;
      metrics.requests.inc({ route, status: String(status), ...replicaLabels(record) });
      metrics.requestDuration.observe({ route, ...replicaLabels(record) }, durationMs / 1000);
      request.log.info(
        {
          method: request.method,
          route,
          status,
          promptTokens: record.promptTokens,
          cachedTokens: record.cachedTokens,
          completionTokens: record.completionTokens,
          firstTokenMs: record.firstTokenMs,
          durationMs,
          error: record.error,
          aborted: !reply.raw.writableFinished || undefined,
        },
        'request',
      );
    });
    if (keyDigest === undefined || request.url === '/health') return;
    const header = request.headers.authorization;
    const given = typeof header === 'string' && header.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    if (given === undefined || !timingSafeEqual(digest(given), keyDigest)) {
      throw new HttpError(401, given === undefined ? 'missing API key: send Authorization: Bearer <key>' : 'invalid API key', {
        code: 'invalid_api_key',
      });
    }
  });

  app.setErrorHandler((error, request, reply) => {
    const http = toHttpError(error);
    if (http.statusCode >= 500) request.log.error({ reqId: request.id, err: error }, 'request failed');
    records.set(request, { ...records.get(request), error: http.message });
    return reply.code(http.statusCode).headers(errorHeaders(http)).send(http.body());
  });
  app.setNotFoundHandler((request, reply) => {
    const http = new HttpError(404, `no route ${request.method} ${request.url.split('?')[0]}`, { code: 'unknown_route' });
    return reply.code(404).headers(errorHeaders(http)).send(http.body());
  });

  app.post('/v1/chat/completions', { schema: { body: chatCompletionSchema } }, (request, reply) =>
    handleGeneration(host, 'chat', request, reply),
  );
  app.post('/v1/completions', { schema: { body: completionSchema } }, (request, reply) => handleGeneration(host, 'text', request, reply));
  const embeddingLine = new EmbeddingLine();
  app.post('/v1/embeddings', { schema: { body: embeddingsSchema }, schemaErrorFormatter: embeddingsSchemaErrors }, (request, reply) =>
    handleEmbeddings(host, embeddingLine, request, reply),
  );
  for (const url of ['/v1/rerank', '/rerank'])
    app.post(url, { schema: { body: rerankSchema } }, (request, reply) => handleRerank(host, embeddingLine, request, reply));

  const modelEntry = () => ({ id: host.modelId, object: 'model', created: Math.floor(Date.now() / 1000), owned_by: 'cuda-llama' });
  app.get('/v1/models', async () => {
    host.model();
    return { object: 'list', data: [modelEntry()] };
  });
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    host.model();
    if (request.params.id !== host.modelId)
      throw new HttpError(404, `The model '${request.params.id}' does not exist`, { param: 'model', code: 'model_not_found' });
    return modelEntry();
  });

  app.get('/health', async (_request, reply) => {
    if (draining) return reply.code(503).header('retry-after', '1').send({ status: 'shutting_down' });
    if (pool) {
      // 'degraded' still serves (200): some replicas are failed or reloading, the others take their requests.
      const health = pool.health();
      if (health.status === 'ok' || health.status === 'degraded') return health;
      return reply.code(503).header('retry-after', '1').send(health);
    }
    if (loaded === undefined)
      return reply
        .code(503)
        .header('retry-after', '1')
        .send({ status: loadError === undefined ? 'loading' : 'failed' });
    if (contextFailed) return reply.code(503).send({ status: 'failed', error: contextFailed.message });
    return { status: 'ok' };
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.header('content-type', metrics.registry.contentType).send(text);
  });

  app.post<{ Body: { content: string; add_special?: boolean; parse_special?: boolean } }>(
    '/tokenize',
    { schema: { body: tokenizeSchema } },
    async (request) => {
      const { content, add_special: addSpecial = false, parse_special: parseSpecial = true } = request.body;
      return { tokens: host.model().tokenize(content, { addSpecial, parseSpecial }) };
    },
  );
  app.post<{ Body: { tokens: number[]; special?: boolean } }>('/detokenize', { schema: { body: detokenizeSchema } }, async (request) => {
    return { content: host.model().detokenize(request.body.tokens, { special: request.body.special ?? false }) };
  });

  let closing: Promise<void> | undefined;
  let drainDeadline: NodeJS.Timeout | undefined;
  return {
    app,
    metrics: metrics.registry,
    async listen(listenOptions = {}) {
      return app.listen({ host: listenOptions.host ?? '127.0.0.1', port: listenOptions.port ?? 8080 });
    },
    close(closeOptions = {}) {
      const drainTimeout = closeOptions.drainTimeout ?? 30;
      const abortRunning = () => {
        for (const controller of host.controllers) controller.abort(new ShutdownError('the server shut down before the request finished'));
      };
      // A second call (a second SIGTERM) sets a new deadline for the same drain.
      clearTimeout(drainDeadline);
      drainDeadline = setTimeout(abortRunning, drainTimeout * 1000);
      drainDeadline.unref();
      closing ??= (async () => {
        draining = true;
        // A connection whose request finishes during the drain stays open for keep-alive until the
        // client's idle timeout; closing idle connections as they appear lets close() end with the last request.
        const sweep = setInterval(() => app.server.closeIdleConnections(), 50);
        try {
          await app.close();
        } finally {
          clearTimeout(drainDeadline);
          clearInterval(sweep);
        }
      })();
      return closing;
    },
  };
}
