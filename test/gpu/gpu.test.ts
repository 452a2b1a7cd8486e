// GPU suite: runs on a host with a CUDA build and device, skips with the reason everywhere else.
// CUDA_LLAMA_REQUIRE_GPU=1 turns the skip into a failure (GPU CI, GPU sessions).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CPU_FALLBACK_WARNING, CudaLlamaError, ErrorCode, Llama, type LlamaModel } from '../../lib/index.js';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { toolEnv } from '../bench/llama-bench.js';
import { quantizedModel, repoRoot, syntheticModel } from '../helpers/models.js';

const build = Llama.build();
const cuda = build.cuda.available;
if (!cuda) {
  const why = `GPU suite skipped: ${build.cuda.reason}`;
  if (process.env.CUDA_LLAMA_REQUIRE_GPU === '1') throw new Error(`${why} (CUDA_LLAMA_REQUIRE_GPU=1)`);
  console.warn(why);
}

describe.skipIf(!cuda)('CUDA (synthetic TinyLlama-1.1B shape, Q4_0)', () => {
  let path: string;
  let gpu: LlamaModel;
  const prompt = 'The quick brown fox jumps over the lazy dog because';

  beforeAll(async () => {
    path = await quantizedModel('tinyllama1b', 'Q4_0');
    gpu = await Llama.load(path, { gpu: 'cuda', contextSize: 2048 });
  }, 600_000);
  afterAll(async () => {
    await gpu?.dispose();
  });

  it('full offload puts every layer, the output and the KV cache on CUDA0', async () => {
    const report = await gpu.layerReport();
    expect(report.layers.every((l) => l.device === 'CUDA0')).toBe(true);
    expect(report.offloaded).toEqual({ layers: 22, total: 22 });
    expect(report.output).toBe('CUDA0');
    expect(report.outputTensor).toBe('CUDA0');
    expect(report.kvCache.devices).toEqual(['CUDA0']);
    expect(report.problems).toEqual([]);
    expect(report.graph.tokenGeneration.cpuOpsOnGpuMemory.count).toBe(0);
    expect(report.graph.promptProcessing.cpuOpsOnGpuMemory.count).toBe(0);
    expect(report.devices.find((d) => d.device === 'CUDA0')?.weightsBytes).toBeGreaterThan(500e6);
    console.log(String(report));
  });

  it('gpuLayers: 7 reports exactly 7 layers on the GPU', async () => {
    const partial = await Llama.load(path, { gpu: 'cuda', gpuLayers: 7, contextSize: 2048 });
    try {
      const report = await partial.layerReport();
      expect(report.offloaded.layers).toBe(7);
      expect(report.layers.filter((l) => l.device === 'CUDA0')).toHaveLength(7);
      // CPU layers' big matmuls may run on the GPU (llama.cpp's op offload); nothing goes the other way.
      expect(report.problems).toEqual([]);
    } finally {
      await partial.dispose();
    }
  });

  it("greedy tokens on the GPU equal llama.cpp's own (llama-simple) on the same GPU, and the GPU is faster than the CPU", async () => {
    // Random weights leave near-ties among the top logits, which CPU and CUDA kernels (other
    // quantized dot products) may break differently from the first token on (seen on an H100):
    // the reference is llama.cpp's own program on the same GPU, with the same CUDA module.
    const simple = join(repoRoot, 'build', 'Release', 'llama-simple');
    const nPredict = 16;
    const stdout = execFileSync(simple, ['-m', path, '-n', String(nPredict), '-ngl', '99', prompt], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: toolEnv(Llama.build()) ?? process.env,
    });
    // llama-simple sizes its context to prompt + output; ours rounds that up to 256.
    const sized = await Llama.load(path, { gpu: 'cuda', contextSize: 256 });
    try {
      const promptTokens = sized.tokenize(prompt, { parseSpecial: true });
      const onGpu = await sized.generate(prompt, { maxTokens: nPredict, temperature: 0 });
      expect(stdout).toBe(sized.detokenize(promptTokens, { special: true }) + sized.detokenize(onGpu.tokens, { special: true }) + '\n');
    } finally {
      await sized.dispose();
    }
    const cpu = await Llama.load(path, { gpu: 'cpu', contextSize: 2048 });
    try {
      const cpuSpeed = (await cpu.generate(prompt, { maxTokens: 64, temperature: 0 })).timings.tokensPerSecond;
      const gpuSpeed = (await gpu.generate(prompt, { maxTokens: 64, temperature: 0 })).timings.tokensPerSecond;
      console.log(`tg: CPU ${cpuSpeed.toFixed(1)} tok/s, GPU ${gpuSpeed.toFixed(1)} tok/s`);
      expect(gpuSpeed).toBeGreaterThan(cpuSpeed);
    } finally {
      await cpu.dispose();
    }
  });

  it('generateBatch on the GPU: sequences do not leak into each other, more tokens per second in total', async () => {
    const batched = await Llama.load(path, { gpu: 'cuda', contextSize: 256, sequences: 8 });
    try {
      // One prompt alone and the same prompt among 7 others go through different CUDA kernels
      // (1 row against 8), which break the near-ties of random weights differently (seen on an
      // H100). Identical prompts in one batch share every kernel: their outputs must be equal,
      // whatever their neighbours, or state leaked between sequences.
      const prompts = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? prompt : `${prompt} ${i}`));
      // The 8 rows of each step are picked on the threadpool, whose threads the GPU leaves idle.
      expect(batched.contextInfo.threadpoolArgmax).toBe(true);
      const together = await batched.generateBatch(prompts, { maxTokens: 16, temperature: 0 });
      const same = together.results.filter((_, i) => i % 2 === 0).map((r) => r.tokens);
      same.forEach((tokens) => expect(tokens).toEqual(same[0]));
      together.results.forEach((r) => expect(r.tokens).toHaveLength(16));
      const single = (await batched.generate(prompt, { maxTokens: 64, temperature: 0 })).timings.tokensPerSecond;
      const total = (await batched.generateBatch(prompts, { maxTokens: 64, temperature: 0 })).timings.tokensPerSecond;
      console.log(`tg: 1 sequence ${single.toFixed(1)} tok/s, 8 sequences ${total.toFixed(1)} tok/s in total`);
      expect(total).toBeGreaterThan(single);
    } finally {
      await batched.dispose();
    }
  });

  it('a prompt longer than batchSize: its batches are queued on the GPU unsynchronised, and give the tokens one batch gives', async () => {
    // The prompt loop waits for the GPU only after a batch that ends a prompt. Both contexts
    // compute in ubatches of 256, so the GPU runs the same kernels on the same shapes either
    // way; only whether llama_decode gets the prompt at once or in 256-token pieces differs.
    const split = await Llama.load(path, { gpu: 'cuda', contextSize: 2048, batchSize: 256, ubatchSize: 256 });
    const whole = await Llama.load(path, { gpu: 'cuda', contextSize: 2048, batchSize: 2048, ubatchSize: 256 }).catch(
      async (error: unknown) => {
        await split.dispose();
        throw error;
      },
    );
    try {
      const sentence = 'The quick brown fox jumps over the lazy dog because it was bored. ';
      const long = sentence.repeat(Math.ceil(1500 / split.tokenize(sentence).length));
      expect(split.tokenize(long).length).toBeGreaterThan(5 * 256);
      const inBatches = await split.generate(long, { maxTokens: 16, temperature: 0 });
      const atOnce = await whole.generate(long, { maxTokens: 16, temperature: 0 });
      console.log(
        `${inBatches.promptTokens}-token prompt: ${inBatches.timings.promptMs.toFixed(1)} ms in 256-token batches, ` +
          `${atOnce.timings.promptMs.toFixed(1)} ms in one`,
      );
      expect(inBatches.tokens).toHaveLength(16);
      expect(inBatches.tokens).toEqual(atOnce.tokens);
    } finally {
      await split.dispose();
      await whole.dispose();
    }
  });

  it("gpuLayers: 'auto' uses llama.cpp's fit: the whole 1.1B model fits an H100-class GPU", async () => {
    const plan = await Llama.plan(path, { gpu: 'cuda', gpuLayers: 'auto', contextSize: 2048 });
    expect(plan.fits).toBe(true);
    const fitted = await Llama.load(path, { gpu: 'cuda', gpuLayers: 'auto', contextSize: 2048 });
    try {
      const report = await fitted.layerReport();
      console.log(`gpuLayers 'auto': ${report.summary}`);
      expect(report.offloaded.layers).toBe(22);
    } finally {
      await fitted.dispose();
    }
  });

  it('NVML telemetry reads the device the model runs on', () => {
    const t = Llama.telemetry();
    expect(t.available).toBe(true);
    if (!t.available) return;
    expect(t.devices.length).toBeGreaterThan(0);
    expect(t.devices[0]!.computeCapability).toMatch(/^\d+\.\d+$/);
    expect(t.devices[0]!.powerLimitW).toBeGreaterThan(0);
    console.log(`NVML: ${JSON.stringify(t.devices[0])}`);
  });

  it("the CUDA module's fatbin is read: each GPU runs its own SASS where the build compiled that architecture", () => {
    const t = Llama.telemetry();
    expect(build.cudaModuleCode).toMatch(/SASS sm_\d+/);
    if (!t.available) return;
    expect(build.cuda.runsAs).toHaveLength(t.devices.length);
    const archs = (build.cudaModule?.metadata?.cudaArchitectures ?? '').split(/[;,\s]+/);
    t.devices.forEach((d, i) => {
      const arch = d.computeCapability!.replace('.', '');
      // "90-real" or plain "90" (SASS and PTX) compile SASS; "90-virtual" only PTX.
      if (archs.includes(`${arch}-real`) || archs.includes(arch)) expect(build.cuda.runsAs![i]).toMatch(new RegExp(`: SASS sm_${arch}$`));
    });
    console.log(`CUDA module code: ${build.cudaModuleCode}; ${build.cuda.runsAs!.join('; ')}`);
  });

  it('tune recommends the GPU over the CPU for the 1.1B model, in words', async () => {
    const result = await Llama.tune(path, { promptTokens: 128, outputTokens: 32, repetitions: 1 });
    console.log(result.reasons.join('\n'));
    expect(result.best.options.gpu).toBe('cuda');
    expect(result.candidates.some((c) => c.options.gpu === 'cpu' && c.requestMs !== undefined)).toBe(true);
    expect(result.reasons[1]).toMatch(/x faster than the CPU/);
  }, 600_000);
});

describe.skipIf(!cuda)('CUDA op placement (synthetic tiny shape: head size 16, which CUDA flash attention lacks)', () => {
  let tiny: string;
  beforeAll(async () => {
    tiny = await syntheticModel('tiny');
  }, 120_000);

  it("gpu: 'cuda' with flashAttention 'on' is refused: the attention op would run on the CPU on KV cache in GPU memory", async () => {
    const refused = await Llama.load(tiny, { gpu: 'cuda', flashAttention: 'on', contextSize: 256 }).then(
      async (model) => {
        await model.dispose();
        return null;
      },
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(CudaLlamaError);
    const error = refused as CudaLlamaError;
    console.log(`refused as expected: ${error.message}`);
    expect(error.code).toBe(ErrorCode.GPU_PLACEMENT);
    expect(error.message).toMatch(/FLASH_ATTN_EXT .* on CUDA0/);
    expect(error.remedy).toMatch(/flashAttention 'auto'/);
  });

  it("flashAttention 'auto' lets llama.cpp turn it off on this GPU: the same load is accepted, everything on CUDA0", async () => {
    const model = await Llama.load(tiny, { gpu: 'cuda', flashAttention: 'auto', contextSize: 256 });
    try {
      const report = await model.layerReport();
      expect(report.problems).toEqual([]);
      expect(report.offloaded).toEqual({ layers: 4, total: 4 });
    } finally {
      await model.dispose();
    }
  });

  it("gpu: 'auto' keeps the load and says so: a coded warning and the problem in the layer report", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const model = await Llama.load(tiny, { gpu: 'auto', flashAttention: 'on', contextSize: 256 });
      try {
        const report = await model.layerReport();
        expect(report.problems.map((p) => p.kind)).toEqual(expect.arrayContaining(['ops']));
        expect(report.summary).toMatch(/NOT AS REQUESTED: .*ops/);
      } finally {
        await model.dispose();
      }
      await new Promise((resolve) => setImmediate(resolve));
      expect(
        warnings.some((w) => (w as Error & { code?: string }).code === CPU_FALLBACK_WARNING && /partly on the CPU/.test(w.message)),
      ).toBe(true);
    } finally {
      process.off('warning', onWarning);
    }
  });
});

describe.skipIf(!cuda)('CUDA embeddings and rerank (synthetic BGE-small and Qwen3-Reranker shapes)', () => {
  const cosine = (a: Float32Array, b: Float32Array) => a.reduce((sum, x, i) => sum + x * b[i]!, 0);

  it("gpu: 'cuda' puts an encoder's layers on CUDA0, and its vectors equal the CPU's (cosine >= 0.999)", async () => {
    const path = await syntheticModel('bgeSmall');
    const texts = Array.from({ length: 300 }, (_, i) => `passage ${i} about local retrieval on a GPU`);
    const onGpu = await Llama.load(path, { gpu: 'cuda', contextSize: 512 });
    const onCpu = await Llama.load(path, { gpu: 'cpu', contextSize: 512 });
    try {
      const report = await onGpu.layerReport();
      expect(report.layers.every((l) => l.device === 'CUDA0')).toBe(true);
      expect(report.problems).toEqual([]);
      const [gpuResult, cpuResult] = [await onGpu.embed(texts), await onCpu.embed(texts)];
      expect(gpuResult.decodes).toBeLessThan(20);
      gpuResult.embeddings.forEach((v, i) => expect(cosine(v, cpuResult.embeddings[i]!)).toBeGreaterThanOrEqual(0.999));
    } finally {
      await onGpu.dispose();
      await onCpu.dispose();
    }
  });

  it('a reranker on CUDA0 ranks as on the CPU', async () => {
    const path = await syntheticModel('smallQwen3Reranker');
    const documents = ['pandas eat bamboo', 'the giant panda is a bear', 'paris is in france', 'hello'];
    const onGpu = await Llama.load(path, { gpu: 'cuda', contextSize: 2048 });
    const onCpu = await Llama.load(path, { gpu: 'cpu', contextSize: 2048 });
    try {
      const [g, c] = [await onGpu.rerank('what is a panda?', documents), await onCpu.rerank('what is a panda?', documents)];
      g.scores.forEach((s, i) => expect(Math.abs(s - c.scores[i]!)).toBeLessThan(1e-2));
    } finally {
      await onGpu.dispose();
      await onCpu.dispose();
    }
  });
});
