/**
 * Embeddings and rerank (issue 33): texts per second on three sides, documents per second on two,
 * each a fresh process per round, in paired rounds.
 *
 * Embeddings, per workload (256 and 4,096 short texts of 8-32 tokens, 64 texts of 500 tokens, the
 * most node-llama-cpp takes in a 512-token context):
 * - cuda-llama: model.embed(texts), one call (cuda-llama-child.mjs kind 'embed'), which packs
 *   whole texts into as few decodes as the context (512) and 256 sequences allow;
 * - llama.cpp's llama-embedding with the same texts, context, batch (= ubatch = context, as it
 *   sets for an encoder), pooling and normalization: its time is its process's wall time for the
 *   texts less its wall time for one text in the same round (load, start-up and exit), so like
 *   ours it includes tokenizing the texts and handing the vectors back (printed, array format);
 * - node-llama-cpp's LlamaEmbeddingContext, getEmbeddingFor() per text (its API embeds one text
 *   per call), context and batch 512.
 * Rerank: 100 documents of about 128 tokens against one query, in one request to each server's
 * /v1/rerank: `cuda-llama serve` and llama.cpp's llama-server --rerank, on the same model,
 * threads and batch (2048), llama-server with 16 slots in one unified cache so that it batches
 * documents together.
 *
 * Each figure is the median over rounds with its distribution-free 95% interval (stats.ts);
 * ratios are per round. The order of the sides rotates from round to round.
 *
 *   npx tsx test/bench/embeddings.ts [--rounds 6] [--model smallBert|bgeSmall|file.gguf]
 *        [--rerank-model smallQwen3Reranker|file.gguf] [--workloads short256,short4096,long64]
 *        [--threads N] [--gpu] [--no-node-llama-cpp] [--no-rerank] [--out DIR] [--write-docs]
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Llama, type LlamaModel } from '../../lib/index.js';
import { shapes, type SyntheticShapeName } from '../../lib/gguf/synthetic-model.js';
import { defaultThreadCount } from '../../lib/options.js';
import { syntheticModel } from '../helpers/models.js';
import { fail, log, positiveInteger, repoRoot, roundOrder, runJsonChild } from './common.js';
import { runNodeLlamaCppScenario } from './node-llama-cpp.js';
import {
  defaultOutDir,
  interferenceLine,
  latestDir,
  machineLines,
  nodeLlamaCppPlacement,
  setUp,
  timedSide,
  writeOutputs,
  type OtherCpu,
} from './scenarios.js';
import { buildLlamaServer, startServer, MODEL_ALIAS, type ServerName } from './serve-servers.js';
import { medianWithInterval, stats, targetVerdict, verdictWords } from './stats.js';

const usage =
  'usage: npx tsx test/bench/embeddings.ts [--rounds 6] [--model smallBert|bgeSmall|file.gguf] [--rerank-model smallQwen3Reranker|file.gguf] ' +
  '[--workloads short256,short4096,long64] [--threads N] [--gpu] [--no-node-llama-cpp] [--no-rerank] [--out DIR] [--write-docs]';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    model: { type: 'string' },
    'rerank-model': { type: 'string' },
    workloads: { type: 'string', default: 'short256,short4096,long64' },
    threads: { type: 'string' },
    gpu: { type: 'boolean', default: false },
    'no-node-llama-cpp': { type: 'boolean', default: false },
    'no-rerank': { type: 'boolean', default: false },
    out: { type: 'string' },
    'write-docs': { type: 'boolean', default: false },
  },
});

const CONTEXT = 512;
const RERANK_CONTEXT = 2048;
const RERANK_DOCUMENTS = 100;
const RERANK_DOCUMENT_TOKENS = 128;
/** The issue's targets: at least llama-embedding's throughput (1), ahead of node-llama-cpp (1), rerank at least llama-server's (1). */
const TARGET = 1;

const WORKLOADS = {
  short256: { count: 256, minTokens: 8, maxTokens: 32 },
  short4096: { count: 4096, minTokens: 8, maxTokens: 32 },
  // 500 rather than 512: node-llama-cpp refuses an input of its whole context ("longer than the usable context size").
  long64: { count: 64, minTokens: 500, maxTokens: 500 },
} as const;
type WorkloadName = keyof typeof WORKLOADS;

const rounds = positiveInteger('--rounds', args.rounds, usage);
const threads = args.threads === undefined ? defaultThreadCount() : positiveInteger('--threads', args.threads, usage);
const workloads = args.workloads.split(',').map((w) => {
  if (!Object.hasOwn(WORKLOADS, w)) fail(`--workloads: unknown '${w}' (${Object.keys(WORKLOADS).join(', ')})\n${usage}`);
  return w as WorkloadName;
});
const withNodeLlamaCpp = !args['no-node-llama-cpp'];
const withRerank = !args['no-rerank'];

async function modelPath(value: string | undefined, fallback: SyntheticShapeName): Promise<string> {
  const name = value ?? fallback;
  if (Object.hasOwn(shapes, name)) return syntheticModel(name as SyntheticShapeName);
  if (!existsSync(name)) fail(`--model: no shape or file '${name}'`);
  return name;
}

/** Seeded words: the same texts every round and on every side. */
function wordSource(seed: number): () => string {
  const words =
    'the of retrieval model vector search query document local index token embedding cosine rank score passage answer question context window batch memory device kernel layer sequence'.split(
      ' ',
    );
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return words[state % words.length]!;
  };
}

/** Texts whose token counts (as `model` tokenizes them, special tokens included) fall in [min, max]. */
function makeTexts(model: LlamaModel, count: number, min: number, max: number, seed: number): string[] {
  const next = wordSource(seed);
  const texts: string[] = [];
  for (let i = 0; i < count; i++) {
    const target = min + ((i * 7919) % (max - min + 1));
    let text = next();
    while (model.tokenize(text, { parseSpecial: true }).length < target) text += ` ${next()}`;
    while (model.tokenize(text, { parseSpecial: true }).length > target) text = text.slice(0, text.lastIndexOf(' '));
    texts.push(text);
  }
  return texts;
}

const llamaEmbedding = join(repoRoot, 'build', 'Release', 'llama-embedding');

/**
 * llama-embedding's wall time for `texts` (ms), from spawn to exit, vectors printed to nowhere.
 * The texts go in a file (-f: one per line), as 64 long ones exceed what one argument may hold.
 */
async function llamaEmbeddingWallMs(
  path: string,
  texts: string[],
  pooling: string,
  env?: NodeJS.ProcessEnv,
  gpuArgs: string[] = [],
): Promise<number> {
  const promptFile = join(await mkdtemp(join(tmpdir(), 'cuda-llama-embed-')), 'texts.txt');
  await writeFile(promptFile, texts.join('\n'));
  const argv = ['-m', path, '-f', promptFile, '--pooling', pooling, '-c', String(CONTEXT), '-b', String(CONTEXT), '-ub', String(CONTEXT)];
  argv.push('-t', String(threads), '--embd-output-format', 'array', ...gpuArgs);
  return new Promise<number>((resolve, reject) => {
    const started = performance.now();
    const child = spawn(llamaEmbedding, argv, { stdio: ['ignore', 'ignore', 'pipe'], env });
    let tail = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (tail = (tail + chunk).slice(-4000)));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(performance.now() - started);
      else reject(new Error(`llama-embedding exited with ${code}:\n${tail}`));
    });
  }).finally(() => rm(dirname(promptFile), { recursive: true, force: true }));
}

type EmbedSide = 'cuda-llama' | 'llama-embedding' | 'node-llama-cpp';

interface EmbedRound {
  textsPerSecond: Partial<Record<EmbedSide, number>>;
  decodes: number;
  tokens: number;
  otherCpu: OtherCpu;
}

interface RerankRound {
  documentsPerSecond: Partial<Record<ServerName, number>>;
  otherCpu: OtherCpu;
}

async function main(): Promise<void> {
  const embedPath = await modelPath(args.model, args.gpu ? 'bgeSmall' : 'smallBert');
  const rerankPath = withRerank ? await modelPath(args['rerank-model'], 'smallQwen3Reranker') : undefined;
  const setup = await setUp(embedPath, { gpu: args.gpu, nodeLlamaCpp: withNodeLlamaCpp, batchedBench: false });
  execFileSync(process.execPath, [join(repoRoot, 'scripts', 'build-tools.mjs'), 'llama-embedding'], { stdio: ['ignore', 2, 2] });
  if (withRerank) buildLlamaServer();
  const gpuArgs = args.gpu ? ['-ngl', '99', '-dev', setup.config.dev] : ['-ngl', '0', '-dev', 'none'];

  // The texts, cut to their token counts with the model's own tokenizer (this process only tokenizes).
  const vocab = await Llama.load(embedPath, { gpu: 'cpu', contextSize: CONTEXT, warmup: false, threads: 1 });
  const pooling = vocab.info.pooling!;
  const texts = Object.fromEntries(
    workloads.map((w, i) => [w, makeTexts(vocab, WORKLOADS[w].count, WORKLOADS[w].minTokens, WORKLOADS[w].maxTokens, 17 + i)]),
  ) as Record<WorkloadName, string[]>;
  await vocab.dispose();

  const embedRounds = Object.fromEntries(workloads.map((w) => [w, [] as EmbedRound[]])) as Record<WorkloadName, EmbedRound[]>;
  const rerankRounds: RerankRound[] = [];
  const loadOptions = { ...setup.config.load, contextSize: CONTEXT, threads, threadsBatch: threads };
  const embedSides: EmbedSide[] = ['cuda-llama', 'llama-embedding', ...(withNodeLlamaCpp ? (['node-llama-cpp'] as const) : [])];
  let rerankQuery = '';
  let rerankDocuments: string[] = [];
  if (rerankPath) {
    const rerankVocab = await Llama.load(rerankPath, { gpu: 'cpu', contextSize: RERANK_CONTEXT, warmup: false, threads: 1 });
    rerankQuery = makeTexts(rerankVocab, 1, 12, 12, 5)[0]!;
    rerankDocuments = makeTexts(rerankVocab, RERANK_DOCUMENTS, RERANK_DOCUMENT_TOKENS, RERANK_DOCUMENT_TOKENS, 11);
    await rerankVocab.dispose();
  }

  for (let round = 0; round < rounds; round++) {
    for (const workload of workloads) {
      const list = texts[workload];
      const record: EmbedRound = { textsPerSecond: {}, decodes: 0, tokens: 0, otherCpu: {} };
      for (const side of roundOrder(embedSides, round)) {
        await timedSide(record.otherCpu, side, async () => {
          if (side === 'cuda-llama') {
            const run = await runJsonChild<{ ms: number[]; decodes: number; tokens: number }>(
              join(repoRoot, 'test', 'bench', 'cuda-llama-child.mjs'),
              {
                kind: 'embed',
                modelPath: embedPath,
                loadOptions,
                texts: list,
                samples: 1,
              },
            );
            record.textsPerSecond[side] = list.length / (run.ms[0]! / 1000);
            record.decodes = run.decodes;
            record.tokens = run.tokens;
          } else if (side === 'llama-embedding') {
            const all = await llamaEmbeddingWallMs(embedPath, list, pooling, setup.toolEnv, gpuArgs);
            const one = await llamaEmbeddingWallMs(embedPath, list.slice(0, 1), pooling, setup.toolEnv, gpuArgs);
            record.textsPerSecond[side] = (list.length - 1) / (Math.max(all - one, 1) / 1000);
          } else {
            const run = await runNodeLlamaCppScenario<{ ms: number[] }>('embed', {
              modelPath: embedPath,
              threads,
              contextSize: CONTEXT,
              texts: list,
              samples: 1,
              ...nodeLlamaCppPlacement(setup),
            });
            record.textsPerSecond[side] = list.length / (run.ms[0]! / 1000);
          }
        });
      }
      log(
        `round ${round + 1}/${rounds} ${workload}: ` +
          embedSides.map((s) => `${s} ${record.textsPerSecond[s]?.toFixed(1)} texts/s`).join(', ') +
          ` (cuda-llama: ${record.decodes} decodes)`,
      );
      embedRounds[workload].push(record);
    }
    if (rerankPath) {
      const record: RerankRound = { documentsPerSecond: {}, otherCpu: {} };
      for (const name of roundOrder(['cuda-llama', 'llama-server'] as const, round)) {
        await timedSide(record.otherCpu, name, async () => {
          const server = await startServer(name, {
            modelPath: rerankPath,
            parallel: 16,
            slotContext: RERANK_CONTEXT / 16,
            threads,
            batch: RERANK_CONTEXT,
            ubatch: RERANK_CONTEXT,
            cudaDevices: args.gpu ? setup.cudaBuild?.cuda.devices : undefined,
            toolEnv: setup.toolEnv,
            // Ours: an embeddings context of RERANK_CONTEXT tokens; llama-server: 16 slots in one unified cache of as many.
            extraArgs: {
              'cuda-llama': ['--context-size', String(RERANK_CONTEXT)],
              'llama-server': ['--rerank', '-c', String(RERANK_CONTEXT), '--kv-unified'],
            },
          });
          try {
            const send = async (documents: string[]) => {
              const body = JSON.stringify({ model: MODEL_ALIAS, query: rerankQuery, documents });
              const response = await fetch(`${server.baseUrl}/v1/rerank`, {
                method: 'POST',
                headers: { 'content-type': 'application/json' },
                body,
              });
              const json = (await response.json()) as { results?: unknown[] };
              if (response.status !== 200 || json.results?.length !== documents.length)
                throw new Error(`${name} /v1/rerank answered ${response.status}: ${JSON.stringify(json).slice(0, 300)}`);
            };
            await send(rerankDocuments.slice(0, 8)); // warm-up, excluded
            const started = performance.now();
            await send(rerankDocuments);
            record.documentsPerSecond[name] = RERANK_DOCUMENTS / ((performance.now() - started) / 1000);
          } finally {
            await server.stop();
          }
        });
      }
      log(
        `round ${round + 1}/${rounds} rerank: cuda-llama ${record.documentsPerSecond['cuda-llama']?.toFixed(1)} docs/s, llama-server ${record.documentsPerSecond['llama-server']?.toFixed(1)} docs/s`,
      );
      rerankRounds.push(record);
    }
  }

  const lines: string[] = [
    '## Embeddings',
    '',
    `Texts per second, median over ${rounds} rounds with its 95% interval; ratios per round.`,
    '',
  ];
  lines.push(
    '| workload | texts (tokens) | cuda-llama decodes | cuda-llama | llama-embedding | node-llama-cpp | cuda-llama / llama-embedding | cuda-llama / node-llama-cpp |',
  );
  lines.push('|---|---|---|---|---|---|---|---|');
  const verdicts: string[] = [];
  for (const workload of workloads) {
    const list = embedRounds[workload];
    const figure = (side: EmbedSide) => {
      const samples = list.map((r) => r.textsPerSecond[side]).filter((x): x is number => x !== undefined);
      return samples.length === 0 ? '–' : medianWithInterval(samples, 1);
    };
    const ratio = (other: EmbedSide) => {
      const samples = list.flatMap((r) =>
        r.textsPerSecond[other] === undefined ? [] : [r.textsPerSecond['cuda-llama']! / r.textsPerSecond[other]!],
      );
      if (samples.length === 0) return '–';
      const verdict = targetVerdict(samples, TARGET);
      verdicts.push(`- ${workload}, against ${other}: ${verdictWords(verdict)}`);
      return medianWithInterval(samples, 2);
    };
    lines.push(
      `| ${workload} | ${texts[workload].length} (${list[0]?.tokens ?? '?'}) | ${list[0]?.decodes ?? '?'} | ${figure('cuda-llama')} | ${figure('llama-embedding')} | ${figure('node-llama-cpp')} | ${ratio('llama-embedding')} | ${ratio('node-llama-cpp')} |`,
    );
  }
  lines.push('', 'Targets: at least llama-embedding (ratio ≥ 1) and ahead of node-llama-cpp (ratio > 1).', '', ...verdicts, '');
  if (rerankRounds.length > 0) {
    const docs = (name: ServerName) => medianWithInterval(stats(rerankRounds.map((r) => r.documentsPerSecond[name]!)).samples, 1);
    const ratios = rerankRounds.map((r) => r.documentsPerSecond['cuda-llama']! / r.documentsPerSecond['llama-server']!);
    lines.push(
      '## Rerank',
      '',
      `${RERANK_DOCUMENTS} documents of ${RERANK_DOCUMENT_TOKENS} tokens against one query, one /v1/rerank request.`,
      '',
    );
    lines.push('| cuda-llama serve | llama-server --rerank | ratio |', '|---|---|---|');
    lines.push(`| ${docs('cuda-llama')} docs/s | ${docs('llama-server')} docs/s | ${medianWithInterval(ratios, 2)} |`, '');
    lines.push(`- against llama-server: ${verdictWords(targetVerdict(ratios, TARGET))}`, '');
  }
  const allRounds = [...Object.values(embedRounds).flat(), ...rerankRounds];
  const command = `npx tsx test/bench/embeddings.ts ${process.argv.slice(2).join(' ')}`.trim();
  const page = [
    '# Embeddings and rerank benchmark',
    '',
    ...machineLines(setup, threads, embedPath, command, false),
    ...(rerankPath ? [`- Rerank model: ${rerankPath.replace(`${repoRoot}/`, '')}`] : []),
    interferenceLine(allRounds),
    '',
    ...lines,
  ].join('\n');
  await writeOutputs(
    'embeddings',
    { rounds, threads, workloads, embedRounds, rerankRounds },
    lines.join('\n'),
    page,
    args.out ?? defaultOutDir,
    args['write-docs'] ? join(latestDir, args.gpu ? 'embeddings-gpu.md' : 'embeddings.md') : undefined,
  );
}

await main();
