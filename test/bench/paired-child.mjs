/**
 * paired.ts's cuda-llama side: one fresh process per round, on the compiled package (dist/, what
 * `import 'cuda-llama'` loads) under plain node, as node-llama-cpp's child runs. Under tsx, the
 * loader's own thread and its garbage collections took about 80 ms of CPU per 256 generated
 * tokens on the 2-core VM (plain node: 3 ms), time the decode threads lost on a machine with no
 * spare core. paired.ts compiles dist/ from lib/ before the rounds.
 *
 *   node test/bench/paired-child.mjs <model.gguf> <pp|tg> <tokens> <samples> <threads> <contextSize> <shortPrompt>
 *
 * stdout: one JSON line, the samples (tok/s).
 */
import { Llama } from '../../dist/index.js';
import { sampleTokens } from '../../dist/tune.js';

const [modelPath, kind, tokens, samples, threads, contextSize, shortPrompt] = process.argv.slice(2);
const count = (name, value) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new TypeError(`${name} must be a positive integer, got ${value}`);
  return n;
};
if (kind !== 'pp' && kind !== 'tg') throw new TypeError(`kind must be pp or tg, got ${kind}`);
const n = count('tokens', tokens);
const short = count('shortPrompt', shortPrompt);

const model = await Llama.load(modelPath, { gpu: 'cpu', threads: count('threads', threads), contextSize: count('contextSize', contextSize) });
try {
  const text = sampleTokens(model, Math.max(n, short));
  // pp: the prompt decode alone (one token sampled to end it). tg: tokens after a short prompt, at the engine's pace.
  const once = async () => kind === 'pp'
    ? (await model.generate(text.slice(0, n), { maxTokens: 1, temperature: 0 })).timings.promptTokensPerSecond
    : (await model.generate(text.slice(0, short), { maxTokens: n, temperature: 0 })).timings.tokensPerSecond;
  await once(); // llama-bench's warm-up: the same test once, unmeasured
  const values = [];
  for (let i = 0; i < count('samples', samples); i++) values.push(await once());
  process.stdout.write(`${JSON.stringify(values)}\n`);
} finally {
  await model.dispose();
}
