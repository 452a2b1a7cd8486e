/**
 * The two servers of the serving benchmark (serve.ts) as child processes: how each is started with
 * the same model, slots, per-slot window, threads and batches, how we wait for it, read its memory
 * from /proc and stop it. Every child is killed when this process exits, however it exits.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFile, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { createServer } from 'node:net';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readGguf, ggufNumber, ggufString } from '../../lib/gguf/reader.js';
import { fail, log, repoRoot } from './common.js';

export const SERVERS = ['cuda-llama', 'llama-server'] as const;
export type ServerName = (typeof SERVERS)[number];

export const llamaServerPath = join(repoRoot, 'build', 'Release', 'llama-server');
const cliPath = join(repoRoot, 'dist', 'tools', 'cli.js');
/** The model id both servers answer to; requests name it. */
export const MODEL_ALIAS = 'bench';

/** What both servers are given; each spells it in its own flags (serverArgs). */
export interface ServerSetup {
  modelPath: string;
  /** Slots (llama-server -np) = sequences (cuda-llama --parallel). */
  parallel: number;
  /** One slot's window: cuda-llama --context-size; llama-server -c parallel × this, without a unified KV cache. */
  slotContext: number;
  threads: number;
  batch: number;
  ubatch: number;
  /** Full offload to these CUDA devices; undefined: the CPU only. */
  cudaDevices?: string[];
  /** The environment llama-server needs for the CUDA module cuda-llama loads (llama-bench.ts toolEnv). */
  toolEnv?: NodeJS.ProcessEnv;
  /** Flags appended to each server's command line (a later flag overrides an earlier one in both). */
  extraArgs?: Partial<Record<ServerName, string[]>>;
}

/** The command line of one server, as run (also printed on the page). */
export function serverCommand(name: ServerName, setup: ServerSetup, port: number): { file: string; args: string[] } {
  const common = { port: String(port), threads: String(setup.threads) };
  if (name === 'cuda-llama') {
    return {
      file: process.execPath,
      args: [
        cliPath,
        'serve',
        setup.modelPath,
        '--host',
        '127.0.0.1',
        '--port',
        common.port,
        '--alias',
        MODEL_ALIAS,
        '--parallel',
        String(setup.parallel),
        '--context-size',
        String(setup.slotContext),
        '--threads',
        common.threads,
        '--threads-batch',
        common.threads,
        '--batch-size',
        String(setup.batch),
        '--ubatch-size',
        String(setup.ubatch),
        ...(setup.cudaDevices ? ['--gpu', 'cuda', '--gpu-layers', 'max'] : ['--gpu', 'cpu']),
        // One JSON line per request on stdout is work llama-server's default log does not match.
        '--no-log',
        ...(setup.extraArgs?.['cuda-llama'] ?? []),
      ],
    };
  }
  return {
    file: llamaServerPath,
    args: [
      '-m',
      setup.modelPath,
      '--host',
      '127.0.0.1',
      '--port',
      common.port,
      '--alias',
      MODEL_ALIAS,
      '-np',
      String(setup.parallel),
      '-c',
      String(setup.parallel * setup.slotContext),
      // Each slot its own window of slotContext cells, as cuda-llama's sequences (llama.cpp's kv_unified false).
      '--no-kv-unified',
      '-t',
      common.threads,
      '-tb',
      common.threads,
      '-b',
      String(setup.batch),
      '-ub',
      String(setup.ubatch),
      ...(setup.cudaDevices ? ['-ngl', '99', '-dev', setup.cudaDevices.join(',')] : ['-ngl', '0', '-dev', 'none']),
      // cache_prompt (a slot's own prefix reuse) stays on, its default; the host-RAM cache of idle
      // slots' states (8 GiB by default) is off: cuda-llama has none, and it would count in the RSS.
      '--cache-ram',
      '0',
      '--no-ui',
      ...(setup.extraArgs?.['llama-server'] ?? []),
    ],
  };
}

/** The llama-server of build/Release, built from the pinned llama.cpp against the addon's libllama/libggml. */
export function buildLlamaServer(): void {
  // The child's stdout goes to our stderr: our stdout is reserved for the JSON result.
  const result = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'build-tools.mjs'), 'llama-server'], {
    cwd: repoRoot,
    stdio: ['ignore', 2, 2],
  });
  if (result.status !== 0) fail('could not build llama-server (see above)');
}

const live = new Set<ChildProcess>();
let exitHooked = false;

/** A server still running when this process ends (an error, Ctrl-C, a timeout's SIGTERM) would hold its port and memory. */
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.on(signal, () => {
      log(`${signal}: stopping the servers`);
      process.exit(code);
    });
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** /proc/<pid>/status figures, in bytes. */
export interface MemorySample {
  rss: number;
  /** Highest RSS since the process started (VmHWM). */
  hwm: number;
  /** Anonymous memory: heaps, the KV cache, compute buffers, repacked weights. */
  rssAnon: number;
  /** File-backed pages: the memory-mapped model, the executable and its libraries. */
  rssFile: number;
}

export async function readMemory(pid: number): Promise<MemorySample | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kib = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kib('VmRSS'), hwm: kib('VmHWM'), rssAnon: kib('RssAnon'), rssFile: kib('RssFile') };
  } catch {
    return undefined;
  }
}

export interface RunningServer {
  name: ServerName;
  pid: number;
  baseUrl: string;
  command: string;
  /** The last 8000 characters the server wrote (stdout and stderr), for an error report. */
  outputTail(): string;
  /** Set when the process ended on its own. */
  exited(): string | undefined;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it ended. */
  stop(graceMs?: number): Promise<string>;
}

const HEALTH_TIMEOUT_MS = 300_000;

/** Starts one server on a free loopback port and resolves once GET /health answers 200. */
export async function startServer(name: ServerName, setup: ServerSetup): Promise<RunningServer> {
  hookExit();
  const port = await freePort();
  const { file, args } = serverCommand(name, setup, port);
  const child = spawn(file, args, {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: name === 'llama-server' ? setup.toolEnv : undefined,
  });
  live.add(child);
  let tail = '';
  const keep = (chunk: string) => (tail = (tail + chunk).slice(-8000));
  child.stdout!.setEncoding('utf8').on('data', keep);
  child.stderr!.setEncoding('utf8').on('data', keep);
  let ended: string | undefined;
  const closed = new Promise<string>((resolve) => {
    child.on('error', (error) => {
      ended = `failed to start: ${error.message}`;
      live.delete(child);
      resolve(ended);
    });
    child.on('exit', (code, signal) => {
      ended = code === null ? `killed by ${signal}` : `exit ${code}`;
      live.delete(child);
      resolve(ended);
    });
  });
  const server: RunningServer = {
    name,
    pid: child.pid ?? -1,
    baseUrl: `http://127.0.0.1:${port}`,
    command: [file === process.execPath ? 'node' : file, ...args].map((a) => a.replace(`${repoRoot}/`, '')).join(' '),
    outputTail: () => tail,
    exited: () => ended,
    async stop(graceMs = 15_000) {
      if (ended !== undefined) return ended;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const how = await closed;
      clearTimeout(timer);
      return how;
    },
  };
  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  for (;;) {
    if (ended !== undefined) throw new Error(`${name} ${ended} before it was ready:\n${tail.trim()}`);
    try {
      const response = await fetch(`${server.baseUrl}/health`, { signal: AbortSignal.timeout(5000) });
      await response.arrayBuffer();
      if (response.status === 200) return server;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await server.stop(2000);
      throw new Error(`${name} did not answer /health with 200 within ${HEALTH_TIMEOUT_MS / 1000} s:\n${tail.trim()}`);
    }
    await sleep(100);
  }
}

/** The model's KV-cache geometry, for the memory rows (both servers keep K and V in f16, their default). */
export interface ModelShape {
  architecture: string;
  layers: number;
  embedding: number;
  heads: number;
  headsKv: number;
  vocab: number;
  fileBytes: number;
  /** The type of the first layer's attention weights (Q4_0, F16...). */
  weightType: string;
}

export async function modelShape(path: string): Promise<ModelShape> {
  const file = await readGguf(path, { maxArrayItems: 1 << 20 });
  const arch = ggufString(file, 'general.architecture') ?? 'llama';
  const n = (key: string) => ggufNumber(file, `${arch}.${key}`) ?? NaN;
  const tokens = file.metadata.get('tokenizer.ggml.tokens');
  return {
    architecture: arch,
    layers: n('block_count'),
    embedding: n('embedding_length'),
    heads: n('attention.head_count'),
    headsKv: n('attention.head_count_kv'),
    vocab: tokens?.type === 'array' ? tokens.value.length : NaN,
    fileBytes: file.fileSize,
    weightType: file.tensors.find((t) => t.name.endsWith('attn_q.weight'))?.typeName ?? 'unknown',
  };
}

/**
 * K and V bytes of parallel × slotContext cells (llama.cpp pads the cell count to 256), f16: what
 * both servers allocate, computed from the model's shape rather than read from either server.
 */
export function kvCacheBytes(shape: ModelShape, parallel: number, slotContext: number): number {
  const cells = Math.ceil((parallel * slotContext) / 256) * 256;
  const kvWidth = (shape.embedding / shape.heads) * shape.headsKv;
  return cells * shape.layers * 2 * kvWidth * 2;
}

/** Tokens that end generation in llama.cpp when the vocabulary holds them under these names. */
const EOG_TEXTS = new Set([
  '</s>',
  '<|eot_id|>',
  '<|im_end|>',
  '<|end|>',
  '<end_of_turn>',
  '<|endoftext|>',
  '<EOT>',
  '<|return|>',
  '<|call|>',
]);

/**
 * A copy of the model whose output rows of the end-of-generation tokens are zero, so that greedy
 * decoding never picks one: their logit is 0 while the largest of the vocabulary's random logits
 * is far above it. Random weights otherwise end a generation early at EOS on one side or the
 * other; llama-server has ignore_eos, cuda-llama's server has no such field, and the same request
 * must go to both. Written once next to the other models (test/.models/).
 */
export async function withoutEndOfGeneration(path: string): Promise<{ path: string; tokens: number[] }> {
  const file = await readGguf(path, { maxArrayItems: 1 << 20 });
  const output = file.tensors.find((t) => t.name === 'output.weight') ?? file.tensors.find((t) => t.name === 'token_embd.weight');
  const texts = file.metadata.get('tokenizer.ggml.tokens');
  if (!output || texts?.type !== 'array') fail(`${path}: no output.weight or token list; pass a model of the llama family`);
  const ids = new Set<number>();
  for (const key of ['eos_token_id', 'eot_token_id', 'eom_token_id']) {
    const id = ggufNumber(file, `tokenizer.ggml.${key}`);
    if (id !== undefined) ids.add(id);
  }
  (texts.value as unknown[]).forEach((text, id) => {
    if (typeof text === 'string' && EOG_TEXTS.has(text)) ids.add(id);
  });
  const tokens = [...ids].sort((a, b) => a - b);
  const target = join(repoRoot, 'test', '.models', `${basename(path, '.gguf')}-noeog.gguf`);
  const [source, existing] = await Promise.all([stat(path), stat(target).catch(() => undefined)]);
  if (existing && existing.size === source.size && existing.mtimeMs >= source.mtimeMs) return { path: target, tokens };
  const vocab = output.dims[1]!;
  const rowBytes = output.byteSize / vocab;
  if (!Number.isInteger(rowBytes)) fail(`${path}: ${output.name} rows are not whole bytes`);
  log(`writing ${basename(target)}: ${basename(path)} with the output rows of tokens ${tokens.join(', ')} zeroed`);
  const partial = `${target}.${process.pid}.partial`;
  try {
    await copyFile(path, partial);
    const handle = await open(partial, 'r+');
    try {
      // Zero bytes are a zero row in every ggml type: the block scales are zero too.
      const zeros = Buffer.alloc(rowBytes);
      for (const id of tokens) await handle.write(zeros, 0, rowBytes, output.fileOffset + id * rowBytes);
    } finally {
      await handle.close();
    }
    await rename(partial, target);
  } catch (error) {
    await unlink(partial).catch(() => {});
    throw error;
  }
  return { path: target, tokens };
}
