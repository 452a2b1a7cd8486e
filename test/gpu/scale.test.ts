// GPU tier of issue 34 (scaling out): two replicas on one GPU, and one `cuda-llama rpc-server` on the
// CUDA device with this process's model on the CPU and RPC only, each layer report saying where every
// layer is. test/server/replicas.test.ts and test/native/rpc.test.ts check the same on the CPU over
// loopback. Skips with the reason without a CUDA build and device; CUDA_LLAMA_REQUIRE_GPU=1 turns that
// skip into a failure. CUDA_LLAMA_GPU_TIER_ON_CPU=1 runs it on the CPU instead (the tiny shape, the
// server's CPU device), to rehearse it before a GPU session spends its minutes on it.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Llama, ReplicaPool, type LlamaModel, type LoadOptions } from '../../lib/index.js';
import { quantizedModel, repoRoot } from '../helpers/models.js';
import { gpuTier } from '../helpers/gpu-tier.js';
import { freePort, waitForRpcServer } from '../helpers/rpc.js';

const { cuda, rehearsal } = gpuTier('GPU scaling suite');

const device = cuda ? 'CUDA0' : 'CPU';
const local: LoadOptions = cuda ? { gpu: 'cuda' } : { gpu: 'cpu', threads: 1 };
const prompt = 'The quick brown fox jumps over the lazy dog because';
const greedy = { maxTokens: 24, temperature: 0, cachePrompt: false } as const;
let path: string;
/** Greedy tokens of the prompt on the device alone: one model, one sequence. */
let alone: number[];

beforeAll(async () => {
  path = await quantizedModel(cuda ? 'tinyllama1b' : 'tiny', 'Q4_0');
  const model = await Llama.load(path, { ...local, contextSize: 256 });
  try {
    alone = (await model.generate(prompt, greedy)).tokens;
  } finally {
    await model.dispose();
  }
}, 600_000);

describe.skipIf(!cuda && !rehearsal)(`two replicas on ${device}`, () => {
  let pool: ReplicaPool;
  beforeAll(async () => {
    pool = new ReplicaPool(path, { replicas: 2, devices: [device], load: { ...local, contextSize: 256, sequences: 2 } });
    await pool.ready;
  }, 600_000);
  afterAll(async () => {
    await pool?.dispose();
  });

  it('both are on the device, every layer, and each gives the tokens of the model alone while the other runs', async () => {
    expect(pool.replicas.map((r) => [r.device, r.state])).toEqual([
      [device, 'ok'],
      [device, 'ok'],
    ]);
    for (const replica of pool.replicas) {
      const report = await replica.model!.layerReport();
      console.log(`replica ${replica.index}:\n${String(report)}`);
      expect(report.problems).toEqual([]);
      if (cuda) {
        expect(report.offloaded.layers).toBe(report.offloaded.total);
        expect(report.layers.every((l) => l.device === 'CUDA0')).toBe(true);
        expect(report.kvCache.devices).toEqual(['CUDA0']);
      }
    }
    // One sequence per context, the same kernels as alone: no other rows share a step, so no near-tie can part them.
    const results = await Promise.all(pool.replicas.map((r) => r.model!.generate(prompt, greedy)));
    for (const result of results) expect(result.tokens).toEqual(alone);
  });
});

describe.skipIf(!cuda && !rehearsal)(`a model on ${device} behind a cuda-llama rpc-server, this process on the CPU and RPC`, () => {
  let server: ChildProcess | undefined;
  let endpoint: string;
  let model: LlamaModel;

  beforeAll(async () => {
    const port = await freePort();
    endpoint = `127.0.0.1:${port}`;
    server = spawn(
      process.execPath,
      ['--import', 'tsx', join(repoRoot, 'lib', 'tools', 'cli.ts'), 'rpc-server', '--port', String(port), '--device', device],
      { stdio: 'ignore' },
    );
    await waitForRpcServer(endpoint, server);
    // The devices in llama.cpp's order are RPC0, then any local CUDA GPU: [1, 0] puts every layer on the server.
    model = await Llama.load(path, { rpcServers: [endpoint], tensorSplit: cuda ? [1, 0] : [1], contextSize: 256, threads: 1 });
  }, 600_000);
  afterAll(async () => {
    await model?.dispose();
    server?.kill('SIGKILL');
  });

  it('every layer and the output are on the server, the report names its endpoint, and the greedy tokens are those on the device alone', async () => {
    const report = await model.layerReport();
    console.log(String(report));
    expect(report.problems).toEqual([]);
    const remote = report.devices.find((d) => d.endpoint === endpoint);
    expect(remote?.device).toMatch(/^RPC\d+$/);
    expect(remote!.weightsBytes).toBeGreaterThan(0);
    expect(report.layers.every((l) => l.device === remote!.device)).toBe(true);
    expect(report.output).toBe(remote!.device);
    expect(report.devices.some((d) => d.device.startsWith('CUDA') && d.weightsBytes > 0)).toBe(false);
    // The server runs the graph with the same backend and kernels as a local load on its device.
    expect((await model.generate(prompt, greedy)).tokens).toEqual(alone);
  });
});
