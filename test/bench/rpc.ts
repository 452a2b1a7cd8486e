// RPC benchmark (not a test): tokens per second of a synthetic model split across two loopback CPU
// rpc-servers (ours and llama.cpp's ggml-rpc-server), against the same model on the local CPU.
// Interleaved paired rounds (local, then split, each round), medians with a 95% interval of each
// round's ratio. Writes results/latest/rpc.md.
//
// Usage: npx tsx test/bench/rpc.ts [rounds=5]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Llama } from '../../lib/index.js';
import { probeRpcServer } from '../../lib/gpu/rpc.js';
import { syntheticModel } from '../helpers/models.js';
import { log, repoRoot } from './common.js';
import { medianWithInterval } from './stats.js';

const rounds = Number(process.argv[2] ?? 5);
const PROMPT_TOKENS = 256;
const GEN_TOKENS = 64;
const children: ChildProcess[] = [];

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitFor(endpoint: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      await probeRpcServer(endpoint, { timeoutMs: 2000 });
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`no rpc-server at ${endpoint}`);
}

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

async function main(): Promise<void> {
  const path = await syntheticModel('small');
  const [a, b] = [await freePort(), await freePort()];
  const ours = `127.0.0.1:${a}`;
  const theirs = `127.0.0.1:${b}`;
  children.push(
    spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'lib', 'tools', 'cli.ts'), 'rpc-server', '--port', String(a)], {
      stdio: 'ignore',
    }),
    spawn(join(repoRoot, 'build', 'Release', 'ggml-rpc-server'), ['-p', String(b)], { stdio: 'ignore' }),
  );
  await waitFor(ours);
  await waitFor(theirs);
  const ratios = { pp: [] as number[], tg: [] as number[] };
  const local = { pp: [] as number[], tg: [] as number[] };
  const split = { pp: [] as number[], tg: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    const l = await measure(path, { gpu: 'cpu' });
    const s = await measure(path, { rpcServers: [ours, theirs], tensorSplit: [1, 1] });
    for (const k of ['pp', 'tg'] as const) {
      local[k].push(l[k]);
      split[k].push(s[k]);
      ratios[k].push(s[k] / l[k]);
    }
    log(
      `round ${round + 1}/${rounds}: local pp ${l.pp.toFixed(0)} tg ${l.tg.toFixed(1)}; split pp ${s.pp.toFixed(0)} tg ${s.tg.toFixed(1)} tok/s`,
    );
  }
  const lines = [
    '# RPC: a model split across two loopback CPU rpc-servers against the local CPU',
    '',
    `Synthetic 'small' model (6 layers), prompt ${PROMPT_TOKENS} tokens, ${GEN_TOKENS} generated, greedy; ${rounds} interleaved paired rounds.`,
    `Servers: \`cuda-llama rpc-server\` and llama.cpp's ggml-rpc-server on 127.0.0.1, CPU device, every layer and the output layer remote, tensorSplit [1, 1].`,
    'Medians with a 95% interval. Same machine for every number.',
    '',
    '| | local CPU (tok/s) | split over 2 rpc-servers (tok/s) | split / local |',
    '|---|---|---|---|',
    `| pp${PROMPT_TOKENS} | ${medianWithInterval(local.pp, 0)} | ${medianWithInterval(split.pp, 0)} | ${medianWithInterval(ratios.pp, 2)} |`,
    `| tg${GEN_TOKENS} | ${medianWithInterval(local.tg, 1)} | ${medianWithInterval(split.tg, 1)} | ${medianWithInterval(ratios.tg, 2)} |`,
    '',
  ];
  await mkdir(join(repoRoot, 'results', 'latest'), { recursive: true });
  await writeFile(join(repoRoot, 'results', 'latest', 'rpc.md'), lines.join('\n'));
  log(lines.join('\n'));
}

try {
  await main();
} finally {
  for (const child of children) child.kill('SIGKILL');
}
