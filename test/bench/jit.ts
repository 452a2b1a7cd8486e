/**
 * What a GPU that runs the CUDA module from PTX pays on the first load (issue 32): the driver
 * compiles the PTX of every kernel it loads before first use, then keeps it in its JIT cache. No
 * GPU we are lent needs PTX from the release package (an H100 has its SASS), so the driver is told
 * to ignore the SASS (CUDA_FORCE_PTX_JIT=1): this needs a module that carries PTX for the GPU (the
 * runbook builds sm_90 as "90": SASS and PTX).
 *
 *   npx tsx test/bench/jit.ts [--model tinyllama1b|small|tiny|file.gguf] [--tokens 16] [--rounds 2] [--out DIR] [--rehearse]
 *
 * --rehearse runs the same three processes on the CPU (where the CUDA variables change nothing), to
 * check the script before a GPU session spends its minutes on it.
 *
 * Three modes, each a fresh process (cuda-llama-child.mjs, kind firstUse) on full offload: SASS as
 * usual; PTX with an empty JIT cache (CUDA_CACHE_PATH a new folder: the first load of a GPU that
 * needs PTX); PTX again with that cache (every later load). Each gives the load (no warm-up), the
 * first generation (where the kernels are loaded, and compiled from PTX) and the same generation
 * again; the rounds repeat all three. Where the module has no PTX for the GPU, it says so and
 * exits 0: nothing to measure.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Llama } from '../../lib/index.js';
import { readCudaModuleCode } from '../../lib/gpu/fatbin.js';
import { fail, git, log, positiveInteger } from './common.js';
import { requireCuda } from './gpu.js';
import { compileDist, runCudaLlamaChild } from './ours.js';
import { resolveModel } from './scenarios.js';
import { stats } from './stats.js';

const usage = 'npx tsx test/bench/jit.ts [--model tinyllama1b|small|tiny|file.gguf] [--tokens 16] [--rounds 2] [--out DIR] [--rehearse]';
const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    tokens: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '2' },
    out: { type: 'string' },
    rehearse: { type: 'boolean', default: false },
  },
});
const tokens = positiveInteger('--tokens', values.tokens, usage);
const rounds = positiveInteger('--rounds', values.rounds, usage);
const { path: modelPath } = resolveModel(values.model);

interface FirstUse {
  loadMs: number;
  firstMs: number;
  againMs: number;
  text: string;
}

const rehearse = values.rehearse === true;
const build = rehearse ? Llama.build() : await requireCuda(modelPath);
const cudaModule = build.cudaModule?.path;
const code = cudaModule ? readCudaModuleCode(cudaModule) : null;
const telemetry = Llama.telemetry();
const gpu = telemetry.available ? telemetry.devices[0] : undefined;
const deviceArch = gpu?.computeCapability ? Math.round(Number(gpu.computeCapability) * 10) : undefined;
const ptxForGpu =
  deviceArch !== undefined &&
  code !== null &&
  code.units.every((unit) => unit.some((i) => i.kind === 'ptx' && i.variant === undefined && i.arch <= deviceArch));
if (!ptxForGpu && !rehearse) {
  log(
    `not measurable: ${cudaModule ?? 'the CUDA module'} has no PTX for every code unit at or below compute capability ${gpu?.computeCapability ?? '?'} ` +
      `(${build.cudaModuleCode ?? 'unreadable'}); build it with PTX, e.g. \`npm run build:cuda -- --arch 90\``,
  );
  process.exit(0);
}

compileDist();
const loadOptions = rehearse
  ? { gpu: 'cpu' as const, contextSize: 512 }
  : { gpu: 'cuda' as const, gpuLayers: 'max' as const, contextSize: 512 };
const prompt = 'The first use of the GPU code';
const modes = ['sass', 'ptx-cold', 'ptx-cached'] as const;
const results: Record<(typeof modes)[number], FirstUse[]> = { sass: [], 'ptx-cold': [], 'ptx-cached': [] };
for (let round = 0; round < rounds; round++) {
  const cache = mkdtempSync(join(tmpdir(), 'cuda-llama-jit-cache-'));
  try {
    for (const mode of modes) {
      const env =
        mode === 'sass'
          ? process.env
          : { ...process.env, CUDA_FORCE_PTX_JIT: '1', CUDA_CACHE_PATH: cache, CUDA_CACHE_MAXSIZE: '4294967296', CUDA_CACHE_DISABLE: '0' };
      const run = await runCudaLlamaChild<FirstUse>({ kind: 'firstUse', modelPath, loadOptions, prompt, tokens }, env);
      results[mode].push(run);
      log(
        `round ${round + 1} ${mode}: load ${run.loadMs.toFixed(0)} ms, first generation ${run.firstMs.toFixed(0)} ms, again ${run.againMs.toFixed(0)} ms`,
      );
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
}

// The PTX the driver compiled must compute what the SASS does (greedy, the same kernels' source).
const texts = new Set(modes.flatMap((m) => results[m].map((r) => r.text)));
const ms = (values: number[]) => `${stats(values).median.toFixed(0)} ms`;
const rows = modes.map((mode) => {
  const r = results[mode];
  return `| ${mode} | ${ms(r.map((x) => x.loadMs))} | ${ms(r.map((x) => x.firstMs))} | ${ms(r.map((x) => x.againMs))} |`;
});
const page = [
  `# First use of the CUDA code: SASS against PTX compiled by the driver`,
  '',
  `${new Date().toISOString().slice(0, 10)}, commit ${git(['rev-parse', '--short', 'HEAD'])}, ${gpu?.name ?? 'GPU'} (compute ${gpu?.computeCapability}), driver ${telemetry.available ? telemetry.driverVersion : '?'}; ` +
    `the module: ${build.cudaModuleCode}. \`npx tsx test/bench/jit.ts --tokens ${tokens} --rounds ${rounds}\`, medians of ${rounds} round(s).`,
  '',
  '| mode | load (no warm-up) | first generation | the same again |',
  '|---|---|---|---|',
  ...rows,
  '',
  `ptx-cold: CUDA_FORCE_PTX_JIT=1 with an empty CUDA_CACHE_PATH (a GPU that needs the PTX, first load); ptx-cached: the same cache again. ` +
    `Same text in every mode: ${texts.size === 1 ? 'yes' : `no (${texts.size} different texts)`}.`,
];
process.stderr.write(`${page.join('\n')}\n`);
if (values.out) {
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, 'jit.md'), `${page.join('\n')}\n`);
  writeFileSync(join(values.out, 'jit.json'), `${JSON.stringify({ modelPath, tokens, rounds, results }, null, 2)}\n`);
}
if (texts.size !== 1) fail('the modes generated different texts');
