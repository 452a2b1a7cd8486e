/**
 * paired.ts's cuda-llama side: one fresh process per round, on the compiled package (dist/, what
 * `import 'cuda-llama'` loads) under plain node, as node-llama-cpp's child runs. Under tsx, the
 * loader's own thread and its garbage collections took about 80 ms of CPU per 256 generated
 * tokens on the 2-core VM (plain node: 3 ms), time the decode threads lost on a machine with no
 * spare core. paired.ts compiles dist/ from lib/ before the rounds.
 *
 *   node test/bench/paired-child.mjs '<request JSON>'
 *     { modelPath, kind: 'pp' | 'tg' | 'startup' | 'prompts', tokens, samples, threads, contextSize, shortPrompt }
 *
 * stdout, one JSON line:
 * - pp, tg: the samples (tok/s). pp is the decode of the first `tokens` prompt tokens; tg is
 *   `tokens` tokens after a `shortPrompt`-token prompt, at the engine's pace. Each after an
 *   unmeasured run of the same test, as llama-bench warms up.
 * - startup: { loadMs, ttftMs }, defined as node-llama-cpp-child.mjs does: load = Llama.load with
 *   warmup: false (model and context); then the same excluded warm-up (a 512-token prompt, two
 *   tokens); ttft = the mean of `samples` first-token requests of `shortPrompt` tokens.
 * - prompts: { shortPrompt, longPrompt } token ids (the texts every side decodes, 512 long).
 */
import { performance } from 'node:perf_hooks';
import { Llama } from '../../dist/index.js';
import { sampleTokens } from '../../dist/tune.js';

const WARM_UP_TOKENS = 512;

const request = JSON.parse(process.argv[2] ?? '');
for (const key of ['tokens', 'samples', 'threads', 'contextSize', 'shortPrompt']) {
  if (!Number.isInteger(request[key]) || request[key] < 1) throw new TypeError(`request.${key} must be a positive integer, got ${request[key]}`);
}
const { modelPath, kind, tokens, samples, threads, contextSize, shortPrompt } = request;
if (!['pp', 'tg', 'startup', 'prompts'].includes(kind)) throw new TypeError(`request.kind must be pp, tg, startup or prompts, got ${kind}`);

const loadStarted = performance.now();
// startup times a load without llama.cpp's warm-up (node-llama-cpp's load has none); prompts needs none.
const model = await Llama.load(modelPath, { gpu: 'cpu', threads, contextSize, warmup: kind === 'pp' || kind === 'tg' });
const loadMs = performance.now() - loadStarted;
try {
  const text = sampleTokens(model, Math.max(tokens, shortPrompt, WARM_UP_TOKENS));
  const short = text.slice(0, shortPrompt);
  let result;
  if (kind === 'prompts') {
    result = { shortPrompt: short, longPrompt: text.slice(0, WARM_UP_TOKENS) };
  } else if (kind === 'startup') {
    await model.generate(text.slice(0, WARM_UP_TOKENS), { maxTokens: 2, temperature: 0 });
    let sum = 0;
    for (let i = 0; i < samples; i++) sum += (await model.generate(short, { maxTokens: 1, temperature: 0 })).timings.timeToFirstTokenMs;
    result = { loadMs, ttftMs: sum / samples };
  } else {
    const once = async () => kind === 'pp'
      ? (await model.generate(text.slice(0, tokens), { maxTokens: 1, temperature: 0 })).timings.promptTokensPerSecond
      : (await model.generate(short, { maxTokens: tokens, temperature: 0 })).timings.tokensPerSecond;
    await once();
    result = [];
    for (let i = 0; i < samples; i++) result.push(await once());
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  await model.dispose();
}
