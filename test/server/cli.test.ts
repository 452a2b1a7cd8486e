// `cuda-llama serve` as a child process: the startup line, SIGTERM during a generation lets it finish
// and exits 0 with one JSON log line per request (no prompt text), and `--gpu cuda` on a machine
// without CUDA refuses to start with the typed error's message and exit 1; --embeddings and --pooling
// serve embeddings from a generative model, and an embedding model serves them without a flag.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Llama } from '../../lib/index.js';
import { repoRoot, syntheticModel } from '../helpers/models.js';

interface Child {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function serve(...args: string[]): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'lib', 'tools', 'cli.ts'), 'serve', ...args], { cwd: repoRoot });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

async function readyAddress(c: Child): Promise<string> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const match = /ready on (http:\/\/\S+?:\d+)/.exec(c.stderr());
    if (match) return match[1]!;
    if (c.child.exitCode !== null || Date.now() > deadline) throw new Error(`serve did not start:\n${c.stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('cuda-llama serve', () => {
  it('prints the startup line; SIGTERM during a generation drains it and exits 0', async () => {
    const c = serve(
      await syntheticModel('tiny'),
      '--port',
      '0',
      '--gpu',
      'cpu',
      '--context-size',
      '1024',
      '--threads',
      '2',
      '--alias',
      'tiny',
    );
    try {
      const url = await readyAddress(c);
      expect(c.stderr()).toMatch(/model tiny \(F16\), offloaded: 0\/4 layers; .*gpu cpu -> cpu; 1 parallel x 1024 tokens/);
      const secret = 'a prompt the log must not show';
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', prompt: secret, max_tokens: 300, temperature: 0, stream: true }),
      });
      const reader = res.body!.getReader();
      let text = new TextDecoder().decode((await reader.read()).value);
      // The first token is out: the generation is running when the signal comes.
      c.child.kill('SIGTERM');
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      expect(text).toMatch(/"finish_reason":"(length|stop)"/);
      expect(await c.exited, c.stderr()).toBe(0);
      expect(c.stderr()).toContain('SIGTERM, draining');
      const lines = c
        .stdout()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      const request = lines.find((l) => l.route === '/v1/completions');
      expect(request).toMatchObject({ msg: 'request', method: 'POST', status: 200 });
      expect(request!.completionTokens).toBeGreaterThan(0);
      expect(typeof request!.reqId).toBe('string');
      expect(c.stdout()).not.toContain(secret);
    } finally {
      if (c.child.exitCode === null) c.child.kill('SIGKILL');
    }
  });

  it('a bind beyond loopback without an API key warns loudly; with a key file it does not', async () => {
    const tiny = await syntheticModel('tiny');
    const open = serve(tiny, '--host', '0.0.0.0', '--port', '0', '--gpu', 'cpu', '--no-log', '--no-warmup');
    try {
      await readyAddress(open);
      expect(open.stderr()).toMatch(/WARNING: listening on 0\.0\.0\.0 without an API key/);
      open.child.kill('SIGTERM');
      expect(await open.exited, open.stderr()).toBe(0);
    } finally {
      if (open.child.exitCode === null) open.child.kill('SIGKILL');
    }
    const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-serve-'));
    writeFileSync(join(dir, 'key'), 'secret\n');
    const keyed = serve(
      tiny,
      '--host',
      '0.0.0.0',
      '--port',
      '0',
      '--gpu',
      'cpu',
      '--no-log',
      '--no-warmup',
      '--api-key-file',
      join(dir, 'key'),
    );
    try {
      const url = await readyAddress(keyed);
      expect(keyed.stderr()).not.toContain('WARNING');
      expect(keyed.stderr()).toContain('API key required');
      const port = new URL(url).port;
      expect((await fetch(`http://127.0.0.1:${port}/v1/models`)).status).toBe(401);
      expect((await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { authorization: 'Bearer secret' } })).status).toBe(200);
      keyed.child.kill('SIGTERM');
      expect(await keyed.exited, keyed.stderr()).toBe(0);
    } finally {
      if (keyed.child.exitCode === null) keyed.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--embeddings and --pooling serve /v1/embeddings from a generative model; an embedding model needs no flag', async () => {
    const embed = async (url: string) =>
      fetch(`${url}/v1/embeddings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', input: ['hello', 'world'] }),
      });
    const runs: [string, string[], RegExp][] = [
      [await syntheticModel('tiny'), ['--embeddings', '--pooling', 'mean'], /; embeddings \(pooling mean, \/v1\/embeddings\)/],
      [await syntheticModel('tinyBert'), [], /; embedding model \(pooling cls, \/v1\/embeddings\)/],
    ];
    for (const [path, flags, line] of runs) {
      const c = serve(path, '--port', '0', '--gpu', 'cpu', '--no-log', '--context-size', '256', '--alias', 'm', ...flags);
      try {
        const url = await readyAddress(c);
        expect(c.stderr()).toMatch(line);
        const res = await embed(url);
        expect(res.status).toBe(200);
        expect(((await res.json()) as { data: unknown[] }).data).toHaveLength(2);
        c.child.kill('SIGTERM');
        expect(await c.exited, c.stderr()).toBe(0);
      } finally {
        if (c.child.exitCode === null) c.child.kill('SIGKILL');
      }
    }
  });

  it.skipIf(Llama.build().cuda.available)("--gpu cuda without CUDA refuses to start: the typed error's message, exit 1", async () => {
    const c = serve(await syntheticModel('tiny'), '--port', '0', '--gpu', 'cuda');
    const code = await c.exited;
    expect(code).toBe(1);
    expect(c.stderr()).toMatch(/^ERR_CUDA_UNAVAILABLE: gpu: 'cuda' was requested/m);
    expect(c.stderr()).not.toContain('ready on');
  });

  it('--replicas 2 starts two replicas (the second shares the weights), lists each on the startup line, and /health lists both', async () => {
    const c = serve(
      await syntheticModel('tiny'),
      '--port',
      '0',
      '--gpu',
      'cpu',
      '--context-size',
      '512',
      '--threads',
      '1',
      '--replicas',
      '2',
      '--alias',
      'tiny',
    );
    try {
      const url = await readyAddress(c);
      expect(c.stderr()).toMatch(/model tiny \(F16\), 2 replicas/);
      expect(c.stderr()).toMatch(/replica 0 on CPU: offloaded: 0\/4 layers; .*gpu cpu -> cpu; 1 parallel x 512 tokens\n/);
      // The second replica on the CPU forks the first: one copy of the weights.
      expect(c.stderr()).toMatch(/replica 1 on CPU: offloaded: 0\/4 layers; .*1 parallel x 512 tokens; weights shared with replica 0\n/);
      const health = (await (await fetch(`${url}/health`)).json()) as {
        status: string;
        replicas: { replica: number; device: string; state: string }[];
      };
      expect(health.status).toBe('ok');
      expect(health.replicas.map((r) => [r.replica, r.device, r.state])).toEqual([
        [0, 'CPU', 'ok'],
        [1, 'CPU', 'ok'],
      ]);
      const res = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', prompt: 'Hello', max_tokens: 4, temperature: 0 }),
      });
      expect(res.status).toBe(200);
      expect(['0', '1']).toContain(res.headers.get('x-replica'));
      c.child.kill('SIGTERM');
      expect(await c.exited, c.stderr()).toBe(0);
      expect(c.stderr()).toContain('cuda-llama serve: stopped');
    } finally {
      if (c.child.exitCode === null) c.child.kill('SIGKILL');
    }
  });
});
