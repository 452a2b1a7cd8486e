/**
 * Replica-pool benchmark (issue 34): the same server code with 2 replicas (each half the sequences
 * and half the threads) against 1 replica (all the sequences and threads), at 16 and 64 concurrent
 * streaming chat clients: aggregate completion tokens per second and p99 time to first token.
 * Rounds are paired and interleaved (the order of the two sides alternates each round); each figure
 * is the median over rounds of the per-round ratio (2 replicas / 1 replica), with its 95% interval
 * (stats.ts). Every request generates exactly --max-tokens tokens (ignore_eos).
 *
 *   npx tsx test/bench/replicas.ts [--model tiny|small] [--rounds 6] [--clients 16,64] [--sequences 8]
 *     [--max-tokens 32] [--prompt-tokens 32] [--threads 2] [--out test/bench/results/latest/replicas.md]
 *
 * Both servers run in this process, beside the load generator, on the CPU; on a machine with one
 * CPU (or two cores, as CI's) the two replicas share the same cores as the one, so what this shows
 * is the router's overhead and the cost of splitting the batch, not a gain. On a machine with two
 * GPUs, run it with --gpu to place one replica per GPU.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { Llama, createServer, type LlamaModel, type LlamaServer } from '../../lib/index.js';
import { ReplicaPool } from '../../lib/server/replicas.js';
import type { LoadOptions } from '../../lib/options.js';
import type { SyntheticShapeName } from '../../lib/gguf/synthetic-model.js';
import { quantizedModel, syntheticModel } from '../helpers/models.js';
import { git, log, positiveInteger, repoRoot, roundOrder } from './common.js';
import { levelFigures, promptText, runLevel, type RequestSpec } from './serve-load.js';
import { MODEL_ALIAS } from './serve-servers.js';
import { medianWithInterval, stats } from './stats.js';

const usage =
  'usage: npx tsx test/bench/replicas.ts [--model tiny|small] [--rounds 6] [--clients 16,64] [--sequences 8] ' +
  '[--max-tokens 32] [--prompt-tokens 32] [--threads 2] [--gpu] [--out test/bench/results/latest/replicas.md]';

type Side = 'one' | 'two';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'tiny' },
      rounds: { type: 'string', default: '6' },
      clients: { type: 'string', default: '16,64' },
      sequences: { type: 'string', default: '8' },
      'max-tokens': { type: 'string', default: '32' },
      'prompt-tokens': { type: 'string', default: '32' },
      threads: { type: 'string', default: '2' },
      gpu: { type: 'boolean', default: false },
      out: { type: 'string', default: join(repoRoot, 'test', 'bench', 'results', 'latest', 'replicas.md') },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stderr.write(`${usage}\n`);
    return;
  }
  const rounds = positiveInteger('--rounds', values.rounds, usage);
  const levels = values.clients.split(',').map((c) => positiveInteger('--clients', c, usage));
  const sequences = positiveInteger('--sequences', values.sequences, usage);
  const maxTokens = positiveInteger('--max-tokens', values['max-tokens'], usage);
  const promptTokens = positiveInteger('--prompt-tokens', values['prompt-tokens'], usage);
  const threads = positiveInteger('--threads', values.threads, usage);
  if (sequences % 2 !== 0) throw new RangeError('--sequences must be even: the two replicas get half each');
  // The 1.1B shape is the GPU benchmarks' model: Q4_0, as they use it.
  const path =
    values.model === 'tinyllama1b' ? await quantizedModel('tinyllama1b', 'Q4_0') : await syntheticModel(values.model as SyntheticShapeName);
  const contextSize = 2 * (promptTokens * 2 + maxTokens + 64);
  const base: LoadOptions = { gpu: values.gpu ? 'cuda' : 'cpu', contextSize, warmup: true };

  log(
    `loading 1 replica (${sequences} sequences, ${threads} threads) and 2 replicas (${sequences / 2} sequences, ${Math.max(1, threads / 2)} threads each)`,
  );
  const single: LlamaModel = await Llama.load(path, { ...base, sequences, threads });
  const pool = new ReplicaPool(path, {
    replicas: 2,
    ...(values.gpu ? {} : { devices: ['CPU'] }),
    load: { ...base, sequences: sequences / 2, threads: Math.max(1, Math.floor(threads / 2)) },
  });
  await pool.ready;
  const sharedDevice = pool.replicas[0]!.device === pool.replicas[1]!.device;
  const servers: Record<Side, LlamaServer> = {
    one: createServer(single, { alias: MODEL_ALIAS }),
    two: createServer(pool, { alias: MODEL_ALIAS }),
  };
  const urls: Record<Side, string> = {
    one: await servers.one.listen({ port: 0 }),
    two: await servers.two.listen({ port: 0 }),
  };

  // Ratios (two / one) per level and round.
  const tps: Record<number, number[]> = {};
  const ttft: Record<number, number[]> = {};
  const raw: Record<Side, Record<number, { tps: number[]; ttftP99: number[] }>> = { one: {}, two: {} };
  let nextId = 0;
  try {
    for (const side of ['one', 'two'] as const) {
      await runLevel(urls[side], 1, [{ content: promptText(nextId++, promptTokens), maxTokens: 4 }]); // warm-up, excluded
    }
    for (let round = 0; round < rounds; round++) {
      for (const clients of levels) {
        const count = clients * 2;
        // The same distinct prompts for both sides of a round.
        const specs: RequestSpec[] = Array.from({ length: count }, () => ({
          content: promptText(nextId++, promptTokens),
          maxTokens,
          body: { ignore_eos: true },
        }));
        const figures: Partial<Record<Side, ReturnType<typeof levelFigures>>> = {};
        for (const side of roundOrder(['one', 'two'] as const, round)) {
          const run = await runLevel(urls[side], clients, specs);
          const f = levelFigures(run, maxTokens);
          if (f.errors > 0) throw new Error(`${side} replica(s), ${clients} clients: ${f.errors} errors: ${f.firstErrors.join('; ')}`);
          figures[side] = f;
          const r = (raw[side][clients] ??= { tps: [], ttftP99: [] });
          r.tps.push(f.tokensPerSecond);
          r.ttftP99.push(f.ttftP99Ms);
        }
        (tps[clients] ??= []).push(figures.two!.tokensPerSecond / figures.one!.tokensPerSecond);
        (ttft[clients] ??= []).push(figures.two!.ttftP99Ms / figures.one!.ttftP99Ms);
        log(
          `round ${round + 1}/${rounds}, ${clients} clients: tokens/s one ${figures.one!.tokensPerSecond.toFixed(0)}, two ${figures.two!.tokensPerSecond.toFixed(0)}; ` +
            `p99 TTFT one ${figures.one!.ttftP99Ms.toFixed(0)} ms, two ${figures.two!.ttftP99Ms.toFixed(0)} ms`,
        );
      }
    }
  } finally {
    await servers.one.close();
    await servers.two.close();
    await single.dispose();
    await pool.dispose();
  }

  const commit = git(['rev-parse', '--short', 'HEAD']);
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  const lines = [
    '# Replicas: 2 against 1',
    '',
    `${new Date().toISOString().slice(0, 10)}, commit ${commit}, ${cpu} (${cpus().length} logical CPUs), ${values.gpu ? 'CUDA' : 'CPU only'}.`,
    `Command: \`npx tsx test/bench/replicas.ts --model ${values.model} --rounds ${rounds} --clients ${levels.join(',')} --sequences ${sequences} ` +
      `--max-tokens ${maxTokens} --prompt-tokens ${promptTokens} --threads ${threads}${values.gpu ? ' --gpu' : ''}\``,
    '',
    `Synthetic model \`${values.model}\`; 1 replica: ${sequences} sequences, ${threads} threads; 2 replicas: ${sequences / 2} sequences and ` +
      `${Math.max(1, Math.floor(threads / 2))} thread(s) each (the same total). Streaming chat, ${promptTokens}-token prompts, exactly ${maxTokens} ` +
      `tokens each, 2 requests per client per level; ${rounds} paired rounds, order alternating. Ratios are 2 replicas / 1 replica: ` +
      'the median over rounds with its 95% interval.',
    '',
    '| clients | tokens/s, 1 replica | tokens/s, 2 replicas | throughput ratio | p99 TTFT, 1 replica (ms) | p99 TTFT, 2 replicas (ms) | p99 TTFT ratio |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...levels
      .map((c) =>
        [
          c,
          stats(raw.one[c]!.tps).median.toFixed(0),
          stats(raw.two[c]!.tps).median.toFixed(0),
          medianWithInterval(tps[c]!, 2),
          stats(raw.one[c]!.ttftP99).median.toFixed(0),
          stats(raw.two[c]!.ttftP99).median.toFixed(0),
          medianWithInterval(ttft[c]!, 2),
        ].join(' | '),
      )
      .map((row) => `| ${row} |`),
    '',
    values.gpu
      ? sharedDevice
        ? `Both replicas on ${pool.replicas[0]!.device}, one set of weights and two contexts: the ratio says whether two engines ` +
          'keep one GPU busier than one engine with the same sequences, less the router.'
        : 'One replica per GPU: the throughput ratio is the gain from the second GPU, less the router.'
      : `Both sides share the same ${cpus().length} logical CPUs (and this process, whose event loop also runs the load generator), ` +
        'so two replicas add no compute: on a CPU this measures the router and the split batch (two engines each decoding half the ' +
        'sequences), not a gain. ' +
        (stats(levels.map((c) => stats(tps[c]!).median)).median > 1.05
          ? "Here the two 1-thread engines were faster than one 2-thread engine: on a small, shared machine one engine's threadpool " +
            'waits at every graph barrier for a core that other work holds, which two single-threaded engines never do. That is a ' +
            'property of the busy machine, not of replicas.'
          : 'A ratio at or below 1 is the overhead.'),
    '',
  ];
  await mkdir(dirname(values.out), { recursive: true });
  await writeFile(values.out, lines.join('\n'));
  log(`wrote ${relative(repoRoot, values.out)}`);
  process.stdout.write(lines.join('\n'));
}

await main();
