// A seeded sample of the loader fuzzers (npm run fuzz runs them at scale): every mutant loads, or
// is refused with a CudaLlamaError code; none kills its process. Each mutant runs in a child.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBases, systematicCount, type FuzzBase } from '../fuzz/mutants.js';
import { formatTotals, runFuzz } from '../fuzz/runner.js';
import { cacheDir, repoRoot } from '../helpers/models.js';

const SEED = 24;
let dir: string;
let bases: FuzzBase[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cuda-llama-fuzz-'));
  bases = await loadBases({ cacheDir, vocabDir: join(repoRoot, 'vendor/llama.cpp/models') });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loader fuzz sample', () => {
  it(`seed ${SEED}: single-key edits spread over the list, combinations and byte flips; 0 deaths, every failure typed`, async () => {
    const n = systematicCount(bases);
    const items = [
      // Every 15th single-key edit: each key family of both tokenizers, the known killers among them.
      ...Array.from({ length: Math.ceil(n / 15) }, (_, i) => ({ kind: 'metadata' as const, index: i * 15 })),
      ...Array.from({ length: 10 }, (_, i) => ({ kind: 'metadata' as const, index: n + i })),
      ...Array.from({ length: 40 }, (_, i) => ({ kind: 'bytes' as const, index: i })),
    ];
    const totals = await runFuzz({
      seed: SEED,
      count: items.length,
      items,
      kinds: ['metadata', 'bytes'],
      bases,
      workDir: dir,
      deathDir: join(dir, 'deaths'),
    });
    console.log(`fuzz sample, seed ${SEED}: ${formatTotals(totals)}`);
    const bugs = [...totals.deaths, ...totals.hangs, ...totals.untyped].map(
      (r) => `${r.kind} #${r.index} (${r.base}) ${r.description.slice(0, 120)}: ${r.outcome}`,
    );
    expect(bugs).toEqual([]);
    expect(totals.mutants).toBe(items.length);
    expect(totals.loaded).toBeGreaterThan(0);
    expect(totals.refusedByCode.ERR_MODEL_INVALID).toBeGreaterThan(0);
  }, 600_000);
});
