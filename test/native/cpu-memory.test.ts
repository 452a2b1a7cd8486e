// RAM on the CPU path: a context beyond this machine's available memory is refused with
// ERR_INSUFFICIENT_MEMORY and its sizes before anything is allocated, never the OOM killer.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CudaLlamaError, ErrorCode, Llama } from '../../lib/index.js';
import { ensureSyntheticModel, shapes } from '../../lib/gguf/synthetic-model.js';
import { hostMemory } from '../../lib/host-memory.js';
import { KV_CELL_BYTES, type LoadPlan } from '../../lib/plan.js';
import { cacheDir, repoRoot, syntheticModel, vocabPath } from '../helpers/models.js';

/** The largest contextSize validation accepts; the model's training context allows it. */
const MAX_CONTEXT = 16_777_216;

let tiny: string;
/** The tiny model with a training context of MAX_CONTEXT, so huge windows pass validation. */
let wide: string;

beforeAll(async () => {
  tiny = await syntheticModel('tiny');
  wide = await ensureSyntheticModel({ cacheDir, shape: { ...shapes.tiny, contextLength: MAX_CONTEXT }, label: 'tiny-ctx16m', vocabPath });
});

const rss = () => process.memoryUsage().rss;

async function refusal(promise: Promise<unknown>): Promise<CudaLlamaError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CudaLlamaError);
  return error as CudaLlamaError;
}

describe('a context beyond available RAM', () => {
  it('is refused from the plan with the sizes, and nothing stays allocated', async () => {
    // KV bytes per cell from llama.cpp itself, at a size that is cheap to plan.
    const small = await Llama.plan(wide, { gpu: 'cpu', contextSize: 4096, kvCacheType: 'f32' });
    const perCell = small.host.kvCacheBytes / 4096;
    const available = hostMemory().availableBytes;
    const sequences = Math.ceil((available * 1.25) / (MAX_CONTEXT * perCell));
    expect(sequences, 'this machine has more RAM than a 256-sequence context can exceed').toBeLessThanOrEqual(256);
    const cells = MAX_CONTEXT * sequences;
    // The bookkeeping check before the dry run must let this one through to the plan.
    expect(cells * KV_CELL_BYTES).toBeLessThan(available / 4);

    const before = rss();
    const error = await refusal(Llama.load(wide, { gpu: 'cpu', contextSize: MAX_CONTEXT, sequences, kvCacheType: 'f32' }));
    expect(rss() - before).toBeLessThan(256 * 2 ** 20);
    expect(error.code).toBe(ErrorCode.INSUFFICIENT_MEMORY);
    expect(error.message).toMatch(
      /^the load needs [\d.]+ GiB of RAM \(weights 0 KiB, KV cache [\d.]+ GiB, compute [\d.]+ [GMK]iB, KV cells [\d.]+ [GM]iB; [\d.]+ MiB of memory-mapped weights not counted\) plus a margin of [\d.]+ [GM]iB, and [\d.]+ GiB is available \((MemAvailable|the cgroup memory limit)\); nothing was allocated/,
    );
    expect(error.remedy).toMatch(/lower contextSize or sequences.*kvCacheType.*free memory/);
    const { host } = (error.details as { plan: LoadPlan }).plan;
    expect(host.kvCacheBytes).toBe(cells * perCell);
    expect(host.kvCellsBytes).toBe(cells * KV_CELL_BYTES);
    expect(host.neededBytes).toBeGreaterThan(host.availableBytes);
    expect(host.fits).toBe(false);

    // Llama.plan says the same without throwing.
    const plan = await Llama.plan(wide, { gpu: 'cpu', contextSize: MAX_CONTEXT, sequences, kvCacheType: 'f32' });
    expect(plan.fits).toBe(false);
    expect(plan.devices.find((d) => d.device === 'CPU')).toMatchObject({ fits: false, freeBytes: plan.host.availableBytes });
  });

  it('whose KV cells alone exceed RAM is refused before the dry run allocates them', async () => {
    const available = hostMemory().availableBytes;
    const sequences = Math.ceil(available / KV_CELL_BYTES / MAX_CONTEXT) + 1;
    expect(sequences, 'this machine has more RAM than a 256-sequence context can exceed').toBeLessThanOrEqual(256);
    const before = rss();
    const error = await refusal(Llama.load(wide, { gpu: 'cpu', contextSize: MAX_CONTEXT, sequences }));
    expect(rss() - before).toBeLessThan(64 * 2 ** 20);
    expect(error.code).toBe(ErrorCode.INSUFFICIENT_MEMORY);
    expect(error.message).toContain(
      `a context of ${MAX_CONTEXT * sequences} KV cells (contextSize ${MAX_CONTEXT} × sequences ${sequences}) needs`,
    );
    expect(error.message).toMatch(
      /for llama\.cpp's bookkeeping of the cells alone, before the KV cache itself, and [\d.]+ GiB is available/,
    );
    expect(error.details).toMatchObject({ cells: MAX_CONTEXT * sequences, kvCellsBytes: MAX_CONTEXT * sequences * KV_CELL_BYTES });
    await expect(Llama.plan(wide, { gpu: 'cpu', contextSize: MAX_CONTEXT, sequences })).rejects.toMatchObject({
      code: ErrorCode.INSUFFICIENT_MEMORY,
    });
  });
});

describe('loads that fit', () => {
  it('still load and generate, and the plan counts mapped weights apart', async () => {
    const plan = await Llama.plan(tiny, { gpu: 'cpu', contextSize: 512 });
    expect(plan.fits).toBe(true);
    expect(plan.host).toMatchObject({ fits: true, weightsBytes: 0 });
    expect(plan.host.mappedWeightsBytes).toBeGreaterThan(0);
    expect(plan.host.neededBytes).toBe(plan.host.kvCacheBytes + plan.host.computeBytes + plan.host.kvCellsBytes);
    const read = await Llama.plan(tiny, { gpu: 'cpu', contextSize: 512, mmap: false });
    expect(read.host).toMatchObject({ mappedWeightsBytes: 0, weightsBytes: plan.host.mappedWeightsBytes });

    const model = await Llama.load(tiny, { gpu: 'cpu', contextSize: 512 });
    try {
      const result = await model.generate('Hello', { maxTokens: 4, temperature: 0 });
      expect(result.tokens.length).toBeGreaterThan(0);
    } finally {
      await model.dispose();
    }
  });

  it("KV_CELL_BYTES is llama.cpp's per-cell bookkeeping: a dry run of many cells holds about that much", () => {
    // In a child process, so its peak RSS (ru_maxrss) is this dry run's and nothing else's.
    const cells = MAX_CONTEXT;
    const script = `
      import { Llama } from ${JSON.stringify(join(repoRoot, 'lib', 'index.ts'))};
      const path = ${JSON.stringify(wide)};
      await Llama.plan(path, { gpu: 'cpu', contextSize: 256 });
      const base = process.resourceUsage().maxRSS;
      await Llama.plan(path, { gpu: 'cpu', contextSize: ${cells} });
      console.log(JSON.stringify({ grewBytes: (process.resourceUsage().maxRSS - base) * 1024 }));
    `;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect({ status: child.status, stderr: child.stderr.slice(-500) }).toMatchObject({ status: 0 });
    const { grewBytes } = JSON.parse(child.stdout.trim().split('\n').pop()!) as { grewBytes: number };
    expect(grewBytes / cells).toBeGreaterThan(KV_CELL_BYTES * 0.8);
    expect(grewBytes / cells).toBeLessThan(KV_CELL_BYTES * 1.3);
  });
});
