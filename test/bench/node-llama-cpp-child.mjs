/**
 * One node-llama-cpp repetition of the benchmark, in a process of its own (node-llama-cpp.ts
 * spawns it; node-llama-cpp must never share a process with our libllama/libggml).
 *
 *   stdin:  the JSON request (NodeLlamaCppArgs plus installDir, batchSize and gpuLayers resolved),
 *           or with mode 'parallel' a NodeLlamaCppParallelArgs request, or with mode 'chat' or
 *           'arrivals' a scenario request (node-llama-cpp-scenarios.mjs)
 *   stdout: exactly one JSON line, the NodeLlamaCppRun (or NodeLlamaCppParallelRun)
 *   stderr: everything else; on failure a message and exit code 1
 *
 * The measurements are defined as in cuda-llama-child.mjs: load = loadModel + createContext; a warm-up (512
 * prompt tokens, then one generated token decoded) excluded; TTFT = the short prompt on an empty
 * sequence to the first greedy token, ttftSamples times (the mean); pp = each prompt size (the
 * first n tokens of the long prompt) on an empty sequence, no token generated, ppSamples[size]
 * times (the mean); tg = genTokens greedy tokens after the short prompt, (n - 1) / (first to last
 * token). The sequence is cleared between them.
 *
 * Mode 'parallel' (as cuda-llama-child.mjs does for ours): one context with a sequence per prompt, each
 * `window` tokens; for each count n, n sequences evaluate at once (node-llama-cpp batches
 * concurrent evaluations into shared decodes), and aggregate tg = tokens after each sequence's
 * first over the time from the first first token to the last token.
 *
 * What node-llama-cpp does that llama-bench does not, and has no switch for:
 * - its addon sets n_ubatch = n_batch (AddonContext.cpp), so llama-bench's 2048/512 pair cannot be
 *   reproduced. The parent passes 512: the same 512-token ubatches and compute buffers, though a
 *   2048-token prompt is then 4 llama_decode calls from its JS queue rather than one;
 * - every decode goes through its JS batching queue, dispatched on the next event-loop turn
 *   (setImmediate), and every generated token goes through its sampler chain (greedy here);
 * - loadModel reads the GGUF a second time in JS (GGUF insights, for its memory estimates) before
 *   llama.cpp loads it; that is part of its load time;
 * - pp requests no logits at all (llama-bench's batch asks for the last token's).
 */
import { existsSync, readFileSync, readdirSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { scenarioKeys, scenarioModes } from './node-llama-cpp-scenarios.mjs';

// node-llama-cpp prints some notices through console.log/info; stdout is reserved for the result line.
globalThis.console = new console.Console({ stdout: process.stderr, stderr: process.stderr });

function readRequest() {
  const request = JSON.parse(readFileSync(0, 'utf8'));
  const keys = Object.hasOwn(scenarioKeys, request.mode)
    ? scenarioKeys[request.mode]
    : request.mode === 'parallel'
      ? ['installDir', 'modelPath', 'threads', 'window', 'batchSize', 'prompts', 'counts', 'genTokens', 'gpuLayers']
      : [
          'installDir',
          'modelPath',
          'threads',
          'contextSize',
          'batchSize',
          'longPrompt',
          'promptSizes',
          'ppSamples',
          'ttftSamples',
          'shortPrompt',
          'genTokens',
          'gpuLayers',
        ];
  for (const key of keys) {
    if (request[key] === undefined) throw new TypeError(`request is missing ${key}`);
  }
  if (request.mode === undefined) {
    // Every size gets an explicit count from the parent: a missing one would silently measure once.
    const counts = [
      ['ttftSamples', request.ttftSamples],
      ...request.promptSizes.map((size) => [`ppSamples[${size}]`, request.ppSamples[size]]),
    ];
    for (const [name, count] of counts) {
      if (!Number.isInteger(count) || count < 1) throw new TypeError(`request.${name} must be a positive integer, got ${count}`);
    }
  }
  if (request.gpu !== false && request.gpu !== 'cuda') throw new TypeError(`request.gpu must be false or 'cuda', got ${request.gpu}`);
  return request;
}

async function importNodeLlamaCpp(installDir) {
  const requireFromInstall = createRequire(join(installDir, 'package.json'));
  const entry = requireFromInstall.resolve('node-llama-cpp');
  // Its "exports" map does not expose package.json.
  const manifest = JSON.parse(readFileSync(join(installDir, 'node_modules', 'node-llama-cpp', 'package.json'), 'utf8'));
  return { module: await import(pathToFileURL(entry).href), version: manifest.version };
}

/**
 * The llama/ggml libraries (and CUDA runtime, if any) this process has mapped. ggml loads the
 * best-matching libggml-cpu-<variant>.so at run time, so this names the CPU variant in use; and a
 * llama/ggml library from outside the install (our build folders use the same sonames) is refused.
 */
function loadedLibraries(installDir) {
  const installRoot = realpathSync(installDir);
  const paths = new Set();
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const path = line.slice(line.indexOf('/'));
    if (line.includes('/') && /\/(lib(ggml|llama|cudart|cublas)[^/]*\.so[^/]*|llama-addon\.node)$/.test(path)) paths.add(path);
  }
  const libraries = [];
  for (const path of [...paths].sort()) {
    const inside = !relative(installRoot, path).startsWith('..');
    if (!inside && /\/(lib(ggml|llama)[^/]*|llama-addon\.node)$/.test(path)) {
      throw new Error(
        `node-llama-cpp loaded ${path}, which is not from its install (${installRoot}); ` +
          'check LD_LIBRARY_PATH and LD_PRELOAD for folders holding another libllama/libggml',
      );
    }
    libraries.push(inside ? relative(installRoot, path) : path);
  }
  return libraries;
}

function installedBinaryPackages(installDir) {
  const scopeDir = join(installDir, 'node_modules', '@node-llama-cpp');
  return existsSync(scopeDir) ? readdirSync(scopeDir).map((name) => `@node-llama-cpp/${name}`) : [];
}

/**
 * Up to `count` tokens from the prompt on the current sequence, greedy, through end-of-generation
 * tokens rather than stopping at them (yieldEogToken), with the time each one reached us.
 */
async function generate(sequence, prompt, count) {
  const startedAt = performance.now();
  const tokens = [];
  const tokenTimes = [];
  for await (const token of sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
    tokenTimes.push(performance.now());
    tokens.push(token);
    if (tokens.length >= count) break;
  }
  return { startedAt, tokens, tokenTimes };
}

async function clear(sequence) {
  await sequence.clearHistory();
  if (sequence.nextTokenIndex !== 0) throw new Error(`clearHistory left ${sequence.nextTokenIndex} tokens in the sequence`);
}

async function measureParallel(llama, request) {
  const model = await llama.loadModel({
    modelPath: request.modelPath,
    gpuLayers: request.gpu === false ? 0 : request.gpuLayers,
    ignoreMemorySafetyChecks: true,
  });
  const most = Math.max(...request.counts);
  if (request.prompts.length < most) throw new RangeError(`${request.prompts.length} prompts for ${most} sequences`);
  const context = await model.createContext({
    // Per sequence, as ours: node-llama-cpp gives each sequence its own contextSize of cells.
    contextSize: request.window,
    sequences: most,
    batchSize: request.batchSize,
    threads: { ideal: request.threads, min: request.threads },
    ignoreMemorySafetyChecks: true,
    failedCreationRemedy: false,
    performanceTracking: false,
  });
  const sequences = Array.from({ length: most }, () => context.getSequence());
  // Excluded warm-up: every sequence at once, as the largest count will.
  await Promise.all(sequences.map((sequence, i) => generate(sequence, request.prompts[i], 2)));
  await Promise.all(sequences.map(clear));
  const tg = {};
  const generated = {};
  for (const n of request.counts) {
    const runs = await Promise.all(sequences.slice(0, n).map((sequence, i) => generate(sequence, request.prompts[i], request.genTokens)));
    const first = Math.min(...runs.map((r) => r.tokenTimes[0]));
    const last = Math.max(...runs.map((r) => r.tokenTimes[r.tokenTimes.length - 1]));
    const tokens = runs.reduce((sum, r) => sum + r.tokens.length, 0);
    tg[n] = last > first ? ((tokens - n) * 1000) / (last - first) : 0;
    generated[n] = runs.map((r) => r.tokens.length);
    await Promise.all(sequences.slice(0, n).map(clear));
  }
  const result = { tg, generated, contextSize: context.contextSize, batchSize: context.batchSize, threads: context.currentThreads };
  await context.dispose();
  await model.dispose();
  return result;
}

async function main() {
  const request = readRequest();
  const { module: nlc, version } = await importNodeLlamaCpp(request.installDir);

  const bindingStarted = performance.now();
  const llama = await nlc
    .getLlama({
      gpu: request.gpu,
      // 'never': use the installed prebuilt binary or fail; never build (which would clone llama.cpp
      // from GitHub) and never fall back to another GPU type. skipDownload says the same again.
      build: 'never',
      skipDownload: true,
      usePrebuiltBinaries: true,
      progressLogs: false,
      // The thread pool limit; the context asks for exactly `threads` below.
      maxThreads: request.threads,
      logLevel: 'warn',
      logger: (level, message) => process.stderr.write(`[node-llama-cpp ${level}] ${message.trimEnd()}\n`),
    })
    .catch((error) => {
      // Its NoBinaryFoundError's message is only its class name.
      throw new Error(
        `node-llama-cpp's getLlama({ gpu: ${JSON.stringify(request.gpu)}, build: 'never' }) found no usable prebuilt binary ` +
          `(${error?.message ?? error}); installed binary packages: ${installedBinaryPackages(request.installDir).join(', ') || 'none'}. ` +
          (request.gpu === 'cuda'
            ? 'Remedy: ensureNodeLlamaCpp({ cuda: true }), a CUDA driver, and the CUDA runtime libraries (libcudart, libcublas) on the library path'
            : 'Remedy: ensureNodeLlamaCpp() on a linux-x64 glibc host'),
        { cause: error },
      );
    });
  const bindingLoadMs = performance.now() - bindingStarted;
  // Llama.js falls back to whatever backend loads and reports it in llama.gpu: a CPU run must not
  // be recorded as a CUDA one.
  if (llama.gpu !== request.gpu) throw new Error(`asked node-llama-cpp for gpu ${request.gpu}, it loaded ${llama.gpu}`);
  if (request.mode === 'parallel' || Object.hasOwn(scenarioModes, request.mode)) {
    const result =
      request.mode === 'parallel'
        ? await measureParallel(llama, request)
        : await scenarioModes[request.mode](nlc, llama, request, { generate, clear });
    await llama.dispose();
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }

  const loadStarted = performance.now();
  const model = await llama.loadModel({
    modelPath: request.modelPath,
    gpuLayers: request.gpu === false ? 0 : request.gpuLayers,
    // Its own memory estimate would otherwise refuse or trim what we ask for; llama.cpp decides,
    // as in llama-bench. Flash attention and mmap stay at node-llama-cpp's defaults ('auto', which
    // are llama-bench's too).
    ignoreMemorySafetyChecks: true,
  });
  if (request.gpu === 'cuda' && typeof request.gpuLayers === 'number' && model.gpuLayers !== request.gpuLayers) {
    throw new Error(`asked node-llama-cpp for ${request.gpuLayers} GPU layers, it offloaded ${model.gpuLayers}`);
  }
  const context = await model.createContext({
    contextSize: request.contextSize,
    batchSize: request.batchSize,
    sequences: 1,
    threads: { ideal: request.threads, min: request.threads },
    ignoreMemorySafetyChecks: true,
    // No retry with a smaller context on failure: the requested size or an error.
    failedCreationRemedy: false,
    performanceTracking: false,
  });
  const loadMs = performance.now() - loadStarted;

  // No tokenPredictor: no draft/speculative decoding. Context shift cannot trigger, since the
  // parent checked that every measurement fits in contextSize.
  const sequence = context.getSequence();

  // The same warm-up as cuda-llama-child.mjs and llama-bench (one 512-token batch, then one generated token
  // decoded), so the first pp run does not pay for page faults in untouched compute buffers.
  await generate(sequence, request.longPrompt.slice(0, 512), 2);
  await clear(sequence);

  let ttftSum = 0;
  for (let i = 0; i < request.ttftSamples; i++) {
    const ttft = await generate(sequence, request.shortPrompt, 1);
    ttftSum += ttft.tokenTimes[0] - ttft.startedAt;
    await clear(sequence);
  }
  const ttftMs = ttftSum / request.ttftSamples;

  const pp = {};
  for (const size of request.promptSizes) {
    const samples = request.ppSamples[size];
    let sum = 0;
    for (let i = 0; i < samples; i++) {
      const ppStarted = performance.now();
      await sequence.evaluateWithoutGeneratingNewTokens(request.longPrompt.slice(0, size));
      const ppMs = performance.now() - ppStarted;
      if (sequence.nextTokenIndex !== size) throw new Error(`pp evaluated ${sequence.nextTokenIndex} tokens, expected ${size}`);
      sum += (size * 1000) / ppMs;
      await clear(sequence);
    }
    pp[size] = sum / samples;
  }

  const tg = await generate(sequence, request.shortPrompt, request.genTokens);
  const tgMs = tg.tokenTimes[tg.tokenTimes.length - 1] - tg.tokenTimes[0];
  const threads = context.currentThreads;
  if (threads !== request.threads) throw new Error(`node-llama-cpp decoded with ${threads} threads, asked for ${request.threads}`);

  const result = {
    bindingLoadMs,
    loadMs,
    ttftMs,
    ppTokensPerSecond: pp[request.longPrompt.length],
    pp,
    tgTokensPerSecond: tg.tokens.length > 1 && tgMs > 0 ? ((tg.tokens.length - 1) * 1000) / tgMs : 0,
    tgGeneratedTokens: tg.tokens.length,
    tgEogTokens: tg.tokens.filter((token) => model.isEogToken(token)).length,
    binary: {
      nodeLlamaCppVersion: version,
      buildType: llama.buildType,
      gpu: llama.gpu,
      supportsGpuOffloading: llama.supportsGpuOffloading,
      supportsMmap: llama.supportsMmap,
      cpuMathCores: llama.cpuMathCores,
      maxThreads: llama.maxThreads,
      llamaCppRelease: { ...llama.llamaCppRelease },
      systemInfo: llama.systemInfo,
      gpuDeviceNames: request.gpu === false ? [] : await llama.getGpuDeviceNames(),
      loadedLibraries: loadedLibraries(request.installDir),
    },
    gpuLayers: model.gpuLayers,
    useMmap: model.useMmap,
    flashAttention: context.flashAttention,
    contextSize: context.contextSize,
    threads,
    batchSize: context.batchSize,
  };

  await context.dispose();
  await model.dispose();
  await llama.dispose();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error) => {
  process.stderr.write(`node-llama-cpp benchmark child failed: ${error?.stack ?? error}\n`);
  process.exit(1);
});
