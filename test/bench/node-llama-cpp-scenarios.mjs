/**
 * node-llama-cpp's side of the scenario benchmarks (chat-turns.ts, arrivals.ts), run by
 * node-llama-cpp-child.mjs in its own process after getLlama(), through node-llama-cpp's own API:
 *
 *   mode 'chat'     { system, turns, genTokens, contextSize, warmUp } -> the conversation through
 *                   LlamaChatSession.prompt() with its ChatMLChatWrapper (the format llama.cpp's
 *                   chatml template renders, which the synthetic model declares), one context sequence
 *   mode 'arrivals' { prompts, schedule, genTokens, window, warmUpTokens } -> one context with a
 *                   sequence per prompt (getSequence()), each prompt evaluated on its own sequence at
 *                   its scheduled time (sequence.evaluate, greedy), every token timed as it arrives
 *
 *   mode 'embed'    { texts, samples, contextSize } -> its LlamaEmbeddingContext (model.createEmbeddingContext),
 *                   getEmbeddingFor(text) for each text in turn (its API embeds one text per call),
 *                   `samples` times after an unmeasured call on the first 8 texts (embeddings.ts)
 *
 * `helpers` are the child's own: generate(sequence, prompt, count) and clear(sequence).
 */
import { performance } from 'node:perf_hooks';

export const scenarioKeys = {
  chat: ['installDir', 'modelPath', 'threads', 'contextSize', 'batchSize', 'system', 'turns', 'genTokens', 'warmUp', 'gpuLayers'],
  arrivals: ['installDir', 'modelPath', 'threads', 'window', 'batchSize', 'prompts', 'schedule', 'genTokens', 'warmUpTokens', 'gpuLayers'],
  embed: ['installDir', 'modelPath', 'threads', 'contextSize', 'batchSize', 'texts', 'samples', 'gpuLayers'],
};

async function load(llama, request, contextOptions) {
  const model = await llama.loadModel({
    modelPath: request.modelPath,
    gpuLayers: request.gpu === false ? 0 : request.gpuLayers,
    ignoreMemorySafetyChecks: true,
  });
  const context = await model.createContext({
    ...contextOptions,
    batchSize: request.batchSize,
    threads: { ideal: request.threads, min: request.threads },
    ignoreMemorySafetyChecks: true,
    failedCreationRemedy: false,
    performanceTracking: false,
  });
  return { model, context };
}

async function chat(nlc, llama, request, { generate, clear }) {
  const started = performance.now();
  const { model, context } = await load(llama, request, { contextSize: request.contextSize, sequences: 1 });
  const loadMs = performance.now() - started;
  const sequence = context.getSequence();
  await generate(sequence, request.warmUp, 2);
  await clear(sequence);
  const session = new nlc.LlamaChatSession({
    contextSequence: sequence,
    chatWrapper: new nlc.ChatMLChatWrapper(),
    systemPrompt: request.system,
  });
  const turns = [];
  for (const text of request.turns) {
    const inputBefore = sequence.tokenMeter.usedInputTokens;
    let ttftMs;
    let generated = 0;
    const callStarted = performance.now();
    await session.prompt(text, {
      maxTokens: request.genTokens,
      temperature: 0,
      onToken: (tokens) => {
        ttftMs ??= performance.now() - callStarted;
        generated += tokens.length;
      },
    });
    turns.push({
      ttftMs: ttftMs ?? NaN,
      totalMs: performance.now() - callStarted,
      // What this turn evaluated (prompt and the reply's tokens but the last), and what the sequence now holds.
      evaluatedTokens: sequence.tokenMeter.usedInputTokens - inputBefore,
      contextTokens: sequence.nextTokenIndex,
      generated,
    });
  }
  const result = { loadMs, turns, contextSize: context.contextSize, batchSize: context.batchSize, threads: context.currentThreads };
  session.dispose();
  await context.dispose();
  await model.dispose();
  return result;
}

async function arrivals(_nlc, llama, request, { generate, clear }) {
  const n = request.prompts.length;
  // Per sequence, as ours: node-llama-cpp gives each sequence its own contextSize of cells.
  const { model, context } = await load(llama, request, { contextSize: request.window, sequences: n });
  const sequences = Array.from({ length: n }, () => context.getSequence());
  await Promise.all(sequences.map((sequence, i) => generate(sequence, request.prompts[i].slice(0, request.warmUpTokens), 2)));
  await Promise.all(sequences.map(clear));
  const t0 = performance.now() + 20;
  const traces = await Promise.all(
    sequences.map(
      (sequence, i) =>
        new Promise((resolve, reject) => {
          setTimeout(
            () => {
              const startedMs = performance.now() - t0;
              generate(sequence, request.prompts[i], request.genTokens).then(
                (run) =>
                  resolve({
                    scheduledMs: request.schedule[i],
                    startedMs,
                    deliveredMs: run.tokenTimes.map((ms) => ms - t0),
                    tokens: run.tokens.length,
                    eogTokens: run.tokens.filter((token) => model.isEogToken(token)).length,
                  }),
                reject,
              );
            },
            Math.max(0, t0 + request.schedule[i] - performance.now()),
          );
        }),
    ),
  );
  const result = { traces, contextSize: context.contextSize, batchSize: context.batchSize, threads: context.currentThreads };
  await context.dispose();
  await model.dispose();
  return result;
}

async function embed(_nlc, llama, request) {
  const started = performance.now();
  const model = await llama.loadModel({
    modelPath: request.modelPath,
    gpuLayers: request.gpu === false ? 0 : request.gpuLayers,
    ignoreMemorySafetyChecks: true,
  });
  const context = await model.createEmbeddingContext({
    contextSize: request.contextSize,
    batchSize: request.batchSize,
    threads: request.threads,
    ignoreMemorySafetyChecks: true,
  });
  const loadMs = performance.now() - started;
  try {
    for (const text of request.texts.slice(0, 8)) await context.getEmbeddingFor(text);
    const ms = [];
    for (let i = 0; i < request.samples; i++) {
      const t0 = performance.now();
      for (const text of request.texts) await context.getEmbeddingFor(text);
      ms.push(performance.now() - t0);
    }
    return { loadMs, ms };
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

export const scenarioModes = { chat, arrivals, embed };
