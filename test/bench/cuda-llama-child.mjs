/**
 * cuda-llama's side of every benchmark (compare.ts through ours.ts and parallel.ts, paired.ts):
 * one request in a fresh process, on the compiled package (dist/, what `import 'cuda-llama'`
 * loads) under plain node, as a user runs it and as node-llama-cpp-child.mjs runs node-llama-cpp.
 * Measured inside the orchestrating tsx process instead, cuda-llama would share its process with
 * tsx's loader thread (about 80 ms of CPU per 256 generated tokens in a fresh process, against
 * 3 ms under plain node), with the orchestrator's own garbage collections, and on a GPU run with
 * the NVML sampling timer: time the decode threads lose on a machine with no spare core, and
 * that neither other program pays. The parent compiles dist/ first (compileDist in ours.ts).
 *
 *   stdin:  one JSON request, by `kind` (each also has modelPath and loadOptions, LoadOptions
 *           without warmup, which each kind sets itself):
 *     workload  { shortPrompt, longPrompt, promptSizes, ppSamples: { [size]: n }, ttftSamples, genTokens, withReport }
 *               -> OursRun (ours.ts): load, warm-up, TTFT, pp by size, tg, the context, the layer report if
 *               asked; defined as node-llama-cpp-child.mjs defines its side (load with warmup: false,
 *               the excluded warm-up, then the timed requests)
 *     coldWarm  { shortPrompt, requestTokens } -> ColdWarmRun (ours.ts)
 *     parallel  { prompts, counts, genTokens } -> OursParallelRun (parallel.ts); loadOptions carry the
 *               context size and one sequence per prompt
 *     pp, tg    { tokens, samples, shortPrompt, stream? } -> the samples (tok/s), each after an unmeasured
 *               run of the same test, as llama-bench warms up: pp decodes the first `tokens` tokens of the
 *               sample text; tg generates `tokens` tokens after a `shortPrompt`-token prompt, with
 *               generate() (the engine's own clock: timings.tokensPerSecond), or with `stream: true`
 *               through model.stream() and a for-await loop, timed by that loop as the pieces reach it
 *     prompts   { shortPrompt } -> { shortPrompt, longPrompt }: the token ids every side decodes
 *     firstUse  { prompt, tokens } -> { loadMs, firstMs, againMs, text }: the load without warm-up, the
 *               first generation (the GPU code's first use) and the same again (jit.ts)
 *     embed     { texts, samples } -> { loadMs, ms: [...], tokens, decodes }: model.embed(texts) `samples`
 *               times after an unmeasured embed of the first 8 texts (embeddings.ts)
 *     chatTexts, chat, arrivals: the scenario benchmarks' kinds, in cuda-llama-scenarios.mjs
 *   stdout: exactly one JSON line, the result
 *   stderr: everything else; on failure the error and exit code 1
 *
 * Before any timed load the binding and its backends are loaded and the devices listed (free
 * memory included, which creates a CUDA context on a GPU host): node-llama-cpp-child.mjs loads
 * node-llama-cpp's binding and backends (getLlama) before its timed load too, so neither side's
 * load time holds the loading of the library. Whether getLlama also creates a CUDA context, we
 * have not checked; node-llama-cpp is not measured on the GPU host (no registry there).
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Llama } from '../../dist/index.js';
import { sampleTokens } from '../../dist/tools/tune.js';
import { scenarioKinds, scenarioRequired } from './cuda-llama-scenarios.mjs';

/**
 * The excluded warm-up before any measurement, as llama-bench's: a full prompt batch, then a
 * token. A one-token warm-up leaves most of the 512-token compute buffer untouched, and the first
 * measured prompt would pay its page faults. node-llama-cpp-child.mjs decodes the same.
 */
const WARM_UP_TOKENS = 512;
const warmUpLikeLlamaBench = (model, text) =>
  model.generate(text.slice(0, WARM_UP_TOKENS), { maxTokens: 2, temperature: 0, cachePrompt: false });

const kinds = {
  async embed(r) {
    const started = performance.now();
    const model = await Llama.load(r.modelPath, { ...r.loadOptions, warmup: false });
    const loadMs = performance.now() - started;
    try {
      let last = await model.embed(r.texts.slice(0, 8));
      const ms = [];
      for (let i = 0; i < r.samples; i++) {
        const t0 = performance.now();
        last = await model.embed(r.texts);
        ms.push(performance.now() - t0);
      }
      return { loadMs, ms, tokens: last.tokenCounts.reduce((a, b) => a + b, 0), decodes: last.decodes };
    } finally {
      await model.dispose();
    }
  },
  async workload(r) {
    const started = performance.now();
    const model = await Llama.load(r.modelPath, { ...r.loadOptions, warmup: false });
    const loadMs = performance.now() - started;
    try {
      const warmStarted = performance.now();
      await model.warmUp();
      const warmupMs = performance.now() - warmStarted;
      await warmUpLikeLlamaBench(model, r.longPrompt);
      let ttftSum = 0;
      for (let i = 0; i < r.ttftSamples; i++) {
        ttftSum += (await model.generate(r.shortPrompt, { maxTokens: 1, temperature: 0, cachePrompt: false })).timings.timeToFirstTokenMs;
      }
      const pp = {};
      for (const size of r.promptSizes) {
        let sum = 0;
        for (let i = 0; i < r.ppSamples[size]; i++) {
          const run = await model.generate(r.longPrompt.slice(0, size), { maxTokens: 1, temperature: 0, cachePrompt: false });
          if (run.promptTokens !== size) throw new Error(`expected ${size} prompt tokens, got ${run.promptTokens}`);
          sum += run.timings.promptTokensPerSecond;
        }
        pp[size] = sum / r.ppSamples[size];
      }
      const tg = await model.generate(r.shortPrompt, { maxTokens: r.genTokens, temperature: 0, seed: 1, cachePrompt: false });
      const report = r.withReport ? await model.layerReport() : undefined;
      return {
        loadMs,
        warmupMs,
        ttftMs: ttftSum / r.ttftSamples,
        pp,
        tgTokensPerSecond: tg.timings.tokensPerSecond,
        tgGeneratedTokens: tg.tokens.length,
        tgStopReason: tg.stopReason,
        contextInfo: model.contextInfo,
        ...(report ? { layerReport: report, kvCacheBytes: report.kvCache.bytes } : {}),
      };
    } finally {
      await model.dispose();
    }
  },

  // The same short request timed right after a load without warm-up, again, and after a load with it.
  async coldWarm(r) {
    const request = (model) => model.generate(r.shortPrompt, { maxTokens: r.requestTokens, temperature: 0, cachePrompt: false });
    let started = performance.now();
    const cold = await Llama.load(r.modelPath, { ...r.loadOptions, warmup: false });
    const loadMs = performance.now() - started;
    let first, second;
    try {
      first = await request(cold);
      second = await request(cold);
    } finally {
      await cold.dispose();
    }
    started = performance.now();
    const warmed = await Llama.load(r.modelPath, { ...r.loadOptions, warmup: true });
    const loadWithWarmupMs = performance.now() - started;
    let afterWarmup;
    try {
      afterWarmup = await request(warmed);
    } finally {
      await warmed.dispose();
    }
    return {
      loadMs,
      coldRequestMs: first.timings.totalMs,
      coldTtftMs: first.timings.timeToFirstTokenMs,
      warmRequestMs: second.timings.totalMs,
      warmTtftMs: second.timings.timeToFirstTokenMs,
      loadWithWarmupMs,
      requestAfterWarmupMs: afterWarmup.timings.totalMs,
      ttftAfterWarmupMs: afterWarmup.timings.timeToFirstTokenMs,
    };
  },

  async parallel(r) {
    const model = await Llama.load(r.modelPath, { ...r.loadOptions, warmup: true });
    try {
      // Excluded, like llama-batched-bench's own warm-up: the largest batch once, so that no
      // measured count pays for first use of the bigger compute graph.
      await model.generateBatch(r.prompts, { maxTokens: 2, temperature: 0, cachePrompt: false });
      const run = { tg: {}, pp: {}, generated: {} };
      for (const n of r.counts) {
        const batch = await model.generateBatch(r.prompts.slice(0, n), { maxTokens: r.genTokens, temperature: 0, cachePrompt: false });
        run.tg[n] = batch.timings.tokensPerSecond;
        run.pp[n] = batch.timings.promptTokensPerSecond;
        run.generated[n] = batch.results.map((result) => result.tokens.length);
      }
      return run;
    } finally {
      await model.dispose();
    }
  },

  pp: (r) => engineSamples(r),
  tg: (r) => engineSamples(r),
  ...scenarioKinds,

  // jit.ts: what the first use of the GPU code costs. The load without warm-up, then the first
  // generation (where the CUDA driver loads the kernels it needs, and compiles them first when it
  // runs PTX), then the same generation again; the text, to check that every mode computes the same.
  async firstUse(r) {
    const started = performance.now();
    const model = await Llama.load(r.modelPath, { ...r.loadOptions, warmup: false });
    const loadMs = performance.now() - started;
    try {
      const request = { maxTokens: r.tokens, temperature: 0, cachePrompt: false };
      const firstStarted = performance.now();
      const first = await model.generate(r.prompt, request);
      const firstMs = performance.now() - firstStarted;
      const againStarted = performance.now();
      await model.generate(r.prompt, request);
      return { loadMs, firstMs, againMs: performance.now() - againStarted, text: first.text };
    } finally {
      await model.dispose();
    }
  },

  async prompts(r) {
    // No warm-up: nothing is timed.
    const model = await Llama.load(r.modelPath, { ...r.loadOptions, warmup: false });
    try {
      const text = sampleTokens(model, Math.max(r.shortPrompt, WARM_UP_TOKENS));
      return { shortPrompt: text.slice(0, r.shortPrompt), longPrompt: text.slice(0, WARM_UP_TOKENS) };
    } finally {
      await model.dispose();
    }
  },
};

// paired.ts's engine rounds: llama.cpp's load-time warm-up, then the test once unmeasured and `samples` times measured.
async function engineSamples(r) {
  const model = await Llama.load(r.modelPath, { ...r.loadOptions, warmup: true });
  try {
    const text = sampleTokens(model, Math.max(r.tokens, r.shortPrompt));
    const once = async () =>
      r.kind === 'pp'
        ? (await model.generate(text.slice(0, r.tokens), { maxTokens: 1, temperature: 0, cachePrompt: false })).timings
            .promptTokensPerSecond
        : r.stream
          ? streamedTokensPerSecond(model, text.slice(0, r.shortPrompt), r.tokens)
          : (await model.generate(text.slice(0, r.shortPrompt), { maxTokens: r.tokens, temperature: 0, cachePrompt: false })).timings
              .tokensPerSecond;
    await once();
    const samples = [];
    for (let i = 0; i < r.samples; i++) samples.push(await once());
    return samples;
  } finally {
    await model.dispose();
  }
}

/**
 * tg as a streaming caller sees it: the tokens after the first piece's, per second from the first
 * piece reaching the for-await loop to the last (each piece's token count from onText, which the
 * stream calls as it queues that piece). generate()'s tokensPerSecond is the decoding thread's pace,
 * which a caller slow to take the pieces would not show.
 */
async function streamedTokensPerSecond(model, prompt, tokens) {
  const counts = [];
  const stream = model.stream(prompt, {
    maxTokens: tokens,
    temperature: 0,
    cachePrompt: false,
    onText: (_text, _choice, info) => counts.push(info.tokens),
  });
  let pieces = 0;
  let first = 0;
  let last = 0;
  let text = '';
  for await (const piece of stream) {
    last = performance.now();
    if (pieces++ === 0) first = last;
    text += piece;
  }
  const result = await stream.result;
  if (text !== result.text) throw new Error('the streamed pieces do not spell the result text');
  const after = counts.slice(1, pieces).reduce((a, b) => a + b, 0);
  if (after < 1 || last <= first) throw new Error(`${pieces} streamed pieces are too few to time`);
  return (after * 1000) / (last - first);
}

const required = {
  workload: ['shortPrompt', 'longPrompt', 'promptSizes', 'ppSamples', 'ttftSamples', 'genTokens'],
  coldWarm: ['shortPrompt', 'requestTokens'],
  parallel: ['prompts', 'counts', 'genTokens'],
  pp: ['tokens', 'samples', 'shortPrompt'],
  tg: ['tokens', 'samples', 'shortPrompt'],
  prompts: ['shortPrompt'],
  firstUse: ['prompt', 'tokens'],
  embed: ['texts', 'samples'],
  ...scenarioRequired,
};

function readRequest() {
  const request = JSON.parse(readFileSync(0, 'utf8'));
  if (!Object.hasOwn(kinds, request.kind))
    throw new TypeError(`request.kind must be one of ${Object.keys(kinds).join(', ')}, got ${request.kind}`);
  for (const key of ['modelPath', 'loadOptions', ...required[request.kind]]) {
    if (request[key] === undefined) throw new TypeError(`request (${request.kind}) is missing ${key}`);
  }
  // warmup belongs to the kind: a load's timing means something different with it.
  if ('warmup' in request.loadOptions) throw new TypeError('request.loadOptions must not set warmup: each kind sets it');
  if (request.kind === 'workload') {
    // Every size gets an explicit count from the parent: a missing one would silently measure nothing.
    for (const size of request.promptSizes) {
      if (!Number.isInteger(request.ppSamples[size]) || request.ppSamples[size] < 1)
        throw new TypeError(`request.ppSamples[${size}] must be a positive integer`);
    }
  }
  return request;
}

const request = readRequest();
// Excluded from every timing, as node-llama-cpp's getLlama is (see above).
Llama.devices();
process.stdout.write(`${JSON.stringify(await kinds[request.kind](request))}\n`);
