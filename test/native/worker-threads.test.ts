// worker_threads: each Worker loads the addon into an environment of its own, with its own logger
// (native/log.h routes a line to the env whose work logged it). Terminating a worker mid-generation
// frees only that env's models and logger; the main thread's keep working, and the process exits
// cleanly with workers still running. Workers run lib/ as TypeScript through tsx's API
// (fixtures/tsx-worker.mjs), so nothing needs a prior `tsc` build.
import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Llama, type LlamaModel } from '../../lib/index.js';
import { repoRoot, syntheticModel } from '../helpers/models.js';
import type { WorkerJob, WorkerMessage } from './fixtures/worker-generate.js';

const bootstrap = new URL('./fixtures/tsx-worker.mjs', import.meta.url);
const script = fileURLToPath(new URL('./fixtures/worker-generate.ts', import.meta.url));
const contextSize = 2048;

type MessageOf<T extends WorkerMessage['type']> = Extract<WorkerMessage, { type: T }>;

/** A worker running fixtures/worker-generate.ts, with its messages kept for until(). */
class WorkerRun {
  readonly worker: Worker;
  readonly #messages: WorkerMessage[] = [];
  #failure: Error | null = null;
  readonly #waiters = new Set<() => void>();

  constructor(job: WorkerJob) {
    this.worker = new Worker(bootstrap, { argv: [script], workerData: job });
    this.worker.on('message', (message: WorkerMessage) => this.#record(() => this.#messages.push(message)));
    this.worker.on('error', (error) => this.#record(() => (this.#failure ??= error)));
    this.worker.on('exit', (code) =>
      this.#record(() => (this.#failure ??= new Error(`worker exited (${code}) before the message awaited`))),
    );
  }

  /** The first message of `type`; rejects if the worker fails or exits without sending one. */
  until<T extends WorkerMessage['type']>(type: T): Promise<MessageOf<T>> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const message = this.#messages.find((m) => m.type === type);
        if (message === undefined && this.#failure === null) return;
        this.#waiters.delete(check);
        if (message !== undefined) resolve(message as MessageOf<T>);
        else reject(this.#failure);
      };
      this.#waiters.add(check);
      check();
    });
  }

  #record(change: () => void): void {
    change();
    for (const check of [...this.#waiters]) check();
  }
}

let path: string;
let model: LlamaModel;
let tempDir: string;
const mainLines: string[] = [];

async function mainTokens(prompt: string, maxTokens: number): Promise<number[]> {
  return (await model.generate(prompt, { maxTokens, temperature: 0 })).tokens;
}

beforeAll(async () => {
  path = await syntheticModel('tiny');
  tempDir = await mkdtemp(join(tmpdir(), 'cuda-llama-workers-'));
  Llama.setLogger((_level, message) => mainLines.push(message), 'info');
  model = await Llama.load(path, { gpu: 'cpu', contextSize });
});

afterAll(async () => {
  await model?.dispose();
  Llama.setLogger(null);
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
});

describe('worker_threads', () => {
  it("loads and generates inside a worker, whose own logger gets that load's lines (and the main thread's does not)", async () => {
    // The same model under a name of its own, so that its load's lines can be told apart.
    const copy = join(tempDir, 'worker-copy.gguf');
    await copyFile(path, copy);
    const expected = await mainTokens('The quick brown fox', 16);
    const run = new WorkerRun({ path: copy, prompt: 'The quick brown fox', maxTokens: 16, contextSize, log: true });
    const done = await run.until('done');
    expect(done.tokens).toEqual(expected);
    expect(done.stopReason).toBe('maxTokens');
    expect(done.logLines.some((line) => line.includes(copy))).toBe(true);
    expect(mainLines.some((line) => line.includes(copy))).toBe(false);
  });

  it("terminating a worker mid-generation leaves the main thread's model and logger working", async () => {
    const expected = await mainTokens('Once upon a time', 24);
    const run = new WorkerRun({ path, prompt: 'Once upon a time', maxTokens: 2000, contextSize, log: true });
    await run.until('token');
    expect(await run.worker.terminate()).toBe(1);

    expect(await mainTokens('Once upon a time', 24)).toEqual(expected);
    // A load on the main thread logs to the main thread's logger, which the worker's teardown left alone.
    const before = mainLines.length;
    const second = await Llama.load(path, { gpu: 'cpu', contextSize: 256 });
    try {
      await vi.waitFor(() => expect(mainLines.slice(before).some((line) => line.includes(path))).toBe(true), { timeout: 10_000 });
    } finally {
      await second.dispose();
    }
  });

  it('two workers generate at once, each with the tokens the main thread gets for its prompt', async () => {
    const prompts = ['Hello world', 'In a hole in the ground'];
    const expected = [await mainTokens(prompts[0], 32), await mainTokens(prompts[1], 32)];
    const runs = prompts.map((prompt) => new WorkerRun({ path, prompt, maxTokens: 32, contextSize, log: false }));
    const results = await Promise.all(runs.map((run) => run.until('done')));
    expect(results.map((r) => r.tokens)).toEqual(expected);
    expect(expected[0]).not.toEqual(expected[1]);
  });

  it('a process exits cleanly with one worker terminated mid-generation and another still generating', () => {
    const child = spawnSync(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(new URL('./fixtures/worker-exit.ts', import.meta.url)), path],
      {
        cwd: repoRoot,
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    expect(child.stderr).not.toMatch(/terminate called|Aborted|FATAL ERROR/);
    expect({ status: child.status, signal: child.signal, stdout: child.stdout.trim() }).toEqual({
      status: 0,
      signal: null,
      stdout: 'ok 8',
    });
  });
});
