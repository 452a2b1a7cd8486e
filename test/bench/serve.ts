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
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { log, repoRoot, roundOrder } from './common.js';
import { promptText, runLevel, type RequestSpec } from './serve-load.js';
import { renderPage, type SideMemory, type ServeResult } from './serve-report.js';
import { measureLevel, prepareServers, resolveServeModel, runHeader, serveBenchOptions, serveBenchSettings } from './serve-run.js';
import { SERVERS, kvCacheBytes, readMemory, startServer, type ServerName } from './serve-servers.js';

const usage =
  'usage: npx tsx test/bench/serve.ts [--model tinyllama1b|small|tiny|file.gguf] [--quant Q4_0] [--rounds 8] [--clients 1,4,16,64] ' +
  '[--parallel 16] [--ctx 256] [--max-tokens 32] [--prompt-tokens 32] [--requests 8] [--threads N] [--batch 2048] [--ubatch 512] ' +
  '[--gpu] [--out test/bench/results/serve] [--write-docs]';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: serveBenchOptions({
      clients: '1,4,16,64',
      parallel: '16',
      ctx: '256',
      maxTokens: '32',
      out: join(repoRoot, 'test', 'bench', 'results', 'serve'),
    }),
    strict: true,
  });
  if (values.help) {
    process.stderr.write(`${usage}\n`);
    return;
  }
  const { rounds, levels, maxTokens, promptTokens, minRequests, threads, parallel, slotContext, batch, ubatch } = serveBenchSettings(
    values,
    usage,
  );

  const sourceModel = await resolveServeModel(values.model, values.quant);
  const served = await prepareServers(sourceModel, {
    parallel,
    slotContext,
    threads,
    batch,
    ubatch,
    gpu: values.gpu,
  });
  const { setup } = served;
  const kvBytes = kvCacheBytes(served.shape, parallel, slotContext);
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
      `${parallel} slots of ${slotContext} tokens, ${threads} threads, model ${relative(repoRoot, served.path)}`,
  );

  const started = Date.now();
  const result: ServeResult['rounds'] = [];
  const memory: Record<ServerName, SideMemory[]> = { 'cuda-llama': [], 'llama-server': [] };
  const commands: Partial<Record<ServerName, string>> = {};
  const exits: Record<ServerName, string[]> = { 'cuda-llama': [], 'llama-server': [] };
  for (let r = 0; r < rounds; r++) {
    const order = roundOrder(SERVERS, r);
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
          const { level } = await measureLevel(server, clients, specsByLevel[li]!, maxTokens);
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

  const serveResult: ServeResult = {
    ...(await runHeader({
      script: 'serve.ts',
      sourceModel,
      served,
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
        gpu: setup.cudaDevices ?? null,
      },
      requestsPerLevel: specsByLevel.map((s) => s.length),
      commands,
      exits,
      wallSeconds: wallS,
    })),
    kvBytes,
    memory,
    rounds: result,
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
