/**
 * What the two serving benchmarks, serve.ts and structured.ts, share around the servers
 * (serve-servers.ts) and the load generator (serve-load.ts): the model a shape name stands for, the
 * servers' setup, one measured level and the result's header. Both scripts run their main() when
 * imported, so none of this can live in either.
 */
import { readFile, readdir } from 'node:fs/promises';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fail, git, positiveInteger, repoRoot } from './common.js';
import { compileDist } from './ours.js';
import { levelFigures, runLevel, type LevelRun, type RequestSpec } from './serve-load.js';
import type { ServeRunHeader, ServeSettings, SideLevel } from './serve-report.js';
import {
  SERVERS,
  buildLlamaServer,
  modelShape,
  serverCommand,
  withoutEndOfGeneration,
  type ModelShape,
  type RunningServer,
  type ServerName,
  type ServerSetup,
} from './serve-servers.js';
import { cpuSnapshot } from './stats.js';

/** A shape name finds the model `compare.ts --model NAME --quant QUANT --prepare-only` makes; anything else is a file. */
export async function resolveServeModel(model: string, quant: string): Promise<string> {
  if (!['tinyllama1b', 'small', 'tiny'].includes(model)) return resolve(model);
  const dir = join(repoRoot, 'test', '.models');
  const suffix = `-${quant.toLowerCase()}.gguf`;
  const file = (await readdir(dir).catch(() => [] as string[])).find((f) => f.startsWith(`${model}-ctx32k-`) && f.endsWith(suffix));
  if (!file)
    fail(
      `no test/.models/${model}-ctx32k-*${suffix}: make it with \`npx tsx test/bench/compare.ts --model ${model} --quant ${quant} --prepare-only\`, or pass --model file.gguf`,
    );
  return join(dir, file);
}

/** Each script's own defaults for the options both serving benchmarks take. */
export interface ServeBenchDefaults {
  clients: string;
  parallel: string;
  ctx: string;
  maxTokens: string;
  out: string;
}

/** parseArgs options both serving benchmarks take (a script adds its own beside them). */
export function serveBenchOptions(defaults: ServeBenchDefaults) {
  return {
    model: { type: 'string', default: 'tinyllama1b' },
    quant: { type: 'string', default: 'Q4_0' },
    rounds: { type: 'string', default: '8' },
    clients: { type: 'string', default: defaults.clients },
    parallel: { type: 'string', default: defaults.parallel },
    ctx: { type: 'string', default: defaults.ctx },
    'max-tokens': { type: 'string', default: defaults.maxTokens },
    'prompt-tokens': { type: 'string', default: '32' },
    requests: { type: 'string', default: '8' },
    threads: { type: 'string' },
    batch: { type: 'string', default: '2048' },
    ubatch: { type: 'string', default: '512' },
    gpu: { type: 'boolean', default: false },
    out: { type: 'string', default: defaults.out },
    'write-docs': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  } as const;
}

/** The shared options read, each a positive integer where it must be (else exit with `usage`). */
export interface ServeBenchSettings {
  rounds: number;
  /** --clients, distinct and ascending. */
  levels: number[];
  maxTokens: number;
  promptTokens: number;
  minRequests: number;
  threads: number;
  parallel: number;
  slotContext: number;
  batch: number;
  ubatch: number;
}

export function serveBenchSettings(
  values: {
    [K in 'rounds' | 'clients' | 'max-tokens' | 'prompt-tokens' | 'requests' | 'parallel' | 'ctx' | 'batch' | 'ubatch']: string;
  } & {
    threads?: string;
  },
  usage: string,
): ServeBenchSettings {
  const positive = (name: string, value: string) => positiveInteger(name, value, usage);
  const settings: ServeBenchSettings = {
    rounds: positive('--rounds', values.rounds),
    levels: [...new Set(values.clients.split(',').map((c) => positive('--clients', c)))].sort((a, b) => a - b),
    maxTokens: positive('--max-tokens', values['max-tokens']),
    promptTokens: positive('--prompt-tokens', values['prompt-tokens']),
    minRequests: positive('--requests', values.requests),
    threads: values.threads === undefined ? availableParallelism() : positive('--threads', values.threads),
    parallel: positive('--parallel', values.parallel),
    slotContext: positive('--ctx', values.ctx),
    batch: positive('--batch', values.batch),
    ubatch: positive('--ubatch', values.ubatch),
  };
  // The chat template wraps the message in a few dozen tokens at most.
  const { promptTokens, maxTokens, slotContext } = settings;
  if (promptTokens + maxTokens + 64 > slotContext)
    fail(`--ctx ${slotContext} is too small for --prompt-tokens ${promptTokens} + --max-tokens ${maxTokens} + the chat template (64)`);
  return settings;
}

export interface ServedModel {
  setup: ServerSetup;
  /** The copy both servers load: serve-servers.ts withoutEndOfGeneration. */
  path: string;
  zeroedTokens: number[];
  shape: ModelShape;
}

/**
 * Builds what both servers need (llama-server, dist/, with `gpu` the CUDA check) and the model
 * copy they serve, and gives the setup both start with.
 */
export async function prepareServers(
  sourceModel: string,
  options: Pick<ServerSetup, 'parallel' | 'slotContext' | 'threads' | 'batch' | 'ubatch'> & { gpu: boolean },
): Promise<ServedModel> {
  const { gpu, ...sizes } = options;
  let setupGpu: Pick<ServerSetup, 'cudaDevices' | 'toolEnv'> = {};
  if (gpu) {
    // Imported only here: on the CPU the orchestrator never loads the addon.
    const { requireCuda } = await import('./gpu.js');
    const { toolEnv } = await import('./llama-bench.js');
    const build = await requireCuda(sourceModel);
    setupGpu = { cudaDevices: build.cuda.devices, toolEnv: toolEnv(build) };
  }
  buildLlamaServer();
  compileDist();
  const noEog = await withoutEndOfGeneration(sourceModel);
  return {
    setup: { modelPath: noEog.path, ...sizes, ...setupGpu },
    path: noEog.path,
    zeroedTokens: noEog.tokens,
    shape: await modelShape(noEog.path),
  };
}

/** CPU ticks (utime + stime) of a process, 0 where /proc cannot tell. */
async function processTicks(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
}

/**
 * One level on one server: the requests as sent, and the level's figures with the share of the
 * machine's CPU that neither the server nor this process used (stats.ts cpuSnapshot: steal is not
 * counted as busy; NaN without /proc).
 */
export async function measureLevel(
  server: RunningServer,
  clients: number,
  specs: RequestSpec[],
  maxTokens: number,
): Promise<{ run: LevelRun; level: SideLevel }> {
  const [before, s0] = await Promise.all([cpuSnapshot(), processTicks(server.pid)]);
  const run = await runLevel(server.baseUrl, clients, specs);
  const [after, s1] = await Promise.all([cpuSnapshot(), processTicks(server.pid)]);
  const otherCpu =
    before && after
      ? Math.max(0, after.busy - before.busy - (after.ours - before.ours) - (s1 - s0)) / Math.max(1, after.all - before.all)
      : NaN;
  return { run, level: { figures: levelFigures(run, maxTokens), hashes: run.requests.map((r) => r.textHash), otherCpu } };
}

/** The result's header: the run's date, commit, machine and command, the model, and each server's command line. */
export async function runHeader<S extends ServeSettings>(run: {
  script: string;
  sourceModel: string;
  served: ServedModel;
  settings: S;
  requestsPerLevel: number[];
  /** The command line each server was last started with; one never started gets its line for port 0. */
  commands: Partial<Record<ServerName, string>>;
  exits: Record<ServerName, string[]>;
  wallSeconds: number;
}): Promise<ServeRunHeader & { settings: S }> {
  const cpuModel =
    /^model name\s*:\s*(.+)$/m.exec(await readFile('/proc/cpuinfo', 'utf8').catch(() => ''))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  const { served } = run;
  return {
    date: new Date()
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, ''),
    commit: git(['rev-parse', '--short', 'HEAD']),
    dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '',
    machine: `${cpuModel}, ${cpus().length} logical CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM`,
    command: `npx tsx test/bench/${run.script} ${process.argv.slice(2).join(' ')}`.trim(),
    model: {
      source: relative(repoRoot, run.sourceModel),
      served: relative(repoRoot, served.path),
      zeroedTokens: served.zeroedTokens,
      shape: served.shape,
    },
    settings: run.settings,
    requestsPerLevel: run.requestsPerLevel,
    commands: Object.fromEntries(SERVERS.map((n) => [n, run.commands[n] ?? serverCommand(n, served.setup, 0).args.join(' ')])) as Record<
      ServerName,
      string
    >,
    exits: run.exits,
    wallSeconds: run.wallSeconds,
  };
}
