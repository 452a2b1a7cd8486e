// The tuning advice in words, from measured candidates (made up here): which wins and why.
import { describe, expect, it } from 'vitest';
import { CudaLlamaError, ErrorCode } from '../../lib/errors.js';
import { formatBytes } from '../../lib/format.js';
import { neededContextSize, tune, tuneCandidates, tuneReasons, type TuneCandidate } from '../../lib/tools/tune.js';

const work = { promptTokens: 512, outputTokens: 128 };

function measured(name: string, options: TuneCandidate['options'], requestMs: number, extra: Partial<TuneCandidate> = {}): TuneCandidate {
  return {
    name,
    options,
    requestMs,
    timeToFirstTokenMs: requestMs / 10,
    tokensPerSecond: 1000 / requestMs,
    kvCacheBytes: 2 ** 20,
    ...extra,
  };
}

describe('tuning', () => {
  it('sizes the context to the workload, padded like the KV cache', () => {
    expect(neededContextSize(512, 128)).toBe(768);
    expect(neededContextSize(1, 1)).toBe(256);
    expect(neededContextSize(2047, 1)).toBe(2304);
  });

  it('tries full offload, its variants and the fit with CUDA, and the CPU once as the baseline', () => {
    const names = tuneCandidates({ cuda: true, allowCpu: true, neededContext: 768, defaultContext: 4096 }).map((c) => c.name);
    expect(names).toEqual([
      'full offload',
      'full offload, flash attention on',
      'full offload, flash attention off',
      'full offload, contextSize 4096',
      "llama.cpp's fit (gpuLayers 'auto')",
      'CPU',
    ]);
    expect(tuneCandidates({ cuda: false, allowCpu: true, neededContext: 4096, defaultContext: 4096 }).map((c) => c.name)).toEqual([
      'CPU',
      'CPU, flash attention on',
      'CPU, flash attention off',
    ]);
    // A default context too small for the workload is not tried; a bigger one only shows its cost.
    expect(
      tuneCandidates({ cuda: false, allowCpu: true, neededContext: 8192, defaultContext: 4096 }).some(
        (c) => c.options.contextSize !== 8192,
      ),
    ).toBe(false);
    expect(
      tuneCandidates({ cuda: false, allowCpu: true, neededContext: 768, defaultContext: 4096 })
        .filter((c) => c.contextCostOnly)
        .map((c) => c.name),
    ).toEqual(['CPU, contextSize 4096']);
  });

  it('with several requests: every candidate batches them, and the first placement also runs them one by one', () => {
    const list = tuneCandidates({ cuda: true, allowCpu: true, neededContext: 768, defaultContext: 4096, sequences: 4 });
    expect(list.map((c) => c.name)).toEqual([
      'full offload',
      'full offload, flash attention on',
      'full offload, flash attention off',
      'full offload, contextSize 4096',
      "llama.cpp's fit (gpuLayers 'auto')",
      'CPU',
      'full offload, one request at a time',
    ]);
    expect(list.filter((c) => !c.oneAtATime).every((c) => c.options.sequences === 4)).toBe(true);
    expect(list.at(-1)).toEqual({
      name: 'full offload, one request at a time',
      options: { gpu: 'cuda', gpuLayers: 'max', contextSize: 768 },
      oneAtATime: true,
    });
  });

  it('says whether running the requests together pays', () => {
    const batched = measured('CPU', { gpu: 'cpu', contextSize: 768, sequences: 4 }, 1000);
    const alone = { ...measured('CPU, one request at a time', { gpu: 'cpu', contextSize: 768 }, 2500), oneAtATime: true };
    const reasons = tuneReasons([batched, alone], batched, { ...work, sequences: 4 }, undefined);
    expect(reasons[0]).toBe(
      'Fastest for 4 requests at once, each a 512-token prompt with 128 tokens out: CPU, 1000 ms for all 4 (time to first token 100 ms, 1.0 tok/s in total).',
    );
    expect(reasons[1]).toBe('Running the 4 requests together (sequences: 4) is 2.5x faster than one after another (2500 ms).');
    expect(reasons.at(-1)).toBe("Paste: Llama.load(path, { gpu: 'cpu', contextSize: 768, sequences: 4 })");
    const slowBatch = { ...batched, requestMs: 3000 };
    expect(tuneReasons([slowBatch, alone], alone, { ...work, sequences: 4 }, undefined)[1]).toBe(
      'One request after another is 1.2x faster than running the 4 together (3000 ms) on this machine.',
    );
  });

  it('says how much faster the GPU is, what flash attention and an oversized context cost', () => {
    const full = measured('full offload', { gpu: 'cuda', gpuLayers: 'max', contextSize: 768 }, 100, { kvCacheBytes: 12 * 2 ** 20 });
    const candidates = [
      full,
      measured('full offload, flash attention on', { gpu: 'cuda', gpuLayers: 'max', contextSize: 768, flashAttention: 'on' }, 110),
      measured('full offload, flash attention off', { gpu: 'cuda', gpuLayers: 'max', contextSize: 768, flashAttention: 'off' }, 132),
      measured('full offload, contextSize 32768', { gpu: 'cuda', gpuLayers: 'max', contextSize: 32768 }, 108, {
        kvCacheBytes: 512 * 2 ** 20,
      }),
      {
        name: "llama.cpp's fit (gpuLayers 'auto')",
        options: { gpu: 'cuda', gpuLayers: 'auto', contextSize: 768 },
        error: 'ERR_GPU_PLACEMENT: does not fit',
      },
      measured('CPU', { gpu: 'cpu', contextSize: 768 }, 3100),
    ] as TuneCandidate[];
    const reasons = tuneReasons(candidates, full, work, undefined);
    expect(reasons).toEqual([
      'Fastest for a 512-token prompt with 128 tokens out: full offload, 100 ms per request (time to first token 10.0 ms, 10.0 tok/s).',
      'full offload is 31.0x faster than the CPU (3100 ms per request).',
      'Flash attention on is 20% faster than off here.',
      'A contextSize of 32768 costs 512 MiB of KV cache against 12 MiB at 768, which this workload needs, and runs 8% slower.',
      "Not measured: llama.cpp's fit (gpuLayers 'auto') (ERR_GPU_PLACEMENT: does not fit).",
      "Paste: Llama.load(path, { gpu: 'cuda', gpuLayers: 'max', contextSize: 768 })",
    ]);
  });

  it('says when the CPU wins over the GPU, and why', () => {
    const cpu = measured('CPU', { gpu: 'cpu', contextSize: 256 }, 80);
    const gpu = measured('full offload', { gpu: 'cuda', gpuLayers: 'max', contextSize: 256 }, 95);
    const reasons = tuneReasons([gpu, cpu], cpu, { promptTokens: 20, outputTokens: 20 }, undefined);
    expect(reasons[1]).toBe(
      'The CPU wins: 80.0 ms per request against 95.0 ms with full offload: for this model and output length the per-token cost of driving the GPU (kernel launches, synchronization) outweighs its compute.',
    );
  });
});

describe('tuning advice when a bigger context happens to win', () => {
  it('still compares flash attention and names what the bigger window costs', () => {
    const needed = measured('CPU', { gpu: 'cpu', contextSize: 256 }, 21);
    const on = measured('CPU, flash attention on', { gpu: 'cpu', contextSize: 256, flashAttention: 'on' }, 22);
    const off = measured('CPU, flash attention off', { gpu: 'cpu', contextSize: 256, flashAttention: 'off' }, 24);
    const big = measured('CPU, contextSize 2048', { gpu: 'cpu', contextSize: 2048 }, 20, { kvCacheBytes: 8 * 2 ** 20 });
    const reasons = tuneReasons([needed, on, off, big], big, { promptTokens: 40, outputTokens: 8 }, undefined);
    expect(reasons).toContain('Flash attention on is 9% faster than off here.');
    expect(reasons.find((r) => r.startsWith('A contextSize of 2048'))).toMatch(/costs no speed \(it measured 5% faster: noise\)/);
  });
});

describe('tuning that can measure nothing', () => {
  it("is an ERR_TUNE with every configuration's error, not a plain Error", async () => {
    const deps = {
      load: async () => {
        throw new CudaLlamaError(ErrorCode.CONTEXT_CREATE, 'llama.cpp could not create a context', { remedy: 'lower contextSize' });
      },
      cudaUsable: () => ({ usable: false, reason: 'no CUDA here', devices: [] }),
      defaultContextSize: async () => 256,
    };
    const error = await tune(deps, '/m.gguf', { gpu: 'cpu', promptTokens: 8, outputTokens: 8 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CudaLlamaError);
    expect(error).toMatchObject({ code: ErrorCode.TUNE, remedy: expect.stringMatching(/smaller workload/) });
    expect((error as Error).message).toMatch(
      /^no configuration could be measured: CPU: ERR_CONTEXT_CREATE: llama\.cpp could not create a context; /,
    );
    expect((error as CudaLlamaError).details?.candidates).toHaveLength(3);
  });
});

describe('byte formatting', () => {
  it('picks the unit and its precision, or keeps the one a report asks for', () => {
    expect(formatBytes(512 * 2 ** 20)).toBe('512 MiB');
    expect(formatBytes(1.5 * 2 ** 30)).toBe('1.50 GiB');
    expect(formatBytes(3000)).toBe('3 KiB');
    expect(formatBytes(2 ** 20 * 0.25, { unit: 'MiB', digits: 1 })).toBe('0.3 MiB');
    expect(formatBytes(2 ** 30, { unit: 'GiB', digits: 1 })).toBe('1.0 GiB');
  });
});
