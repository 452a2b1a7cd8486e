/**
 * `cuda-llama serve <model.gguf>`: the OpenAI-compatible server (lib/server) on one model. It listens
 * first (GET /health is 503 while the model loads), prints where the layers went and what the GPU
 * policy decided, logs one JSON line per request on stdout, and on SIGTERM or SIGINT drains, disposes
 * the model and exits 0. A load that fails (gpu: 'cuda' without CUDA) closes the port and exits 1
 * with the typed error's message.
 */
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { Llama } from '../../llama.js';
import { POOLINGS, type Pooling } from '../../embedding.js';
import type { LlamaModel } from '../../model.js';
import type { LayerReport } from '../../layer-report.js';
import type { FlashAttention, GpuPolicy, KvCacheType, LoadOptions } from '../../options.js';
import { createServer, type LlamaServer } from '../../server/server.js';
import { ReplicaPool } from '../../server/replicas.js';
import { isArgumentError, positiveInteger, type CliContext } from './program.js';

interface ServeFlags {
  host: string;
  port: number;
  parallel?: number;
  contextSize?: number;
  gpu?: GpuPolicy;
  gpuLayers?: string;
  mainGpu?: number;
  splitMode?: 'none' | 'layer' | 'row';
  tensorSplit?: string;
  rpc?: string;
  batchSize?: number;
  ubatchSize?: number;
  threads?: number;
  threadsBatch?: number;
  flashAttention?: FlashAttention;
  kvCacheType?: KvCacheType;
  offloadKvCache: boolean;
  mmap?: boolean;
  warmup: boolean;
  embeddings?: boolean;
  pooling?: Pooling;
  apiKey?: string;
  apiKeyFile?: string;
  alias?: string;
  maxQueue?: number;
  timeout?: number;
  bodyLimit?: number;
  drainTimeout?: number;
  log: boolean;
  replicas?: number | 'auto';
  devices?: string;
}

function replicaCount(value: string): number | 'auto' {
  if (value === 'auto') return 'auto';
  if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError("Expected a positive integer or 'auto'.");
  return Number(value);
}

function nonNegativeInteger(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('Expected a non-negative integer.');
  return Number(value);
}

const loopback = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

function loadOptions(flags: ServeFlags): LoadOptions {
  const options: LoadOptions = { gpu: flags.gpu ?? 'auto' };
  if (flags.parallel !== undefined) options.sequences = flags.parallel;
  if (flags.contextSize !== undefined) options.contextSize = flags.contextSize;
  if (flags.gpuLayers !== undefined)
    options.gpuLayers = flags.gpuLayers === 'max' || flags.gpuLayers === 'auto' ? flags.gpuLayers : Number(flags.gpuLayers);
  if (flags.mainGpu !== undefined) options.mainGpu = flags.mainGpu;
  if (flags.splitMode !== undefined) options.splitMode = flags.splitMode;
  if (flags.tensorSplit !== undefined) options.tensorSplit = flags.tensorSplit.split(',').map(Number);
  if (flags.rpc !== undefined) options.rpcServers = flags.rpc.split(',');
  if (flags.batchSize !== undefined) options.batchSize = flags.batchSize;
  if (flags.ubatchSize !== undefined) options.ubatchSize = flags.ubatchSize;
  if (flags.threads !== undefined) options.threads = flags.threads;
  if (flags.threadsBatch !== undefined) options.threadsBatch = flags.threadsBatch;
  if (flags.flashAttention !== undefined) options.flashAttention = flags.flashAttention;
  if (flags.kvCacheType !== undefined) options.kvCacheType = flags.kvCacheType;
  if (!flags.offloadKvCache) options.offloadKvCache = false;
  if (flags.mmap === false) options.mmap = false;
  if (!flags.warmup) options.warmup = false;
  // A pooling asks for embeddings: without them a generative model would not use it.
  if (flags.embeddings === true || flags.pooling !== undefined) options.embeddings = true;
  if (flags.pooling !== undefined) options.pooling = flags.pooling;
  return options;
}

/** What the startup line says about embeddings: the routes they serve and the pooling. */
function embeddingsNote(model: LlamaModel): string {
  const { pooling, embeddingModel } = model.info;
  if (pooling === null) return '';
  const route = pooling === 'rank' ? '/v1/rerank' : '/v1/embeddings';
  return `; ${embeddingModel ? 'embedding model' : 'embeddings'} (pooling ${pooling}, ${route})`;
}

/** A library refusal (`options.gpuLayers`, `options.devices`, ...) in the words of the flag that set it. */
function flagMessage(message: string): string {
  return message.replace(/options\.(\w+)/g, (_name, key: string) =>
    key === 'sequences' ? '--parallel' : `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`,
  );
}

/** The GPU policy's outcome for a startup line: `gpu auto -> cpu (fallback: ...)`. */
function gpuOutcome({ policy }: LayerReport): string {
  return `gpu ${policy.requested} -> ${policy.target}${policy.fallback ? ` (fallback: ${policy.fallback.reason})` : ''}`;
}

/**
 * The server of both shapes of `serve` (one model, or a replica pool), with SIGTERM and SIGINT
 * installed before anything is printed, so that a signal right after the startup line already drains:
 * the first drains for --drain-timeout, a second stops the running requests at once.
 */
function startServer(
  target: Promise<LlamaModel> | ReplicaPool,
  flags: ServeFlags,
  apiKey: string | undefined,
  context: CliContext,
): { server: LlamaServer; stopping: () => boolean; stoppedBySignal: Promise<void> } {
  const server = createServer(target, {
    apiKey,
    alias: flags.alias,
    maxQueue: flags.maxQueue,
    timeout: flags.timeout,
    bodyLimit: flags.bodyLimit,
    logger: flags.log ? { level: 'info' } : false,
  });
  const drainTimeout = flags.drainTimeout ?? 30;
  let stopping = false;
  let stopped!: () => void;
  const stoppedBySignal = new Promise<void>((resolve) => (stopped = resolve));
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      context.err(`cuda-llama serve: ${signal} again, stopping running requests now\n`);
      void server.close({ drainTimeout: 0 });
      return;
    }
    stopping = true;
    context.err(`cuda-llama serve: ${signal}, draining (up to ${drainTimeout} s)\n`);
    void server.close({ drainTimeout }).then(stopped, stopped);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return { server, stopping: () => stopping, stoppedBySignal };
}

export function registerServe(program: Command, context: CliContext): void {
  program
    .command('serve')
    .description('serve a model over an OpenAI-compatible HTTP API (chat and text completions, SSE, /metrics)')
    .argument('<model.gguf>', 'the GGUF model file')
    .option('--host <address>', 'address to bind', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0: any free port)', nonNegativeInteger, 8080)
    .option('--parallel <n>', 'requests generating at once (Llama.load sequences; default 1)', positiveInteger)
    .option('--context-size <tokens>', "context window per request (default: Llama.load's)", positiveInteger)
    .addOption(
      new Option(
        '--gpu <policy>',
        'cuda: the GPU or refuse to start; auto: CUDA when usable, else the CPU with a warning; cpu (default: auto)',
      ).choices(['cuda', 'auto', 'cpu']),
    )
    .option('--gpu-layers <n|max|auto>', 'repeating layers on the GPU (default: max)')
    .option('--main-gpu <index>', 'GPU for an unsplit model', nonNegativeInteger)
    .addOption(new Option('--split-mode <mode>', 'how to split across GPUs').choices(['none', 'layer', 'row']))
    .option('--tensor-split <shares>', 'share of the model per GPU, e.g. 3,1')
    .option('--rpc <endpoints>', 'remote devices: ggml rpc-servers host:port,host:port (see `cuda-llama rpc-server`)')
    .option('--batch-size <tokens>', 'logical batch', positiveInteger)
    .option('--ubatch-size <tokens>', 'physical batch', positiveInteger)
    .option('--threads <n>', 'CPU threads for generation', positiveInteger)
    .option('--threads-batch <n>', 'CPU threads for prompt processing', positiveInteger)
    .addOption(new Option('--flash-attention <mode>', 'flash attention').choices(['auto', 'on', 'off']))
    .addOption(
      new Option('--kv-cache-type <type>', 'KV-cache element type').choices(['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1']),
    )
    .option('--no-offload-kv-cache', 'keep the KV cache on the CPU')
    .option('--no-mmap', 'read the file instead of memory-mapping it')
    .option('--no-warmup', 'skip the warm-up decode')
    .option(
      '--embeddings',
      'serve /v1/embeddings from a generative model too (a second, embeddings context); an embedding model always does',
    )
    .addOption(
      new Option('--pooling <type>', "how embeddings pool a text's token vectors; implies --embeddings (default: the model's own)").choices(
        POOLINGS,
      ),
    )
    .option('--api-key <key>', 'require Authorization: Bearer <key> (visible in ps: prefer --api-key-file)')
    .option('--api-key-file <file>', 'read the API key from a file (first line)')
    .option('--alias <name>', 'model id for /v1/models and the model field (default: the file name)')
    .option('--max-queue <n>', 'requests waiting beyond --parallel before 503 (default 256)', nonNegativeInteger)
    .option('--timeout <seconds>', 'per-request deadline, 0 for none (default 600)', nonNegativeInteger)
    .option('--body-limit <bytes>', 'largest request body (default 16 MiB)', positiveInteger)
    .option('--drain-timeout <seconds>', 'on SIGTERM/SIGINT, how long running requests may finish (default 30)', nonNegativeInteger)
    .option('--no-log', 'no JSON request log on stdout')
    .option(
      '--replicas <n|auto>',
      'model instances behind a router with failover (auto: one per CUDA GPU, or one on the CPU)',
      replicaCount,
    )
    .option('--devices <names>', 'devices for --replicas, round-robin, e.g. CUDA0,CUDA1 (default: every CUDA GPU, else CPU)')
    .action(async (path: string, flags: ServeFlags, command: Command) => {
      if (flags.apiKey !== undefined && flags.apiKeyFile !== undefined) command.error('error: pass --api-key or --api-key-file, not both');
      let apiKey = flags.apiKey;
      if (flags.apiKeyFile !== undefined) {
        apiKey = (await readFile(flags.apiKeyFile, 'utf8')).split('\n')[0]!.trim();
        if (apiKey === '') command.error(`error: ${flags.apiKeyFile} holds no key`);
      }
      if (!loopback.has(flags.host) && apiKey === undefined) {
        context.err(
          `\n*** WARNING: listening on ${flags.host} without an API key: anyone who can reach this address can use the model. ***\n` +
            '*** Pass --api-key-file <file> (or bind 127.0.0.1). ***\n\n',
        );
      }
      if (flags.devices !== undefined && flags.replicas === undefined) command.error('error: --devices needs --replicas');
      if (flags.replicas !== undefined) {
        await serveReplicas(path, flags, apiKey, context, command);
        return;
      }
      const loading = Llama.load(path, loadOptions(flags));
      loading.catch(() => undefined); // reported below, after the port is closed
      const { server, stopping, stoppedBySignal } = startServer(loading, flags, apiKey, context);
      const address = await server.listen({ host: flags.host, port: flags.port });
      context.err(`cuda-llama serve: listening on ${address}, loading ${path}\n`);
      let model: LlamaModel;
      try {
        model = await loading;
      } catch (error) {
        if (!stopping()) await server.close({ drainTimeout: 0 });
        // A value the library refuses (--gpu-layers abc) is a usage mistake, named by its flag.
        if (isArgumentError(error)) command.error(`error: ${flagMessage(error.message)}`);
        throw error;
      }
      if (stopping()) {
        await stoppedBySignal;
        await model.dispose();
        return;
      }
      const report = await model.layerReport();
      const { sequences, contextSize } = model.contextInfo;
      context.err(
        `cuda-llama serve: ready on ${address}: model ${flags.alias ?? path} (${model.info.quantization}), ${report.summary}; ${gpuOutcome(report)}; ` +
          `${sequences} parallel x ${contextSize} tokens${embeddingsNote(model)}${apiKey === undefined ? '' : '; API key required'}\n`,
      );
      await stoppedBySignal;
      await model.dispose();
      context.err('cuda-llama serve: stopped\n');
    });
}

/** `serve --replicas`: a ReplicaPool behind the same server, one startup line listing every replica. */
async function serveReplicas(
  path: string,
  flags: ServeFlags,
  apiKey: string | undefined,
  context: CliContext,
  command: Command,
): Promise<void> {
  let pool: ReplicaPool;
  try {
    pool = new ReplicaPool(path, {
      replicas: flags.replicas,
      ...(flags.devices !== undefined ? { devices: flags.devices.split(',').map((d) => d.trim()) } : {}),
      load: loadOptions(flags),
    });
  } catch (error) {
    if (isArgumentError(error)) command.error(`error: ${flagMessage(error.message)}`);
    throw error;
  }
  const { server, stopping, stoppedBySignal } = startServer(pool, flags, apiKey, context);
  const address = await server.listen({ host: flags.host, port: flags.port });
  context.err(`cuda-llama serve: listening on ${address}, loading ${pool.replicas.length} replicas of ${path}\n`);
  try {
    await pool.ready;
  } catch (error) {
    if (!stopping()) await server.close({ drainTimeout: 0 });
    if (isArgumentError(error)) command.error(`error: ${flagMessage(error.message)}`);
    throw error;
  }
  if (!stopping()) {
    const lines: string[] = [];
    for (const replica of pool.replicas) {
      const model = replica.model!;
      const report = await model.layerReport();
      const { sequences, contextSize } = model.contextInfo;
      lines.push(
        `  replica ${replica.index} on ${replica.device}: ${report.summary}; ${gpuOutcome(report)}; ${sequences} parallel x ${contextSize} tokens` +
          `${replica.sharesWeightsWith === undefined ? '' : `; weights shared with replica ${replica.sharesWeightsWith}`}`,
      );
    }
    const first = pool.replicas[0]!.model!;
    context.err(
      `cuda-llama serve: ready on ${address}: model ${flags.alias ?? path} (${first.info.quantization}), ${pool.replicas.length} replicas` +
        `${embeddingsNote(first)}${apiKey === undefined ? '' : '; API key required'}\n${lines.join('\n')}\n`,
    );
  }
  await stoppedBySignal;
  await pool.dispose();
  context.err('cuda-llama serve: stopped\n');
}
