// npm run demo: the main job with no model from the user. Makes a small synthetic llama model
// (random weights, llama.cpp's real tokenizer), loads it under the default GPU policy ('auto'),
// streams a generation, and prints the layer report and the speeds.
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Llama } from '../lib/index.js';
import { ensureSyntheticModel, shapes, syntheticVocabFile, type SyntheticShapeName } from '../lib/gguf/synthetic-model.js';

const shapeName = (process.argv[2] ?? 'small') as SyntheticShapeName;
if (!(shapeName in shapes)) {
  console.error(`usage: npm run demo -- [${Object.keys(shapes).join('|')}]`);
  process.exit(2);
}
const cacheDir = fileURLToPath(new URL('../test/.models', import.meta.url));
const vocabOf = (shape: SyntheticShapeName) =>
  fileURLToPath(new URL(`../vendor/llama.cpp/models/${syntheticVocabFile(shape)}`, import.meta.url));
if ('pooling' in shapes[shapeName]) {
  console.error(`${shapeName} is an embedding model: the demo generates with a generative shape, and embeds with tinyBert at the end`);
  process.exit(2);
}
await mkdir(cacheDir, { recursive: true });

const build = Llama.build();
console.log(
  `binary: ${build.path} (${build.source}, ${build.metadata?.variant ?? 'unknown'} build, llama.cpp ${build.llamaCppCommit.slice(0, 12)})`,
);
console.log(
  `devices: ${Llama.devices()
    .map((d) => `${d.name} [${d.type}] ${(d.memoryFree / 2 ** 30).toFixed(1)}/${(d.memoryTotal / 2 ** 30).toFixed(1)} GiB free`)
    .join(', ')}`,
);

const t0 = performance.now();
const path = await ensureSyntheticModel({ cacheDir, shape: shapeName, vocabPath: vocabOf(shapeName) });
console.log(`model: ${path} (${(performance.now() - t0).toFixed(0)} ms to make or find)`);

const loadStart = performance.now();
// sequences: 4 lets generateBatch() below run four prompts at once; each gets its own 2048-token window.
await using model = await Llama.load(path, { contextSize: 2048, sequences: 4 });
const loadMs = performance.now() - loadStart;
// llama.cpp's description says '?B' for sizes it has no name for, as our synthetic ones: the count says it.
console.log(
  `loaded in ${loadMs.toFixed(0)} ms: ${model.info.description} (${(model.info.parameters / 1e6).toFixed(1)} M parameters), ${model.info.layerCount} layers, context ${model.contextInfo.contextSize}, ${model.contextInfo.threads} threads`,
);

process.stdout.write('\n--- generation (random weights: the text is noise, the machinery is real) ---\n');
const stream = model.stream('Once upon a time', { maxTokens: 64, temperature: 0 });
for await (const piece of stream) process.stdout.write(piece);
const result = await stream.result;
process.stdout.write('\n\n--- layer report ---\n');
console.log(String(await model.layerReport()));
const { timings } = result;
console.log('\n--- speeds ---');
console.log(
  `load ${loadMs.toFixed(0)} ms | prompt ${result.promptTokens} tokens at ${timings.promptTokensPerSecond.toFixed(1)} tok/s | ` +
    `time to first token ${timings.timeToFirstTokenMs.toFixed(1)} ms | generation ${result.tokens.length} tokens at ${timings.tokensPerSecond.toFixed(1)} tok/s (${result.stopReason})`,
);

const batch = await model.generateBatch(['Once upon a time', 'The river ran', 'In the morning', 'Chapter one'], {
  maxTokens: 64,
  temperature: 0,
});
console.log(
  `4 prompts at once (generateBatch): ${batch.timings.generatedTokens} tokens at ${batch.timings.tokensPerSecond.toFixed(1)} tok/s in total ` +
    `(${(batch.timings.tokensPerSecond / timings.tokensPerSecond).toFixed(2)}x one prompt's pace)`,
);

// Embeddings: a BERT-shaped embedding model (random weights, llama.cpp's BGE vocabulary).
process.stdout.write('\n--- embeddings (tinyBert: random weights, so the vectors mean nothing; the packing and speed are real) ---\n');
const bertPath = await ensureSyntheticModel({ cacheDir, shape: 'tinyBert', vocabPath: vocabOf('tinyBert') });
await using embedder = await Llama.load(bertPath);
const texts = Array.from({ length: 1000 }, (_, i) => `passage ${i} of a small local corpus`);
const embedStart = performance.now();
const embedded = await embedder.embed(texts);
const embedMs = performance.now() - embedStart;
console.log(
  `${texts.length} texts embedded in ${embedded.decodes} decodes, ${embedMs.toFixed(0)} ms (${((texts.length / embedMs) * 1000).toFixed(0)} texts/s), ` +
    `${embedded.dimensions} dimensions, pooling ${embedded.pooling}`,
);
