/**
 * cuda-llama against llama.cpp's own llama-bench, on the same GGUF, the same libllama/libggml
 * (llama-bench is built from our build folder), the same thread count, in the same run.
 *
 *   npx tsx test/bench/compare.ts [--model tinyllama1b|small|tiny] [--quant Q4_0|Q8_0|F16]
 *                                 [--threads N] [--reps 3] [--json out.json] [--write-docs]
 *
 * stdout: the result as JSON. stderr: progress, then the markdown table.
 */
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Llama, type ContextInfo, type LlamaModel, type LoadOptions } from '../../lib/index.js';
import { ensureSyntheticModel, type SyntheticShapeName } from '../../lib/synthetic-model.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const modelsDir = join(repoRoot, 'test', '.models');
const vocabPath = join(repoRoot, 'vendor', 'llama.cpp', 'models', 'ggml-vocab-llama-spm.gguf');
const llamaBenchPath = join(repoRoot, 'build', 'Release', 'llama-bench');
const docsPath = join(repoRoot, 'docs', 'benchmarks.md');

const PROMPT_TOKENS = 512;
const GEN_TOKENS = 128;
const SHORT_PROMPT_TOKENS = 16;
const CONTEXT_SIZE = 2048;
const TARGET_RATIO = 0.97;

const shapeNames = ['tinyllama1b', 'small', 'tiny'] as const satisfies readonly SyntheticShapeName[];
const quantNames = ['Q4_0', 'Q8_0', 'F16'] as const;
type Quant = (typeof quantNames)[number];

function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

function fail(message: string): never {
  log(message);
  process.exit(1);
}

function parseCli() {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'tinyllama1b' },
      quant: { type: 'string', default: 'Q4_0' },
      threads: { type: 'string' },
      reps: { type: 'string', default: '3' },
      json: { type: 'string' },
      'write-docs': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stderr.write('usage: npx tsx test/bench/compare.ts [--model tinyllama1b|small|tiny] [--quant Q4_0|Q8_0|F16] [--threads N] [--reps 3] [--json out.json] [--write-docs]\n');
    process.exit(0);
  }
  const model = values.model as SyntheticShapeName;
  if (!(shapeNames as readonly string[]).includes(model)) fail(`--model must be one of ${shapeNames.join(', ')}`);
  const quant = values.quant as Quant;
  if (!(quantNames as readonly string[]).includes(quant)) fail(`--quant must be one of ${quantNames.join(', ')}`);
  const threads = values.threads === undefined ? availableParallelism() : Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1) fail('--threads must be a positive integer');
  const reps = Number(values.reps);
  if (!Number.isInteger(reps) || reps < 1) fail('--reps must be a positive integer');
  return { model, quant, threads, reps, json: values.json, writeDocs: values['write-docs'] };
}

interface Stats {
  median: number;
  min: number;
  max: number;
  samples: number[];
}

function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, samples };
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

function buildLlamaBench(): void {
  // The child's stdout goes to our stderr: our stdout is reserved for the JSON result.
  const result = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'build-tools.mjs'), 'llama-bench'], {
    cwd: repoRoot,
    stdio: ['ignore', 2, 2],
  });
  if (result.status !== 0) fail('could not build llama-bench (see above)');
}

async function prepareModel(shape: SyntheticShapeName, quant: Quant, threads: number): Promise<string> {
  log(`synthetic ${shape} F16 model (generated once, cached in ${relative(repoRoot, modelsDir)})`);
  const f16 = await ensureSyntheticModel({ cacheDir: modelsDir, shape, vocabPath, seed: 1 });
  if (quant === 'F16') return f16;
  const quantized = f16.replace(/-f16\.gguf$/, `-${quant.toLowerCase()}.gguf`);
  if (await fileExists(quantized)) return quantized;
  log(`quantizing to ${quant}: ${relative(repoRoot, quantized)}`);
  const started = performance.now();
  // Written under a temporary name: a run killed mid-quantization must not leave a truncated
  // file that the next run would take for the cached model.
  const partial = `${quantized}.${process.pid}.partial`;
  try {
    await Llama.quantize(f16, partial, quant, { threads });
    await rename(partial, quantized);
  } catch (error) {
    await unlink(partial).catch(() => {});
    throw error;
  }
  log(`quantized in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return quantized;
}

/** Deterministic English-like text, long enough to tokenize to well over 512 tokens. */
function longText(paragraphs: number): string {
  const parts: string[] = [];
  for (let i = 0; i < paragraphs; i++) {
    parts.push(`Chapter ${i + 1}. The river ran past the old mill, where the miller counted sacks of grain ` +
      `by lamplight and wrote each number in a ledger bound with cracked leather. Travellers who stopped ` +
      `for water heard him recite the totals aloud, season after season, as if the figures were a prayer.`);
  }
  return parts.join('\n\n');
}

interface LlamaBenchEntry {
  n_prompt: number;
  n_gen: number;
  n_threads: number;
  n_batch: number;
  n_ubatch: number;
  avg_ts: number;
  stddev_ts: number;
  samples_ts: number[];
  [key: string]: unknown;
}

interface LlamaBenchRun {
  pp: LlamaBenchEntry;
  tg: LlamaBenchEntry;
}

function llamaBenchArgs(model: string, threads: number, reps: number): string[] {
  // -ngl 0 -dev none: the same placement as gpu: 'cpu' (no device list at all), so a CUDA
  // build cannot offload large prompt batches to a GPU behind the CPU-only label. Batch, ubatch,
  // flash attention and KV type stay at llama-bench's defaults, which are llama.cpp's, as ours are.
  return ['-m', model, '-p', String(PROMPT_TOKENS), '-n', String(GEN_TOKENS), '-t', String(threads),
    '-r', String(reps), '-ngl', '0', '-dev', 'none', '-o', 'json'];
}

function runLlamaBench(model: string, threads: number): Promise<LlamaBenchRun> {
  const args = llamaBenchArgs(model, threads, 1);
  return new Promise((resolve, reject) => {
    const child = spawn(llamaBenchPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`llama-bench ${args.join(' ')} exited with ${code ?? signal}:\n${err.trim()}`));
        return;
      }
      try {
        const entries = JSON.parse(out) as LlamaBenchEntry[];
        const pp = entries.find((e) => e.n_prompt === PROMPT_TOKENS && e.n_gen === 0);
        const tg = entries.find((e) => e.n_prompt === 0 && e.n_gen === GEN_TOKENS);
        if (!pp || !tg) throw new Error(`no pp${PROMPT_TOKENS}/tg${GEN_TOKENS} rows in: ${out}`);
        resolve({ pp, tg });
      } catch (error) {
        reject(error);
      }
    });
  });
}

interface OursRun {
  loadMs: number;
  ttftMs: number;
  ppTokensPerSecond: number;
  tgTokensPerSecond: number;
  tgGeneratedTokens: number;
  tgStopReason: string;
  contextInfo: ContextInfo;
}

async function runOurs(path: string, loadOptions: LoadOptions, shortPrompt: number[], longPrompt: number[]): Promise<OursRun> {
  const started = performance.now();
  const model: LlamaModel = await Llama.load(path, loadOptions);
  const loadMs = performance.now() - started;
  try {
    // The same warm-up as llama-bench's (a full prompt batch, then one token): a short one would
    // leave most of the 512-token compute buffer untouched, and the first pp512 would pay its
    // page faults.
    await model.generate(longPrompt, { maxTokens: 2, temperature: 0 });
    const ttft = await model.generate(shortPrompt, { maxTokens: 1, temperature: 0 });
    const pp = await model.generate(longPrompt, { maxTokens: 1, temperature: 0 });
    if (pp.promptTokens !== PROMPT_TOKENS) throw new Error(`expected ${PROMPT_TOKENS} prompt tokens, got ${pp.promptTokens}`);
    const tg = await model.generate(shortPrompt, { maxTokens: GEN_TOKENS, temperature: 0, seed: 1 });
    return {
      loadMs,
      ttftMs: ttft.timings.timeToFirstTokenMs,
      ppTokensPerSecond: pp.timings.promptTokensPerSecond,
      tgTokensPerSecond: tg.timings.tokensPerSecond,
      tgGeneratedTokens: tg.tokens.length,
      tgStopReason: tg.stopReason,
      contextInfo: model.contextInfo,
    };
  } finally {
    await model.dispose();
  }
}

interface CpuSnapshot {
  busy: number;
  steal: number;
  all: number;
  ours: number;
}

/**
 * System-wide CPU time (/proc/stat) and this process's own plus its waited-for children's
 * (/proc/self/stat: utime, stime, cutime, cstime; llama-bench is such a child). The difference
 * over a measurement is what everything else on the machine used, which the load average (a
 * decaying average that still shows our own previous work) cannot tell apart.
 */
async function cpuSnapshot(): Promise<CpuSnapshot | undefined> {
  try {
    const [system, self] = await Promise.all([readFile('/proc/stat', 'utf8'), readFile('/proc/self/stat', 'utf8')]);
    const f = system.split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
    const s = self.slice(self.lastIndexOf(')') + 2).split(' ').map(Number);
    return { busy: user + nice + sys + irq + softirq, steal, all: user + nice + sys + idle + iowait + irq + softirq + steal, ours: s[11]! + s[12]! + s[13]! + s[14]! };
  } catch {
    return undefined;
  }
}

interface Interference {
  /** Share of the machine's CPU time used by other processes during the measurement (0..1). */
  otherProcesses: number;
  /** Share taken by the hypervisor from this VM (steal time). */
  steal: number;
}

function interference(before: CpuSnapshot | undefined, after: CpuSnapshot | undefined): Interference | null {
  if (!before || !after || after.all <= before.all) return null;
  const all = after.all - before.all;
  const other = Math.max(0, after.busy - before.busy - (after.ours - before.ours));
  return { otherProcesses: other / all, steal: (after.steal - before.steal) / all };
}

async function measured<T>(run: () => Promise<T>): Promise<T & { interference: Interference | null }> {
  const before = await cpuSnapshot();
  const value = await run();
  return { ...value, interference: interference(before, await cpuSnapshot()) };
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

async function machineInfo() {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpuModel;
  } catch {
    // not Linux: os.cpus() is the best we have
  }
  return {
    cpu: cpuModel,
    logicalCpus: cpus().length,
    availableParallelism: availableParallelism(),
    ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
  };
}

function fmt(value: number, digits: number): string {
  return value.toFixed(digits);
}

function pct(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

function othersNote(i: Interference | null): string {
  return i ? `; other processes ${pct(i.otherProcesses)}, steal ${pct(i.steal)}` : '';
}

function cell(s: Stats, digits: number): string {
  return s.samples.length === 1 ? fmt(s.median, digits) : `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

function ratioCell(ratio: number): string {
  return `${ratio.toFixed(3)} ${ratio >= TARGET_RATIO ? 'ok' : `**below ${TARGET_RATIO}**`}`;
}

async function main(): Promise<void> {
  const cli = parseCli();
  const command = `npx tsx test/bench/compare.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`;
  const loadAtStart = loadavg();

  buildLlamaBench();
  const modelPath = await prepareModel(cli.model, cli.quant, cli.threads);
  const loadOptions: LoadOptions = { gpu: 'cpu', threads: cli.threads, contextSize: CONTEXT_SIZE };

  // Excluded from the results: brings the file into the page cache for both programs.
  log(`warm-up load of ${relative(repoRoot, modelPath)}`);
  const warm = await Llama.load(modelPath, loadOptions);
  const info = warm.info;
  let paragraphs = 4;
  let longIds = warm.tokenize(longText(paragraphs));
  while (longIds.length < PROMPT_TOKENS) longIds = warm.tokenize(longText((paragraphs *= 2)));
  await warm.dispose();
  const longPrompt = longIds.slice(0, PROMPT_TOKENS);
  const shortPrompt = longIds.slice(0, SHORT_PROMPT_TOKENS);

  type Measured<T> = T & { interference: Interference | null };
  const ours: Measured<OursRun>[] = [];
  const bench: Measured<LlamaBenchRun>[] = [];
  const runsStart = await cpuSnapshot();
  for (let r = 0; r < cli.reps; r++) {
    // Alternating which one goes first cancels a steady drift (thermal, a neighbour's job
    // winding down) instead of always charging it to the same side.
    const order = r % 2 === 0 ? (['llama-bench', 'ours'] as const) : (['ours', 'llama-bench'] as const);
    for (const which of order) {
      if (which === 'llama-bench') {
        const run = await measured(() => runLlamaBench(modelPath, cli.threads));
        bench.push(run);
        log(`rep ${r + 1}/${cli.reps} llama-bench: pp${PROMPT_TOKENS} ${fmt(run.pp.avg_ts, 2)} tok/s, tg${GEN_TOKENS} ${fmt(run.tg.avg_ts, 2)} tok/s${othersNote(run.interference)}`);
      } else {
        const run = await measured(() => runOurs(modelPath, loadOptions, shortPrompt, longPrompt));
        ours.push(run);
        log(`rep ${r + 1}/${cli.reps} cuda-llama:  pp${PROMPT_TOKENS} ${fmt(run.ppTokensPerSecond, 2)} tok/s, tg${GEN_TOKENS} ${fmt(run.tgTokensPerSecond, 2)} tok/s ` +
          `(${run.tgGeneratedTokens} tokens, ${run.tgStopReason}), TTFT ${fmt(run.ttftMs, 1)} ms, load ${fmt(run.loadMs, 0)} ms${othersNote(run.interference)}`);
      }
    }
  }
  const loadAtEnd = loadavg();
  const overall = interference(runsStart, await cpuSnapshot());

  const loadMs = stats(ours.map((o) => o.loadMs));
  const ttftMs = stats(ours.map((o) => o.ttftMs));
  const oursPp = stats(ours.map((o) => o.ppTokensPerSecond));
  const oursTg = stats(ours.map((o) => o.tgTokensPerSecond));
  const benchPp = stats(bench.map((b) => b.pp.avg_ts));
  const benchTg = stats(bench.map((b) => b.tg.avg_ts));
  const ppRatio = oursPp.median / benchPp.median;
  const tgRatio = oursTg.median / benchTg.median;
  const tgCounts = [...new Set(ours.map((o) => o.tgGeneratedTokens))];
  const contextInfo = ours[0]!.contextInfo;
  const first = bench[0]!;

  const notes: string[] = [
    `TTFT is reported for cuda-llama only: llama-bench has no time-to-first-token measurement (its short-prompt rows time a batch decode without sampling or delivery), so it is not a TTFT reference.`,
    `cuda-llama tg${GEN_TOKENS} is (generated − 1) tokens over the time from the first to the last token as the context thread produced them (the engine's pace; time to first token is on the JavaScript clock), after a ${SHORT_PROMPT_TOKENS}-token prompt; llama-bench tg${GEN_TOKENS} is ${GEN_TOKENS} single-token decodes from an empty cache, with no sampling.`,
    `Each repetition runs llama-bench -r 1 and cuda-llama once, alternating which goes first; both do an excluded warm-up after loading the model.`,
  ];
  if (tgCounts.some((n) => n < GEN_TOKENS)) {
    notes.push(`cuda-llama generation stopped early (end of generation) at ${tgCounts.join('/')} tokens; tokens/s is over the tokens actually generated.`);
  }
  if (overall) {
    const worst = Math.max(...[...ours, ...bench].map((run) => run.interference?.otherProcesses ?? 0));
    const busy = overall.otherProcesses > 0.02 || worst > 0.05 || overall.steal > 0.02;
    notes.push(`Other processes used ${pct(overall.otherProcesses)} of the machine's CPU time during the measured repetitions ` +
      `(worst single run ${pct(worst)}), hypervisor steal ${pct(overall.steal)}${busy ? ': the machine was not quiet, expect noise' : ''}.`);
  }
  const spread = (s: Stats) => (s.max - s.min) / s.median;
  if (Math.max(spread(oursPp), spread(oursTg), spread(benchPp), spread(benchTg)) > 0.1) {
    notes.push('Some rows vary by more than 10% between repetitions: compare medians, and rerun with more --reps before reading a small ratio difference as real.');
  }
  if (!contextInfo.threadpool) notes.push('cuda-llama ran without an attached ggml threadpool (contextInfo.threadpool is false).');

  const dirty = git(['status', '--porcelain', '--', 'lib', 'native', 'CMakeLists.txt', 'vendor/llama.cpp.pin.json']) !== '';
  const pin = JSON.parse(await readFile(join(repoRoot, 'vendor', 'llama.cpp.pin.json'), 'utf8')) as { commit: string; tag: string };
  const build = Llama.build();

  const result = {
    date: new Date().toISOString(),
    command,
    machine: { ...(await machineInfo()), loadAverageStart: loadAtStart, loadAverageEnd: loadAtEnd, interference: overall },
    git: { commit: git(['rev-parse', '--short', 'HEAD']), uncommittedChangesInLibOrNative: dirty },
    llamaCpp: { commit: pin.commit, tag: pin.tag, llamaBenchBuildCommit: first.pp.build_commit ?? null },
    node: process.version,
    build: { metadata: build.metadata, systemInfo: build.systemInfo },
    model: {
      shape: cli.model,
      quantization: cli.quant,
      path: relative(repoRoot, modelPath),
      fileSizeBytes: (await stat(modelPath)).size,
      parameters: info.parameters,
      description: info.description,
    },
    settings: {
      threads: cli.threads,
      reps: cli.reps,
      promptTokens: PROMPT_TOKENS,
      generatedTokens: GEN_TOKENS,
      shortPromptTokens: SHORT_PROMPT_TOKENS,
      contextSize: CONTEXT_SIZE,
    },
    cudaLlama: {
      contextInfo,
      loadMs,
      timeToFirstTokenMs: ttftMs,
      pp512TokensPerSecond: oursPp,
      tg128TokensPerSecond: oursTg,
      tg128GeneratedTokens: ours.map((o) => o.tgGeneratedTokens),
      tg128StopReasons: ours.map((o) => o.tgStopReason),
      interference: ours.map((o) => o.interference),
    },
    llamaBench: {
      command: `build/Release/llama-bench ${llamaBenchArgs(relative(repoRoot, modelPath), cli.threads, 1).join(' ')}`,
      nBatch: first.pp.n_batch,
      nUbatch: first.pp.n_ubatch,
      nThreads: first.pp.n_threads,
      flashAttn: first.pp.flash_attn ?? null,
      typeK: first.pp.type_k ?? null,
      pp512TokensPerSecond: benchPp,
      tg128TokensPerSecond: benchTg,
      interference: bench.map((b) => b.interference),
    },
    ratios: { pp512: ppRatio, tg128: tgRatio, target: TARGET_RATIO },
    notes,
  };

  const table = [
    `| metric | cuda-llama median (min–max) | llama-bench median (min–max) | ratio (target ≥ ${TARGET_RATIO}) |`,
    '|---|---|---|---|',
    `| load time (ms) | ${cell(loadMs, 0)} | — | — |`,
    `| time to first token, ${SHORT_PROMPT_TOKENS}-token prompt, ${CONTEXT_SIZE} context (ms) | ${cell(ttftMs, 1)} | — (no TTFT reference) | — |`,
    `| prompt processing pp${PROMPT_TOKENS} (tok/s) | ${cell(oursPp, 2)} | ${cell(benchPp, 2)} | ${ratioCell(ppRatio)} |`,
    `| generation tg${GEN_TOKENS} (tok/s) | ${cell(oursTg, 2)}${tgCounts.some((n) => n < GEN_TOKENS) ? ` (${tgCounts.join('/')} tokens)` : ''} | ${cell(benchTg, 2)} | ${ratioCell(tgRatio)} |`,
  ].join('\n');
  const summary = `${cli.model} ${cli.quant} (${relative(repoRoot, modelPath)}), CPU, ${cli.threads} threads, ${cli.reps} repetitions; ` +
    `cuda-llama n_batch ${contextInfo.batchSize} / n_ubatch ${contextInfo.ubatchSize} / threads ${contextInfo.threads}+${contextInfo.threadsBatch} / threadpool ${contextInfo.threadpool}; ` +
    `llama-bench n_batch ${first.pp.n_batch} / n_ubatch ${first.pp.n_ubatch} / threads ${first.pp.n_threads}`;

  const json = JSON.stringify(result, null, 2);
  process.stdout.write(`${json}\n`);
  process.stderr.write(`\n${summary}\n\n${table}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
  if (cli.json) {
    await writeFile(cli.json, `${json}\n`);
    log(`wrote ${cli.json}`);
  }
  if (cli.writeDocs) {
    const machine = result.machine;
    const doc = [
      '# Benchmarks: cuda-llama vs llama-bench (CPU)',
      '',
      'Generated by `test/bench/compare.ts --write-docs`; rerun it to refresh this page. Both sides run',
      'the same GGUF file through the same libllama/libggml build (llama-bench is built from this',
      "repository's build folder), with the same thread count, interleaved in one run.",
      '',
      `- Date (UTC): ${result.date.replace('T', ' ').replace(/\.\d+Z$/, '')}`,
      `- Machine: ${machine.cpu}, ${machine.logicalCpus} logical CPUs (${machine.availableParallelism} available), ${machine.ramGiB} GiB RAM`,
      `- cuda-llama commit: ${result.git.commit}${dirty ? ' (with uncommitted changes in lib/ or native/)' : ''}`,
      `- llama.cpp commit: ${pin.commit} (${pin.tag}, from vendor/llama.cpp.pin.json)`,
      `- CPU backend: ${build.metadata?.cpuFeatures ?? 'unknown features'}; ${build.systemInfo.trim().replace(/\s*\|$/, '')}`,
      `- Node: ${process.version}`,
      `- Model: synthetic ${cli.model} shape (random weights, ${(info.parameters / 1e9).toFixed(2)} B parameters), ${cli.quant}, ${(result.model.fileSizeBytes / 2 ** 20).toFixed(0)} MiB`,
      `- Command: \`${command}\``,
      `- llama-bench, once per repetition: \`${result.llamaBench.command}\``,
      '',
      summary,
      '',
      table,
      '',
      ...notes.map((n) => `- ${n}`),
      '',
      '## Raw result',
      '',
      '```json',
      json,
      '```',
      '',
    ].join('\n');
    await writeFile(docsPath, doc);
    log(`wrote ${relative(repoRoot, docsPath)}`);
  }
}

if (!existsSync(vocabPath)) fail(`${relative(repoRoot, vocabPath)} is missing: run \`npm install\` (it materializes vendor/llama.cpp)`);
await main();
