/**
 * The serving benchmark (issue 27): one load generator drives cuda-llama's server (`cuda-llama
 * serve`, on dist/ under plain node) and llama.cpp's `llama-server` (built from the same pinned
 * llama.cpp against the same libllama/libggml, `npm run build:tools llama-server`) on the same model
 * file, slots, per-slot window, threads and batches, with C concurrent clients streaming OpenAI chat
 * completions: aggregate tokens per second, p50/p99 time to first token, p99 time between tokens,
 * errors, and each server's memory beyond the model and the KV cache.
 *
 *   npx tsx test/bench/serve.ts [--model tinyllama1b|small|tiny|file.gguf] [--quant Q4_0] [--rounds 8]
 *     [--clients 1,4,16,64] [--parallel 16] [--ctx 256] [--max-tokens 32] [--prompt-tokens 32]
 *     [--requests 8] [--threads N] [--batch 2048] [--ubatch 512] [--gpu] [--out DIR] [--write-docs]
 *
 * A round starts each server in turn (alternating which goes first), waits for /health, sends one
 * excluded warm-up request, then runs every client level against it and stops it; a level's figure
 * is the median over rounds of the per-round ratio, with its distribution-free 95% interval
 * (stats.ts). Both servers get the same slots at every level (--parallel), as a deployment would:
 * above that, requests queue in the server. Every request is distinct (serve-load.ts promptText) and
 * the same on both sides; the model is a copy whose end-of-generation rows are zeroed
 * (serve-servers.ts withoutEndOfGeneration), so every request generates --max-tokens tokens.
 */
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fail, git, log, repoRoot } from './common.js';
import { compileDist } from './ours.js';
import { levelFigures, promptText, runLevel, type RequestSpec } from './serve-load.js';
import { renderPage, type SideMemory, type ServeResult } from './serve-report.js';
import {
  SERVERS,
  buildLlamaServer,
  kvCacheBytes,
  modelShape,
  readMemory,
  serverCommand,
  startServer,
  withoutEndOfGeneration,
  type RunningServer,
  type ServerName,
  type ServerSetup,
} from './serve-servers.js';

const usage =
  'usage: npx tsx test/bench/serve.ts [--model tinyllama1b|small|tiny|file.gguf] [--quant Q4_0] [--rounds 8] [--clients 1,4,16,64] ' +
  '[--parallel 16] [--ctx 256] [--max-tokens 32] [--prompt-tokens 32] [--requests 8] [--threads N] [--batch 2048] [--ubatch 512] ' +
  '[--gpu] [--out test/bench/results/serve] [--write-docs]';

function positive(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) fail(`${name} must be a positive integer, got ${JSON.stringify(value)}\n${usage}`);
  return n;
}

/** A shape name finds the model `npm run bench` (compare.ts) makes; anything else is a file. */
async function resolveModel(model: string, quant: string): Promise<string> {
  if (['tinyllama1b', 'small', 'tiny'].includes(model)) {
    const dir = join(repoRoot, 'test', '.models');
    const suffix = `-${quant.toLowerCase()}.gguf`;
    const file = (await readdir(dir).catch(() => [] as string[])).find((f) => f.startsWith(`${model}-ctx32k-`) && f.endsWith(suffix));
    if (!file)
      fail(
        `no test/.models/${model}-ctx32k-*${suffix}: make it with \`npx tsx test/bench/compare.ts --model ${model} --quant ${quant} --prepare-only\`, or pass --model file.gguf`,
      );
    return join(dir, file);
  }
  return resolve(model);
}

/** CPU ticks of a process (utime + stime), or of the whole machine, for the interference figure. */
async function processTicks(pid: number | 'self'): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
}
async function machineTicks(): Promise<{ busy: number; all: number }> {
  const f = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  return { busy: user + nice + sys + irq + softirq + steal, all: user + nice + sys + idle + iowait + irq + softirq + steal };
}

/** One level on one server: its figures and the share of the machine's CPU that neither the server nor this process used. */
async function measureLevel(server: RunningServer, clients: number, specs: RequestSpec[], maxTokens: number) {
  const [m0, s0, p0] = await Promise.all([machineTicks(), processTicks('self'), processTicks(server.pid)]);
  const run = await runLevel(server.baseUrl, clients, specs);
  const [m1, s1, p1] = await Promise.all([machineTicks(), processTicks('self'), processTicks(server.pid)]);
  const other = Math.max(0, m1.busy - m0.busy - (s1 - s0) - (p1 - p0)) / Math.max(1, m1.all - m0.all);
  return { figures: levelFigures(run, maxTokens), hashes: run.requests.map((r) => r.textHash), otherCpu: other };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'tinyllama1b' },
      quant: { type: 'string', default: 'Q4_0' },
      rounds: { type: 'string', default: '8' },
      clients: { type: 'string', default: '1,4,16,64' },
      parallel: { type: 'string', default: '16' },
      ctx: { type: 'string', default: '256' },
      'max-tokens': { type: 'string', default: '32' },
      'prompt-tokens': { type: 'string', default: '32' },
      requests: { type: 'string', default: '8' },
      threads: { type: 'string' },
      batch: { type: 'string', default: '2048' },
      ubatch: { type: 'string', default: '512' },
      gpu: { type: 'boolean', default: false },
      out: { type: 'string', default: join(repoRoot, 'test', 'bench', 'results', 'serve') },
      'write-docs': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stderr.write(`${usage}\n`);
    return;
  }
  const rounds = positive('--rounds', values.rounds);
  const levels = values.clients.split(',').map((c) => positive('--clients', c));
  const maxTokens = positive('--max-tokens', values['max-tokens']);
  const promptTokens = positive('--prompt-tokens', values['prompt-tokens']);
  const minRequests = positive('--requests', values.requests);
  const threads = values.threads === undefined ? availableParallelism() : positive('--threads', values.threads);
  const parallel = positive('--parallel', values.parallel);
  const slotContext = positive('--ctx', values.ctx);
  // The chat template wraps the message in a few dozen tokens at most.
  if (promptTokens + maxTokens + 64 > slotContext)
    fail(`--ctx ${slotContext} is too small for --prompt-tokens ${promptTokens} + --max-tokens ${maxTokens} + the chat template (64)`);

  const sourceModel = await resolveModel(values.model, values.quant);
  let setupGpu: Pick<ServerSetup, 'cudaDevices' | 'toolEnv'> = {};
  if (values.gpu) {
    // Imported only here: on the CPU the orchestrator never loads the addon.
    const { requireCuda } = await import('./gpu.js');
    const { toolEnv } = await import('./llama-bench.js');
    const build = await requireCuda(sourceModel);
    setupGpu = { cudaDevices: build.cuda.devices, toolEnv: toolEnv(build) };
  }
  buildLlamaServer();
  compileDist();
  const noEog = await withoutEndOfGeneration(sourceModel);
  const setup: ServerSetup = {
    modelPath: noEog.path,
    parallel,
    slotContext,
    threads,
    batch: positive('--batch', values.batch),
    ubatch: positive('--ubatch', values.ubatch),
    ...setupGpu,
  };
  const shape = await modelShape(noEog.path);
  const kvBytes = kvCacheBytes(shape, parallel, slotContext);
  // The same distinct requests on both servers, and the same in every round (each round restarts both).
  const specsByLevel = levels.map((clients, li) =>
    Array.from({ length: clients * Math.ceil(minRequests / clients) }, (_, i): RequestSpec => ({
      content: promptText(li * 100_000 + i + 1, promptTokens),
      maxTokens,
    })),
  );
  const warmup: RequestSpec = { content: promptText(0, promptTokens), maxTokens };
  log(
    `${rounds} rounds x ${SERVERS.join(' and ')} x clients ${levels.join(', ')} (${specsByLevel.map((s) => s.length).join(', ')} requests), ` +
      `${parallel} slots of ${slotContext} tokens, ${threads} threads, model ${relative(repoRoot, noEog.path)}`,
  );

  const started = Date.now();
  const result: ServeResult['rounds'] = [];
  const memory: Record<ServerName, SideMemory[]> = { 'cuda-llama': [], 'llama-server': [] };
  const commands: Partial<Record<ServerName, string>> = {};
  const exits: Record<ServerName, string[]> = { 'cuda-llama': [], 'llama-server': [] };
  for (let r = 0; r < rounds; r++) {
    const order: ServerName[] = r % 2 === 0 ? ['cuda-llama', 'llama-server'] : ['llama-server', 'cuda-llama'];
    const round: ServeResult['rounds'][number] = { first: order[0]!, levels: levels.map((clients) => ({ clients, sides: {} })) };
    for (const name of order) {
      const startedAt = Date.now();
      const server = await startServer(name, setup);
      log(`round ${r + 1}/${rounds} ${name}: ready in ${((Date.now() - startedAt) / 1000).toFixed(1)} s (pid ${server.pid})`);
      commands[name] = server.command;
      let peakRss = 0;
      let peakAnon = 0;
      const sample = async () => {
        const m = await readMemory(server.pid);
        if (m) {
          peakRss = Math.max(peakRss, m.rss);
          peakAnon = Math.max(peakAnon, m.rssAnon);
        }
        return m;
      };
      const sampler = setInterval(() => void sample(), 250);
      try {
        const loaded = await sample();
        const warm = await runLevel(server.baseUrl, 1, [warmup]);
        if (warm.requests[0]?.error)
          throw new Error(`${name}: the warm-up request failed: ${warm.requests[0].error}\n${server.outputTail()}`);
        const ready = await sample();
        for (const [li, clients] of levels.entries()) {
          const level = await measureLevel(server, clients, specsByLevel[li]!, maxTokens);
          round.levels[li]!.sides[name] = level;
          const f = level.figures;
          log(
            `round ${r + 1}/${rounds} ${name} ${clients} clients: ${f.tokensPerSecond.toFixed(1)} tok/s, TTFT p50 ${f.ttftP50Ms.toFixed(0)} p99 ${f.ttftP99Ms.toFixed(0)} ms, ` +
              `ITL p99 ${f.itlP99Ms.toFixed(1)} ms, ${f.completionTokens} tokens in ${f.requests} requests, errors ${f.errors}, short ${f.short}, reconnected ${f.reconnected}` +
              `${f.firstErrors.length ? ` (${f.firstErrors.join(' | ')})` : ''}, other processes ${(level.otherCpu * 100).toFixed(0)}% CPU`,
          );
          if (server.exited()) throw new Error(`${name} ${server.exited()} during the ${clients}-client level:\n${server.outputTail()}`);
        }
        await new Promise((done) => setTimeout(done, 500));
        const idle = await sample();
        memory[name].push({ loaded, ready, idle, peakRss, peakAnon });
      } finally {
        clearInterval(sampler);
        const stopping = Date.now();
        exits[name].push(await server.stop());
        log(`round ${r + 1}/${rounds} ${name}: ${exits[name].at(-1)} after ${((Date.now() - stopping) / 1000).toFixed(1)} s`);
      }
    }
    result.push(round);
  }
  const wallS = (Date.now() - started) / 1000;
  log(`measured in ${wallS.toFixed(0)} s`);

  const cpuModel =
    /^model name\s*:\s*(.+)$/m.exec(await readFile('/proc/cpuinfo', 'utf8').catch(() => ''))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  const serveResult: ServeResult = {
    date: new Date()
      .toISOString()
      .replace('T', ' ')
      .replace(/\.\d+Z$/, ''),
    commit: git(['rev-parse', '--short', 'HEAD']),
    dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '',
    machine: `${cpuModel}, ${cpus().length} logical CPUs, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM`,
    command: `npx tsx test/bench/serve.ts ${process.argv.slice(2).join(' ')}`.trim(),
    model: { source: relative(repoRoot, sourceModel), served: relative(repoRoot, noEog.path), zeroedTokens: noEog.tokens, shape },
    settings: {
      rounds,
      levels,
      parallel,
      slotContext,
      threads,
      batch: setup.batch,
      ubatch: setup.ubatch,
      maxTokens,
      promptTokens,
      gpu: setupGpu.cudaDevices ?? null,
    },
    requestsPerLevel: specsByLevel.map((s) => s.length),
    commands: Object.fromEntries(SERVERS.map((n) => [n, commands[n] ?? serverCommand(n, setup, 0).args.join(' ')])) as Record<
      ServerName,
      string
    >,
    kvBytes,
    memory,
    exits,
    rounds: result,
    wallSeconds: wallS,
  };
  const page = renderPage(serveResult);
  await mkdir(values.out, { recursive: true });
  await writeFile(join(values.out, 'result.json'), `${JSON.stringify(serveResult, null, 1)}\n`);
  await writeFile(join(values.out, 'serve.md'), page);
  if (values['write-docs']) {
    const docs = join(repoRoot, 'test', 'bench', 'results', 'latest', values.gpu ? 'serve-gpu.md' : 'serve.md');
    await writeFile(docs, page);
    log(`wrote ${relative(repoRoot, docs)}`);
  }
  process.stderr.write(`\n${page}\n`);
  process.stdout.write(`${JSON.stringify(serveResult)}\n`);
  log(`wrote ${relative(repoRoot, join(values.out, 'result.json'))} and serve.md`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  // The exit hook of serve-servers.ts kills any server still running.
  process.exit(1);
});
