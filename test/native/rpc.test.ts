// ggml RPC devices on loopback: our `cuda-llama rpc-server` and llama.cpp's own ggml-rpc-server
// (built by pretest), both serving the CPU. Probes, typed refusals with the process alive, a model
// split across both servers and the local CPU against the CPU alone, tensorSplit, and what happens
// to a client whose server dies mid-generation (ggml aborts it: measured in a child process).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, Llama, RpcError } from '../../lib/index.js';
import { probeRpcServer, RPC_PROTOCOL_VERSION } from '../../lib/gpu/rpc.js';
import { repoRoot, syntheticModel } from '../helpers/models.js';
import { freePort, waitForRpcServer } from '../helpers/rpc.js';

const release = join(repoRoot, 'build', 'Release');
const cliPath = join(repoRoot, 'lib', 'tools', 'cli.ts');
const children = new Set<ChildProcess>();
const servers = new Set<Server>();

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Output of a child so far, both streams. */
function collect(child: ChildProcess): { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return { out: () => out, err: () => err };
}

function startOurs(port: number, extra: string[] = []): { child: ChildProcess; output: ReturnType<typeof collect> } {
  const child = track(
    spawn(process.execPath, ['--import', 'tsx', cliPath, 'rpc-server', '--port', String(port), '--threads', '1', ...extra], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  return { child, output: collect(child) };
}

function startTheirs(port: number): ChildProcess {
  const child = track(spawn(join(release, 'ggml-rpc-server'), ['-p', String(port), '-t', '1'], { stdio: ['ignore', 'pipe', 'pipe'] }));
  collect(child);
  return child;
}

const haveTheirs = existsSync(join(release, 'ggml-rpc-server'));
let ours = '';
let theirs = '';
let ourChild: ReturnType<typeof startOurs>;
let modelPath = '';
const prompt = 'Once upon a time';

beforeAll(async () => {
  if (!haveTheirs)
    throw new Error('build/Release/ggml-rpc-server is missing: run `node scripts/build-tools.mjs ggml-rpc-server` (pretest does)');
  modelPath = await syntheticModel('small');
  const [a, b] = [await freePort(), await freePort()];
  ours = `127.0.0.1:${a}`;
  theirs = `127.0.0.1:${b}`;
  ourChild = startOurs(a, ['--mem', '4096']);
  const theirChild = startTheirs(b);
  await waitForRpcServer(ours, ourChild.child);
  await waitForRpcServer(theirs, theirChild);
}, 120_000);

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  for (const server of servers) server.close();
});

describe('probeRpcServer', () => {
  it('reads the protocol version and device memory from both servers', async () => {
    for (const endpoint of [ours, theirs]) {
      const probe = await probeRpcServer(endpoint);
      expect(probe.endpoint).toBe(endpoint);
      expect(probe.version).toEqual(RPC_PROTOCOL_VERSION);
      expect(probe.devices).toHaveLength(1);
      expect(probe.devices[0].memoryTotal).toBeGreaterThan(0);
      expect(probe.devices[0].memoryFree).toBeLessThanOrEqual(probe.devices[0].memoryTotal);
    }
    // Ours was started with --mem 4096: it reports at most 4 GiB.
    expect((await probeRpcServer(ours)).devices[0].memoryTotal).toBeLessThanOrEqual(4096 * 2 ** 20);
  });

  it('refuses a closed port with ERR_RPC_UNREACHABLE, naming the endpoint, and the process lives on', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const error = await probeRpcServer(dead).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RpcError);
    expect((error as RpcError).code).toBe(ErrorCode.RPC_UNREACHABLE);
    expect((error as RpcError).message).toContain(dead);
    expect((error as RpcError).remedy).toContain('cuda-llama rpc-server');
    // The same through a load: refused before ggml (which would abort) sees the endpoint.
    const load = await Llama.load(modelPath, { rpcServers: [dead], contextSize: 256 }).catch((e: unknown) => e);
    expect((load as RpcError).code).toBe(ErrorCode.RPC_UNREACHABLE);
    expect(Llama.devices().some((d) => d.description === dead)).toBe(false);
  });

  it('refuses malformed endpoints and IPv6 with ERR_RPC_ENDPOINT', async () => {
    for (const endpoint of [
      'localhost',
      ':50052',
      'localhost:',
      'localhost:0',
      'localhost:70000',
      'localhost:50x',
      '::1:50052',
      '[::1]:50052',
    ]) {
      const error = await probeRpcServer(endpoint).catch((e: unknown) => e);
      expect((error as RpcError).code, endpoint).toBe(ErrorCode.RPC_ENDPOINT);
    }
    expect(String(await probeRpcServer('[::1]:50052').catch((e: unknown) => e))).toMatch(/IPv6/);
    await expect(Llama.load(modelPath, { rpcServers: ['nope'] })).rejects.toMatchObject({ code: ErrorCode.RPC_ENDPOINT });
    await expect(Llama.load(modelPath, { gpu: 'cpu', rpcServers: [ours] })).rejects.toThrow(RangeError);
  });

  it('refuses a server of another protocol version with ERR_RPC_VERSION, both versions named', async () => {
    const fake = createServer((socket) => {
      socket.once('data', () => {
        const reply = Buffer.alloc(8 + 28);
        reply.writeBigUInt64LE(28n, 0);
        reply[8] = RPC_PROTOCOL_VERSION.major + 1; // major
        reply[9] = 0;
        reply[10] = 3;
        socket.write(reply);
      });
    });
    servers.add(fake);
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    const endpoint = `127.0.0.1:${(fake.address() as { port: number }).port}`;
    const error = (await probeRpcServer(endpoint).catch((e: unknown) => e)) as RpcError;
    expect(error.code).toBe(ErrorCode.RPC_VERSION);
    expect(error.message).toContain(`${RPC_PROTOCOL_VERSION.major + 1}.0.3`);
    expect(error.message).toContain(`${RPC_PROTOCOL_VERSION.major}.${RPC_PROTOCOL_VERSION.minor}.${RPC_PROTOCOL_VERSION.patch}`);
    expect(error.remedy).toMatch(/same llama\.cpp/);
  });

  it('refuses a server that accepts but never answers with ERR_RPC_BUSY', async () => {
    const silent = createServer(() => undefined);
    servers.add(silent);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const endpoint = `127.0.0.1:${(silent.address() as { port: number }).port}`;
    const error = (await probeRpcServer(endpoint, { timeoutMs: 300 }).catch((e: unknown) => e)) as RpcError;
    expect(error.code).toBe(ErrorCode.RPC_BUSY);
    expect(error.message).toContain(endpoint);
    expect(error.message).toMatch(/one client at a time/);
  });
});

describe('a model on two rpc-servers and the local CPU', () => {
  it('gives the same greedy tokens as the CPU alone, and the layer report shows the split with endpoints', async () => {
    const local = await Llama.load(modelPath, { gpu: 'cpu', contextSize: 256 });
    const expected = await local.generate(prompt, { maxTokens: 24, temperature: 0 });
    await local.dispose();

    // 4 of 6 layers (and the output layer) remote, split evenly; layers 0-1 stay on the CPU.
    const split = await Llama.load(modelPath, { rpcServers: [ours, theirs], gpuLayers: 4, tensorSplit: [1, 1], contextSize: 256 });
    try {
      const got = await split.generate(prompt, { maxTokens: 24, temperature: 0 });
      expect(got.tokens).toEqual(expected.tokens);
      expect(got.text).toBe(expected.text);
      const report = await split.layerReport();
      expect(report.policy.target).toBe('rpc');
      expect(report.problems).toEqual([]);
      const devices = new Set(report.layers.map((l) => l.device));
      expect(devices).toEqual(new Set(['CPU', ...report.devices.filter((d) => d.endpoint).map((d) => d.device)]));
      expect(report.layers.slice(0, 2).map((l) => l.device)).toEqual(['CPU', 'CPU']);
      const remote = report.devices.filter((d) => d.endpoint !== undefined);
      expect(remote.map((d) => d.endpoint).sort()).toEqual([ours, theirs].sort());
      for (const d of remote) expect(d.weightsBytes).toBeGreaterThan(0);
      expect(String(report)).toContain(ours);
      expect(String(report)).toContain(theirs);
      // Llama.devices() lists both remote devices with their endpoint and probed memory.
      const listed = Llama.devices().filter((d) => d.backend === 'RPC');
      expect(listed.map((d) => d.description).sort()).toEqual([ours, theirs].sort());
      for (const d of listed) expect(d.memoryTotal).toBeGreaterThan(0);
    } finally {
      await split.dispose();
    }
  }, 120_000);

  it('tensorSplit puts the layers on each server as asked', async () => {
    // gpuLayers 5: layers 1-5 and the output layer remote, 6 units; [1, 1] gives 3 and 3:
    // layers 1-3 on the first server, 4-5 and the output layer on the second.
    const model = await Llama.load(modelPath, { rpcServers: [ours, theirs], gpuLayers: 5, tensorSplit: [1, 1], contextSize: 256 });
    try {
      const report = await model.layerReport();
      const byEndpoint = (endpoint: string) => report.devices.find((d) => d.endpoint === endpoint)!.device;
      expect(report.layers.map((l) => l.device)).toEqual([
        'CPU',
        byEndpoint(ours),
        byEndpoint(ours),
        byEndpoint(ours),
        byEndpoint(theirs),
        byEndpoint(theirs),
      ]);
      expect(report.output).toBe(byEndpoint(theirs));
    } finally {
      await model.dispose();
    }
    // Everything on the second server.
    const second = await Llama.load(modelPath, { rpcServers: [ours, theirs], tensorSplit: [0, 1], contextSize: 256 });
    try {
      const report = await second.layerReport();
      const device = report.devices.find((d) => d.endpoint === theirs)!.device;
      expect(report.layers.every((l) => l.device === device)).toBe(true);
      expect(report.offloaded).toEqual({ layers: 6, total: 6 });
    } finally {
      await second.dispose();
    }
  }, 120_000);

  it('plans with the memory the servers report', async () => {
    const plan = await Llama.plan(modelPath, { rpcServers: [ours, theirs], contextSize: 256 });
    const remote = plan.devices.filter((d) => d.endpoint !== undefined);
    expect(remote.length).toBeGreaterThan(0);
    const oursDevice = plan.devices.find((d) => d.endpoint === ours);
    if (oursDevice) expect(oursDevice.freeBytes).toBeLessThanOrEqual(4096 * 2 ** 20);
    expect(plan.fits).toBe(true);
  }, 60_000);
});

describe('cuda-llama rpc-server', () => {
  it('prints one line when listening, and warns on 0.0.0.0', async () => {
    expect(ourChild.output.out()).toMatch(new RegExp(`rpc-server listening on ${ours.replace(/\./g, '\\.')} .*CPU`));
    const port = await freePort();
    const exposed = startOurs(port, ['--host', '0.0.0.0']);
    await waitForRpcServer(`127.0.0.1:${port}`, exposed.child);
    expect(exposed.output.err()).toMatch(/WARNING: rpc-server binds 0\.0\.0\.0/);
    exposed.child.kill('SIGTERM');
    const code = await new Promise((resolve) => exposed.child.once('exit', (c) => resolve(c)));
    expect(code).toBe(0);
  }, 60_000);

  it('takes a --device that is not here as a usage error (exit code 2) naming the devices there are', async () => {
    const wrong = startOurs(await freePort(), ['--device', 'CUDA99']);
    const code = await new Promise((resolve) => wrong.child.once('exit', (c) => resolve(c)));
    expect(code).toBe(2);
    expect(wrong.output.err()).toMatch(/--device must be one of .*CPU.*, got the string "CUDA99"/);
  }, 60_000);

  it('refuses a port in use with ERR_RPC_LISTEN and exit code 1', async () => {
    const taken = Number(ours.split(':')[1]);
    const second = startOurs(taken);
    const code = await new Promise((resolve) => second.child.once('exit', (c) => resolve(c)));
    expect(code).toBe(1);
    expect(second.output.err()).toMatch(/ERR_RPC_LISTEN: rpc-server cannot listen on 127\.0\.0\.1:\d+: the port is already in use/);
  }, 60_000);
});

describe('cuda-llama doctor --rpc', () => {
  it('lists the remote devices with their endpoints, and a dead endpoint as a problem', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const child = track(
      spawn(process.execPath, ['--import', 'tsx', cliPath, 'doctor', '--cpu', '--no-probe', '--rpc', `${theirs},${dead}`], {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    const output = collect(child);
    const code = await new Promise((resolve) => child.once('exit', (c) => resolve(c)));
    expect(output.out()).toMatch(new RegExp(`device RPC\\d+ \\[remote rpc-server\\] ${theirs.replace(/\./g, '\\.')}: `));
    expect(output.out()).toContain(`no rpc-server answers at ${dead}`);
    expect(code).toBe(1);
  }, 60_000);
});

describe('a server that dies mid-generation', () => {
  it('aborts the client process (ggml RPC_STATUS_ASSERT): measured in a child', async () => {
    const port = await freePort();
    const victim = startTheirs(port);
    const endpoint = `127.0.0.1:${port}`;
    await waitForRpcServer(endpoint, victim);
    const script = `
      import { Llama } from ${JSON.stringify(join(repoRoot, 'lib', 'index.ts'))};
      const model = await Llama.load(${JSON.stringify(modelPath)}, { rpcServers: [${JSON.stringify(endpoint)}], contextSize: 256 });
      let n = 0;
      for await (const _ of model.stream('Once upon a time', { maxTokens: 100000, temperature: 0, ignoreEos: true })) {
        if (++n === 5) console.log('GENERATING');
      }
      console.log('SURVIVED');
    `;
    const client = track(
      spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    const output = collect(client);
    for (let i = 0; i < 600 && !output.out().includes('GENERATING') && client.exitCode === null; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(output.out()).toContain('GENERATING');
    victim.kill('SIGKILL');
    const signal = await new Promise((resolve) => client.once('exit', (_code, sig) => resolve(sig)));
    expect(signal).toBe('SIGABRT');
    expect(output.err()).toContain('Remote RPC server crashed or returned malformed response');
    expect(output.out()).not.toContain('SURVIVED');
  }, 120_000);
});
