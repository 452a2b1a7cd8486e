/**
 * RPC benchmark (issue 34; not a test): what ggml's RPC protocol costs per token. Tokens per second
 * (prompt and generation, greedy, a fixed prompt) of the same model loaded two ways in one process:
 *
 *   CPU (default): on the local CPU, against every layer and the output layer split over two loopback
 *                  rpc-servers on this machine's CPU (`cuda-llama rpc-server` and llama.cpp's own
 *                  ggml-rpc-server, tensorSplit [1, 1]).
 *   --gpu:         on the local GPU (CUDA0), against the same GPU behind one `cuda-llama rpc-server
 *                  --device CUDA0` on this host, the client process with the CPU and RPC only.
 *
 * Rounds are paired and interleaved (which side goes first alternates); each figure is a median
 * over rounds with its 95% interval (stats.ts), the ratio the median of the per-round ratios.
 *
 *   npx tsx test/bench/rpc.ts [--model small|tinyllama1b] [--rounds 8] [--gpu] [--out test/bench/results/latest/rpc.md]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { Llama, type LoadOptions } from '../../lib/index.js';
import { quantizedModel, syntheticModel } from '../helpers/models.js';
import { freePort, waitForRpcServer } from '../helpers/rpc.js';
import { cpuBackendLine, git, log, positiveInteger, repoRoot, roundOrder } from './common.js';
import { medianWithInterval } from './stats.js';

const usage = 'usage: npx tsx test/bench/rpc.ts [--model small|tinyllama1b] [--rounds 8] [--gpu] [--out FILE]';
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'small' },
    rounds: { type: 'string', default: '8' },
    gpu: { type: 'boolean', default: false },
    out: { type: 'string', default: join(repoRoot, 'test', 'bench', 'results', 'latest', 'rpc.md') },
  },
});
const rounds = positiveInteger('--rounds', values.rounds, usage);
const gpuMode = values.gpu!;
const PROMPT_TOKENS = 256;
const GEN_TOKENS = 64;
const children: ChildProcess[] = [];

/** Prompt processing and generation speed of one load (tokens/s). */
async function measure(path: string, options: Parameters<typeof Llama.load>[1]): Promise<{ pp: number; tg: number }> {
  const model = await Llama.load(path, { contextSize: 1024, ...options });
  try {
    const prompt = Array.from({ length: PROMPT_TOKENS }, (_, i) => 100 + (i % 500));
    const result = await model.generate(prompt, { maxTokens: GEN_TOKENS, temperature: 0, ignoreEos: true });
    const t = result.timings;
    return { pp: t.promptTokensPerSecond, tg: t.tokensPerSecond };
  } finally {
    await model.dispose();
  }
}

function startServer(args: string[], ours: boolean): ChildProcess {
  const child = ours
    ? spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'lib', 'tools', 'cli.ts'), 'rpc-server', ...args], { stdio: 'ignore' })
    : spawn(join(repoRoot, 'build', 'Release', 'ggml-rpc-server'), args, { stdio: 'ignore' });
  children.push(child);
  return child;
}

async function main(): Promise<void> {
  const modelName = values.model as 'small' | 'tinyllama1b';
  // The 1.1B shape is a GPU model: Q4_0 as the other GPU benchmarks use it.
  const path = modelName === 'tinyllama1b' ? await quantizedModel('tinyllama1b', 'Q4_0') : await syntheticModel(modelName);
  const threads = Math.max(1, Math.floor(cpus().length / (gpuMode ? 1 : 3)));
  let sides: { name: string; load: LoadOptions }[];
  let setup: string;
  if (gpuMode) {
    const port = await freePort();
    const endpoint = `127.0.0.1:${port}`;
    startServer(['--port', String(port), '--device', 'CUDA0'], true);
    await waitForRpcServer(endpoint);
    sides = [
      { name: 'local GPU', load: { gpu: 'cuda' } },
      // Devices in llama.cpp's order, RPC0 then the local CUDA0: every layer and the output to the server's GPU.
      { name: 'same GPU behind rpc-server', load: { rpcServers: [endpoint], tensorSplit: [1, 0] } },
    ];
    setup = `\`cuda-llama rpc-server --device CUDA0\` on 127.0.0.1, the client with every layer and the output layer on it (RPC0).`;
  } else {
    const [a, b] = [await freePort(), await freePort()];
    const ours = `127.0.0.1:${a}`;
    const theirs = `127.0.0.1:${b}`;
    // Three processes share the cores: each server gets a third of them, as the client does.
    startServer(['--port', String(a), '--threads', String(threads)], true);
    startServer(['-p', String(b), '-t', String(threads)], false);
    await waitForRpcServer(ours);
    await waitForRpcServer(theirs);
    sides = [
      { name: 'local CPU', load: { gpu: 'cpu', threads } },
      { name: 'split over 2 rpc-servers', load: { rpcServers: [ours, theirs], tensorSplit: [1, 1], threads } },
    ];
    setup =
      `\`cuda-llama rpc-server\` and llama.cpp's ggml-rpc-server on 127.0.0.1, CPU device, ${threads} thread(s) each and the client's; ` +
      'every layer and the output layer remote, tensorSplit [1, 1].';
  }
  const results = sides.map(() => ({ pp: [] as number[], tg: [] as number[] }));
  const ratios = { pp: [] as number[], tg: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    const measured: { pp: number; tg: number }[] = [];
    for (const index of roundOrder([0, 1], round)) measured[index] = await measure(path, sides[index]!.load);
    for (const k of ['pp', 'tg'] as const) {
      results[0]![k].push(measured[0]![k]);
      results[1]![k].push(measured[1]![k]);
      ratios[k].push(measured[1]![k] / measured[0]![k]);
    }
    log(
      `round ${round + 1}/${rounds}: ` +
        sides.map((side, i) => `${side.name} pp ${measured[i]!.pp.toFixed(0)} tg ${measured[i]!.tg.toFixed(1)}`).join('; ') +
        ' tok/s',
    );
  }
  const build = Llama.build();
  const dirty = git(['status', '--porcelain', '--', 'lib', 'native']) !== '';
  const lines = [
    `# RPC benchmark: ${sides[1]!.name} against ${sides[0]!.name}`,
    '',
    `- Date (UTC): ${new Date().toISOString().replace('T', ' ').slice(0, 19)}`,
    `- Machine: ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${cpus().length} logical CPUs`,
    gpuMode
      ? `- GPU: ${Llama.devices().find((d) => d.name === 'CUDA0')?.description ?? 'none'}`
      : `- CPU backend: ${cpuBackendLine(build)}`,
    `- cuda-llama commit: ${git(['rev-parse', '--short', 'HEAD'])}${dirty ? ' (with uncommitted changes in lib/ or native/)' : ''}`,
    `- Model: ${relative(repoRoot, path)}; prompt ${PROMPT_TOKENS} tokens, ${GEN_TOKENS} generated, greedy`,
    `- Servers: ${setup}`,
    `- Command: \`npx tsx test/bench/rpc.ts ${process.argv.slice(2).join(' ')}\``,
    `- ${rounds} paired rounds, the side that goes first alternating; medians with a 95% interval.`,
    '',
    `| | ${sides[0]!.name} (tok/s) | ${sides[1]!.name} (tok/s) | ratio |`,
    '|---|---|---|---|',
    `| pp${PROMPT_TOKENS} | ${medianWithInterval(results[0]!.pp, 0)} | ${medianWithInterval(results[1]!.pp, 0)} | ${medianWithInterval(ratios.pp, 2)} |`,
    `| tg${GEN_TOKENS} | ${medianWithInterval(results[0]!.tg, 1)} | ${medianWithInterval(results[1]!.tg, 1)} | ${medianWithInterval(ratios.tg, 2)} |`,
    '',
  ];
  await mkdir(dirname(values.out!), { recursive: true });
  await writeFile(values.out!, lines.join('\n'));
  log(lines.join('\n'));
}

try {
  await main();
} finally {
  for (const child of children) child.kill('SIGKILL');
}
