/**
 * cuda-llama's side of the scenario benchmarks (chat-turns.ts, arrivals.ts): request kinds that
 * cuda-llama-child.mjs runs in its fresh process, on the compiled package, like its own kinds.
 *
 *   chatTexts { turns, turnTokens }   -> { system, turns, turnTokens }: the user messages both sides
 *             send, each the detokenized text of `turnTokens` tokens of the sample text, and how many
 *             tokens each is by itself (no BOS)
 *   chat      { system, turns, genTokens, reuse, warmUp } -> ChatRun (chat-turns.ts): one conversation,
 *             turn after turn, through model.createSession() + session.chat() (reuse: true) or a
 *             fresh model.chat() of the whole conversation with cachePrompt: false (reuse: false)
 *   arrivals  { prompts, schedule, genTokens, warmUpTokens } -> { traces, contextInfo }: each prompt
 *             made as a model.generate() call at its scheduled time (ms after the start), every
 *             text piece timed as onText delivers it; loadOptions carry the window and sequences
 */
import { performance } from 'node:perf_hooks';
import { Llama } from '../../dist/index.js';
import { sampleTokens } from '../../dist/tools/tune.js';

const SYSTEM_PROMPT = 'You are a helpful assistant. Answer the question about the story in a few sentences.';

async function chatTexts(r) {
  const model = await Llama.load(r.modelPath, { ...r.loadOptions, warmup: false });
  try {
    const ids = sampleTokens(model, 1 + r.turns * r.turnTokens);
    const turns = [];
    for (let k = 0; k < r.turns; k++) turns.push(model.detokenize(ids.slice(1 + k * r.turnTokens, 1 + (k + 1) * r.turnTokens)).trim());
    return { system: SYSTEM_PROMPT, turns, turnTokens: turns.map((text) => model.tokenize(text, { addSpecial: false }).length) };
  } finally {
    await model.dispose();
  }
}

async function chat(r) {
  const started = performance.now();
  const model = await Llama.load(r.modelPath, { ...r.loadOptions, warmup: true });
  const loadMs = performance.now() - started;
  const session = r.reuse ? model.createSession() : undefined;
  try {
    // The same excluded warm-up as node-llama-cpp's side: a prompt batch and a token.
    await model.generate(r.warmUp, { maxTokens: 2, temperature: 0, cachePrompt: false });
    const messages = [{ role: 'system', content: r.system }];
    const turns = [];
    for (const text of r.turns) {
      messages.push({ role: 'user', content: text });
      const options = { maxTokens: r.genTokens, temperature: 0, ...(r.reuse ? {} : { cachePrompt: false }) };
      let firstTextMs;
      const callStarted = performance.now();
      const result = await (session ?? model).chat(messages, {
        ...options,
        onText: () => {
          firstTextMs ??= performance.now() - callStarted;
        },
      });
      turns.push({
        // From the call (template rendering and tokenization included) to the first text reaching the
        // callback: what node-llama-cpp's side measures from prompt() to its first onToken.
        ttftMs: firstTextMs ?? NaN,
        engineTtftMs: result.timings.timeToFirstTokenMs,
        totalMs: performance.now() - callStarted,
        promptTokens: result.promptTokens,
        cachedTokens: result.cachedTokens,
        generated: result.tokens.length,
        stopReason: result.stopReason,
      });
      messages.push({ role: 'assistant', content: result.text });
    }
    return { loadMs, turns, contextInfo: model.contextInfo };
  } finally {
    await session?.dispose();
    await model.dispose();
  }
}

async function arrivals(r) {
  const model = await Llama.load(r.modelPath, { ...r.loadOptions, warmup: true });
  try {
    // Excluded: every sequence at once with a short prompt, so the measured steps do not pay for
    // first use of the batch shapes. Its tokens are not reused: the requests set cachePrompt: false.
    await model.generateBatch(
      r.prompts.map((p) => p.slice(0, r.warmUpTokens)),
      { maxTokens: 2, temperature: 0, cachePrompt: false },
    );
    // The engine's own counters over the measured requests: how a step divides between
    // llama_decode and the host work around it (sampling, detokenizing, handing tokens on).
    const before = model.engineStats();
    const t0 = performance.now() + 20;
    const runs = r.prompts.map(
      (prompt, i) =>
        new Promise((resolve, reject) => {
          setTimeout(
            () => {
              const deliveredMs = [];
              const startedMs = performance.now() - t0;
              model
                .generate(prompt, {
                  maxTokens: r.genTokens,
                  temperature: 0,
                  cachePrompt: false,
                  onText: () => deliveredMs.push(performance.now() - t0),
                })
                .then(
                  (result) =>
                    resolve({
                      scheduledMs: r.schedule[i],
                      startedMs,
                      deliveredMs,
                      tokens: result.tokens.length,
                      stopReason: result.stopReason,
                    }),
                  reject,
                );
            },
            Math.max(0, t0 + r.schedule[i] - performance.now()),
          );
        }),
    );
    const traces = await Promise.all(runs);
    const after = model.engineStats();
    const engine = { steps: after.steps - before.steps, decodeMs: after.decodeMs - before.decodeMs, hostMs: after.hostMs - before.hostMs };
    return { traces, engine, contextInfo: model.contextInfo };
  } finally {
    await model.dispose();
  }
}

export const scenarioKinds = { chatTexts, chat, arrivals };

export const scenarioRequired = {
  chatTexts: ['turns', 'turnTokens'],
  chat: ['system', 'turns', 'genTokens', 'reuse', 'warmUp'],
  arrivals: ['prompts', 'schedule', 'genTokens', 'warmUpTokens'],
};
