/**
 * Runs mutants through fuzz children and tallies the outcomes. A child serves many mutants (its
 * start-up costs more than a load of the tiny model); when it dies, the mutant it held is
 * counted as a death, saved for repro, and a fresh child takes the next one.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildOutcome } from './child.js';
import { makeMutant, type FuzzBase, type FuzzKind, type Mutant } from './mutants.js';

export interface FuzzOptions {
  seed: number;
  count: number;
  kinds: FuzzKind[];
  bases: FuzzBase[];
  /** Scratch folder for mutant files; deaths are copied to `${deathDir}`. */
  workDir: string;
  deathDir: string;
  /** Children running at once. */
  jobs?: number;
  /** A mutant that takes longer than this is a hang (counted like a death). */
  timeoutMs?: number;
  /** First index (to resume or to shard a run). */
  start?: number;
  /** Exactly these mutants instead of count from start (a sample spread over the edit list). */
  items?: { kind: FuzzKind; index: number }[];
  onResult?: (result: MutantResult, totals: FuzzTotals) => void;
}

export type MutantResult = {
  kind: FuzzKind;
  seed: number;
  index: number;
  base: string;
  description: string;
} & (
  | { outcome: 'loaded' }
  | { outcome: 'refused'; code: string; message: string }
  | { outcome: 'untyped'; name: string; message: string }
  | { outcome: 'death'; signal: string | null; exitCode: number | null; stderr: string; savedAs: string }
  | { outcome: 'hang'; savedAs: string }
);

export interface FuzzTotals {
  mutants: number;
  loaded: number;
  refusedByCode: Record<string, number>;
  untyped: MutantResult[];
  deaths: MutantResult[];
  hangs: MutantResult[];
}

const childPath = fileURLToPath(new URL('./child.ts', import.meta.url));
const PRLIMIT = '/usr/bin/prlimit';
/** Bytes of data segment a child may hold: the tiny model needs a few hundred MiB. */
const CHILD_DATA_LIMIT = 3 * 1024 ** 3;

class FuzzChild {
  private proc: ChildProcess | undefined;
  private ready: Promise<void> | undefined;
  private stderr = '';
  private pending:
    | {
        id: number;
        proc: ChildProcess;
        resolve: (
          r: ChildOutcome | { died: true; signal: string | null; exitCode: number | null; stderr: string } | { hung: true },
        ) => void;
      }
    | undefined;

  private start(): Promise<void> {
    this.stderr = '';
    // Under prlimit where there is one: a mutant that makes llama.cpp allocate without bound
    // (an endless tokenizer loop) dies of bad_alloc instead of taking the machine's memory.
    const limited = existsSync(PRLIMIT);
    const proc = fork(childPath, [], {
      execPath: limited ? PRLIMIT : process.execPath,
      execArgv: limited ? [`--data=${CHILD_DATA_LIMIT}`, process.execPath, '--import', 'tsx'] : ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, NODE_DEBUG: '' },
    });
    this.proc = proc;
    proc.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
    const ready = new Promise<void>((resolve, reject) => {
      proc.once('message', () => resolve());
      proc.once('exit', (code, signal) =>
        reject(new Error(`fuzz child exited during start-up (code ${code}, signal ${signal}): ${this.stderr}`)),
      );
    });
    proc.on('message', (m: ChildOutcome | { ready: true }) => {
      if ('id' in m && this.pending?.id === m.id) {
        const { resolve } = this.pending;
        this.pending = undefined;
        resolve(m);
      }
    });
    // 'close', not 'exit': the stderr tail of a dying child arrives after 'exit'.
    proc.on('close', (exitCode, signal) => {
      if (this.proc === proc) {
        this.proc = undefined;
        this.ready = undefined;
      }
      // A child killed for a hang closes later, when the next mutant may already be pending.
      if (this.pending?.proc === proc) {
        const { resolve } = this.pending;
        this.pending = undefined;
        resolve({ died: true, signal, exitCode, stderr: this.stderr });
      }
    });
    return ready;
  }

  async run(id: number, path: string, timeoutMs: number) {
    if (!this.proc) this.ready = this.start();
    await this.ready;
    const proc = this.proc!;
    return new Promise<Parameters<NonNullable<FuzzChild['pending']>['resolve']>[0]>((resolve) => {
      const timer = setTimeout(() => {
        if (this.pending?.id !== id) return;
        this.pending = undefined;
        if (this.proc === proc) this.proc = undefined;
        proc.kill('SIGKILL');
        resolve({ hung: true });
      }, timeoutMs);
      this.pending = {
        id,
        proc,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      proc.send({ id, path });
    });
  }

  stop(): void {
    this.proc?.kill('SIGKILL');
    this.proc = undefined;
  }
}

export function emptyTotals(): FuzzTotals {
  return { mutants: 0, loaded: 0, refusedByCode: {}, untyped: [], deaths: [], hangs: [] };
}

/** Runs options.count mutants of each kind in turn (alternating), and returns the totals. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzTotals> {
  const jobs = options.jobs ?? 1;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const start = options.start ?? 0;
  await mkdir(options.workDir, { recursive: true });
  const totals = emptyTotals();
  const queue: { kind: FuzzKind; index: number }[] = options.items ? [...options.items] : [];
  if (!options.items)
    for (let i = start; i < start + options.count; i++) queue.push({ kind: options.kinds[i % options.kinds.length]!, index: i });
  let next = 0;

  const worker = async (slot: number) => {
    const child = new FuzzChild();
    const path = join(options.workDir, `mutant-${process.pid}-${slot}.gguf`);
    try {
      while (next < queue.length) {
        const { kind, index } = queue[next++]!;
        const mutant = makeMutant(options.bases, kind, options.seed, index);
        await writeFile(path, mutant.bytes);
        const reply = await child.run(index, path, timeoutMs);
        const result = await classify(mutant, reply, options.deathDir);
        tally(totals, result);
        options.onResult?.(result, totals);
      }
    } finally {
      child.stop();
      await rm(path, { force: true });
    }
  };
  await Promise.all(Array.from({ length: jobs }, (_, slot) => worker(slot)));
  return totals;
}

async function save(mutant: Mutant, deathDir: string, why: string): Promise<string> {
  await mkdir(deathDir, { recursive: true });
  const name = `${mutant.kind}-seed${mutant.seed}-${mutant.index}`;
  const savedAs = join(deathDir, `${name}.gguf`);
  await writeFile(savedAs, mutant.bytes);
  await writeFile(join(deathDir, `${name}.txt`), `${why}\nbase: ${mutant.base}\n${mutant.description}\n`);
  return savedAs;
}

async function classify(mutant: Mutant, reply: Awaited<ReturnType<FuzzChild['run']>>, deathDir: string): Promise<MutantResult> {
  const head = { kind: mutant.kind, seed: mutant.seed, index: mutant.index, base: mutant.base, description: mutant.description };
  if ('hung' in reply) return { ...head, outcome: 'hang', savedAs: await save(mutant, deathDir, 'hang') };
  if ('died' in reply) {
    const why = `death: signal ${reply.signal}, exit code ${reply.exitCode}\n--- stderr tail ---\n${reply.stderr}`;
    return {
      ...head,
      outcome: 'death',
      signal: reply.signal,
      exitCode: reply.exitCode,
      stderr: reply.stderr,
      savedAs: await save(mutant, deathDir, why),
    };
  }
  if (reply.outcome === 'loaded') return { ...head, outcome: 'loaded' };
  if (reply.outcome === 'refused') return { ...head, outcome: 'refused', code: reply.code, message: reply.message };
  return { ...head, outcome: 'untyped', name: reply.name, message: reply.message };
}

function tally(totals: FuzzTotals, result: MutantResult): void {
  totals.mutants++;
  switch (result.outcome) {
    case 'loaded':
      totals.loaded++;
      break;
    case 'refused':
      totals.refusedByCode[result.code] = (totals.refusedByCode[result.code] ?? 0) + 1;
      break;
    case 'untyped':
      totals.untyped.push(result);
      break;
    case 'death':
      totals.deaths.push(result);
      break;
    case 'hang':
      totals.hangs.push(result);
      break;
  }
}

/** One line per outcome class, for the console and docs/robustness.md. */
export function formatTotals(totals: FuzzTotals): string {
  const codes = Object.entries(totals.refusedByCode)
    .sort((a, b) => b[1] - a[1])
    .map(([c, n]) => `${c} ${n}`)
    .join(', ');
  const refused = Object.values(totals.refusedByCode).reduce((a, b) => a + b, 0);
  return [
    `mutants ${totals.mutants}`,
    `loaded ${totals.loaded}`,
    `refused ${refused} (${codes || 'none'})`,
    `non-typed errors ${totals.untyped.length}`,
    `deaths ${totals.deaths.length}`,
    `hangs ${totals.hangs.length}`,
  ].join('; ');
}
