/**
 * node-llama-cpp's side of the three-way benchmark: a pinned install in an ignored folder, and one
 * repetition run in a child process (node-llama-cpp-child.mjs).
 *
 * node-llama-cpp is a comparison tool here, never a dependency: it is installed from the npm
 * registry only, as prebuilt binaries only, and it is never loaded into this process, which has our
 * own libllama/libggml loaded under some of the same sonames (libggml-base.so, libllama-common.so).
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, renameSync } from 'node:fs';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { delimiter, join, relative } from 'node:path';
import { cudaCodeVerdicts, describeCudaCode, readCudaModuleCode } from '../../lib/gpu/fatbin.js';
import type { BuildReport, GpuTelemetry } from '../../lib/index.js';
import { CUDA_MODULE_FILE } from '../../lib/binding/load-native.js';
import { cudaRuntimeDirs } from './llama-bench.js';
import { TTFT_SAMPLES, log, ppSamples, repoRoot, runJsonChild } from './common.js';

export const NODE_LLAMA_CPP_VERSION = '3.22.1';
export const nodeLlamaCppDir = join(repoRoot, 'test', 'bench', '.node-llama-cpp');
const childScriptPath = join(repoRoot, 'test', 'bench', 'node-llama-cpp-child.mjs');

export interface NodeLlamaCppInstall {
  dir: string;
  version: string;
  /** The prebuilt-binary packages present in `dir`, as `name@version`. */
  binaryPackages: string[];
}

export interface NodeLlamaCppArgs {
  modelPath: string;
  threads: number;
  /** Context size in tokens, as given to ours and llama-bench. */
  contextSize: number;
  gpu: false | 'cuda';
  /** Layers to offload when gpu is 'cuda' (default 'max': all of them, the output layer too). */
  gpuLayers?: number | 'max';
  /** Folders holding libcudart.so.13 and libcublas.so.13, for gpu 'cuda' (see childEnv). */
  cudaLibraryDirs?: string[];
  /**
   * The pp prompt: token ids from our tokenizer for the same GGUF, so all three programs see the
   * same input (512 of them, or as many as the largest of promptSizes). Its first 512 are the warm-up.
   */
  longPrompt: number[];
  /**
   * Extra prompt sizes for pp, each run on the first n tokens of longPrompt (for pp128/pp2048
   * next to pp512). longPrompt's own length is always measured, and is ppTokensPerSecond.
   */
  promptSizes?: number[];
  /** The TTFT and tg prompt (16 token ids). */
  shortPrompt: number[];
  /** Tokens to generate for tg (128). */
  genTokens: number;
  /**
   * Batch size given to node-llama-cpp (default 512). Its addon sets n_ubatch = n_batch, so
   * llama-bench's n_batch 2048 / n_ubatch 512 cannot both be had. 512 keeps what the compute sees:
   * 512-token ubatches and compute buffers sized for them (a 2048-token prompt becomes four
   * llama_decode calls instead of one with four ubatches). 2048 would make a 2048-token prompt
   * one 2048-token ubatch, and size the compute buffers for that.
   */
  batchSize?: number;
}

/** What node-llama-cpp says about the binary it loaded, from its own API and from /proc/self/maps. */
export interface NodeLlamaCppBinary {
  nodeLlamaCppVersion: string;
  buildType: 'localBuild' | 'prebuilt';
  gpu: false | string;
  supportsGpuOffloading: boolean;
  supportsMmap: boolean;
  cpuMathCores: number;
  maxThreads: number;
  llamaCppRelease: { repo: string; release: string };
  /** llama.cpp's llama_print_system_info(): the CPU features of the loaded ggml-cpu variant. */
  systemInfo: string;
  gpuDeviceNames: string[];
  /** The llama/ggml libraries mapped into the child, relative to the install folder. */
  loadedLibraries: string[];
  [key: string]: unknown;
}

export interface NodeLlamaCppRun {
  /**
   * getLlama(): finding the binding, testing it in a throwaway child process (which it always does
   * for prebuilt binaries on Linux), loading it and its ggml backends; not part of loadMs.
   */
  bindingLoadMs: number;
  /** llama.loadModel() + model.createContext(). */
  loadMs: number;
  /** The mean of TTFT_SAMPLES requests. */
  ttftMs: number;
  /** pp over the whole longPrompt. */
  ppTokensPerSecond: number;
  /** pp by prompt size (promptSizes and longPrompt's length): the mean of ppSamples(size) decodes. */
  pp: Record<number, number>;
  tgTokensPerSecond: number;
  tgGeneratedTokens: number;
  /** End-of-generation tokens generated through (never stopped at) during tg. */
  tgEogTokens: number;
  binary: NodeLlamaCppBinary;
  /** Layers node-llama-cpp offloaded (model.gpuLayers). */
  gpuLayers: number;
  useMmap: boolean;
  flashAttention: 'auto' | boolean;
  contextSize: number;
  /** Threads the context decoded with (llama_n_threads after the last decode). */
  threads: number;
  /** n_batch, which is also n_ubatch in node-llama-cpp. */
  batchSize: number;
}

function binaryPackageNames(cuda: boolean): string[] {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`the node-llama-cpp benchmark installs linux-x64 binaries only; this is ${process.platform}-${process.arch}`);
  }
  // -cuda's libggml-cuda.so links the CUDA 13 runtime (libcudart.so.13, libcublas.so.13). Left out:
  // -cuda-ext (358 MB), whose only library is a CUDA 12 "fallback" module that node-llama-cpp loads
  // when -cuda's fails (Llama.js, loadBackends): it needs libcudart.so.12 and libcublas.so.12, which
  // a CUDA 13 host does not have, and measuring it would not be measuring the CUDA 13 build.
  return cuda ? ['@node-llama-cpp/linux-x64', '@node-llama-cpp/linux-x64-cuda'] : ['@node-llama-cpp/linux-x64'];
}

async function installedVersion(dir: string, packageName: string): Promise<string | undefined> {
  try {
    const manifest = JSON.parse(await readFile(join(dir, 'node_modules', packageName, 'package.json'), 'utf8')) as { version?: string };
    return manifest.version;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * --omit=optional keeps npm from pulling node-llama-cpp's 14 per-platform binary packages; the ones
 * we want are named explicitly, which makes them ordinary dependencies of the folder's package.json.
 * --ignore-scripts skips node-llama-cpp's postinstall, which would otherwise test the binary and,
 * failing that, clone llama.cpp from GitHub and build it; the env vars say the same to it should a
 * script run anyway.
 */
export function npmInstallArgs(packageSpecs: string[]): string[] {
  return [
    'install',
    '--omit=optional',
    '--ignore-scripts',
    '--save-exact',
    '--no-audit',
    '--no-fund',
    '--update-notifier=false',
    ...packageSpecs,
  ];
}

function runNpmInstall(dir: string, packageSpecs: string[]): Promise<void> {
  const args = npmInstallArgs(packageSpecs);
  log(`installing into ${relative(repoRoot, dir)}: npm ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    // npm's stdout goes to our stderr: our stdout is reserved for the JSON result.
    const child = spawn('npm', args, {
      cwd: dir,
      stdio: ['ignore', 2, 2],
      env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true', NODE_LLAMA_CPP_POSTINSTALL: 'skip' },
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`npm ${args.join(' ')} (in ${dir}) exited with ${code ?? signal}; see its output above`));
    });
  });
}

/** Installs node-llama-cpp and its prebuilt binaries into test/bench/.node-llama-cpp/ unless present. */
export async function ensureNodeLlamaCpp(options: { cuda?: boolean } = {}): Promise<NodeLlamaCppInstall> {
  const dir = nodeLlamaCppDir;
  const wanted = ['node-llama-cpp', ...binaryPackageNames(options.cuda ?? false)];
  const missing: string[] = [];
  for (const name of wanted) {
    if ((await installedVersion(dir, name)) !== NODE_LLAMA_CPP_VERSION) missing.push(name);
  }
  if (missing.length > 0) {
    await mkdir(dir, { recursive: true });
    // Without a package.json here, npm would walk up and install into the repository's own one.
    const manifest = {
      name: 'cuda-llama-bench-node-llama-cpp',
      private: true,
      description: 'node-llama-cpp for test/bench only (git-ignored)',
    };
    try {
      await writeFile(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`, { flag: 'wx' });
    } catch (error) {
      // An existing one lists what earlier installs added; npm adds the missing packages to it.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    await runNpmInstall(
      dir,
      missing.map((name) => `${name}@${NODE_LLAMA_CPP_VERSION}`),
    );
    for (const name of wanted) {
      const version = await installedVersion(dir, name);
      if (version !== NODE_LLAMA_CPP_VERSION) {
        throw new Error(`after npm install, ${name} in ${dir} is ${version ?? 'missing'}, expected ${NODE_LLAMA_CPP_VERSION}`);
      }
    }
  }
  const scopeDir = join(dir, 'node_modules', '@node-llama-cpp');
  const binaryPackages: string[] = [];
  for (const entry of (await readdir(scopeDir)).sort()) {
    const name = `@node-llama-cpp/${entry}`;
    binaryPackages.push(`${name}@${await installedVersion(dir, name)}`);
  }
  return { dir, version: NODE_LLAMA_CPP_VERSION, binaryPackages };
}

function checkArgs(args: NodeLlamaCppArgs): void {
  const positiveInteger = (name: string, value: unknown) => {
    if (!Number.isInteger(value) || (value as number) < 1) throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  };
  positiveInteger('threads', args.threads);
  positiveInteger('contextSize', args.contextSize);
  positiveInteger('genTokens', args.genTokens);
  if (args.batchSize !== undefined) positiveInteger('batchSize', args.batchSize);
  if (args.gpu !== false && args.gpu !== 'cuda') throw new TypeError(`gpu must be false or 'cuda', got ${String(args.gpu)}`);
  if (args.gpuLayers !== undefined && args.gpuLayers !== 'max' && !(Number.isInteger(args.gpuLayers) && args.gpuLayers >= 0)) {
    throw new TypeError(`gpuLayers must be a non-negative integer or 'max', got ${String(args.gpuLayers)}`);
  }
  for (const [name, prompt] of [
    ['longPrompt', args.longPrompt],
    ['shortPrompt', args.shortPrompt],
  ] as const) {
    if (!Array.isArray(prompt) || prompt.length === 0 || !prompt.every((t) => Number.isInteger(t) && t >= 0)) {
      throw new TypeError(`${name} must be a non-empty array of token ids`);
    }
  }
  for (const size of args.promptSizes ?? []) {
    if (!Number.isInteger(size) || size < 1 || size > args.longPrompt.length) {
      throw new RangeError(`promptSizes must hold integers from 1 to longPrompt.length (${args.longPrompt.length}), got ${String(size)}`);
    }
  }
  // A sequence that fills the context would make node-llama-cpp shift it (erase its beginning) in
  // the middle of a measurement; llama-bench never does that.
  const needed = Math.max(args.longPrompt.length + 2, args.shortPrompt.length + args.genTokens);
  if (needed > args.contextSize)
    throw new RangeError(`contextSize ${args.contextSize} is too small for the prompts and genTokens (${needed} tokens)`);
}

/**
 * Our build folders hold libggml-base.so and libllama-common.so under the same names as
 * node-llama-cpp's; its addon finds its own through RUNPATH ($ORIGIN), which LD_LIBRARY_PATH
 * overrides. Entries inside this repository are dropped for the child; others (a CUDA runtime) stay.
 * The child also checks /proc/self/maps and fails if a library came from outside its install.
 * `cudaLibraryDirs`: where the CUDA runtime is (cuda-llama's loader found it and preloads it by
 * path; node-llama-cpp's module finds libcudart/libcublas through the library path only).
 */
function childEnv(cudaLibraryDirs: string[] = []): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' };
  const kept = [...cudaLibraryDirs, ...(env.LD_LIBRARY_PATH ?? '').split(delimiter)].filter(
    (entry) => entry !== '' && relative(repoRoot, entry).startsWith('..'),
  );
  if (kept.length > 0) env.LD_LIBRARY_PATH = kept.join(delimiter);
  else delete env.LD_LIBRARY_PATH;
  return env;
}

/** One repetition (load, warm-up, TTFT, pp, tg) in a fresh child process. Call ensureNodeLlamaCpp() first. */
export function runNodeLlamaCpp(args: NodeLlamaCppArgs): Promise<NodeLlamaCppRun> {
  checkArgs(args);
  const promptSizes = [...new Set([...(args.promptSizes ?? []), args.longPrompt.length])];
  // The same number of decodes per size as ours and llama-bench (their mean is the figure).
  const samples = Object.fromEntries(promptSizes.map((n) => [n, ppSamples(n)]));
  return runChild({
    ...args,
    promptSizes,
    ppSamples: samples,
    ttftSamples: TTFT_SAMPLES,
    batchSize: args.batchSize ?? 512,
    gpuLayers: args.gpuLayers ?? 'max',
    installDir: nodeLlamaCppDir,
  });
}

export interface NodeLlamaCppParallelArgs {
  modelPath: string;
  threads: number;
  gpu: false | 'cuda';
  gpuLayers?: number | 'max';
  cudaLibraryDirs?: string[];
  /** One prompt per sequence, at least as many as the largest count. */
  prompts: number[][];
  counts: number[];
  genTokens: number;
  /** Each sequence's context size. */
  window: number;
}

export interface NodeLlamaCppParallelRun {
  /** Aggregate tokens per second by sequence count. */
  tg: Record<number, number>;
  generated: Record<number, number[]>;
  contextSize: number;
  batchSize: number;
  threads: number;
}

/** Parallel sequences (see parallel.ts) in a fresh child process. */
export function runNodeLlamaCppParallel(args: NodeLlamaCppParallelArgs): Promise<NodeLlamaCppParallelRun> {
  if (args.prompts.length < Math.max(...args.counts)) throw new RangeError('fewer prompts than sequences');
  if (args.prompts.some((p) => p.length + args.genTokens > args.window))
    throw new RangeError(`window ${args.window} is too small for a prompt and ${args.genTokens} tokens`);
  return runChild({ ...args, mode: 'parallel', batchSize: 512, gpuLayers: args.gpuLayers ?? 'max', installDir: nodeLlamaCppDir });
}

export interface NodeLlamaCppScenarioArgs {
  modelPath: string;
  threads: number;
  gpu: false | 'cuda';
  gpuLayers?: number | 'max';
  cudaLibraryDirs?: string[];
  /** The mode's own fields (node-llama-cpp-scenarios.mjs lists them). */
  [field: string]: unknown;
}

/** A scenario benchmark's side (chat-turns.ts, arrivals.ts: node-llama-cpp-scenarios.mjs) in a fresh child process; batch 512 as everywhere here. */
export function runNodeLlamaCppScenario<T>(mode: 'chat' | 'arrivals' | 'embed', args: NodeLlamaCppScenarioArgs): Promise<T> {
  return runChild<T>({ ...args, mode, batchSize: 512, gpuLayers: args.gpuLayers ?? 'max', installDir: nodeLlamaCppDir });
}

function runChild<T>(request: { cudaLibraryDirs?: string[]; [key: string]: unknown }): Promise<T> {
  const { cudaLibraryDirs, ...rest } = request;
  return runJsonChild<T>(childScriptPath, rest, childEnv(cudaLibraryDirs));
}

/**
 * `active`: node-llama-cpp's CUDA 13 module, where its Linux x64 CUDA binary loads it from.
 * `kept`: its own module, moved there while cuda-llama's stands in for it (outside bins/, so ggml never loads it).
 */
export function nodeLlamaCppCudaModulePaths(installDir = nodeLlamaCppDir): { active: string; kept: string } {
  return {
    active: join(installDir, 'node_modules', '@node-llama-cpp', 'linux-x64-cuda', 'bins', 'linux-x64-cuda', CUDA_MODULE_FILE),
    kept: join(installDir, `node-llama-cpp-own-${CUDA_MODULE_FILE}`),
  };
}
/** Beside a module whose code was zeroed for the GPU host's carry (carry-node-llama-cpp.ts): its headers are intact, its code is not. */
export const TRIMMED_MARK = '.code-removed-for-carry';

export interface NodeLlamaCppCudaModule {
  /**
   * 'own': node-llama-cpp's libggml-cuda.so. 'cuda-llama': the module cuda-llama loads (built from
   * the same llama.cpp commit, so it fits node-llama-cpp's libggml-base), copied into its place
   * because no GPU here can run node-llama-cpp's own.
   */
  source: 'own' | 'cuda-llama';
  /** What node-llama-cpp's own module holds (describeCudaCode), or why that is unknown. */
  ownCode: string;
  /** Why its own cannot be used here; absent for 'own'. */
  reason?: string;
}

/**
 * Puts in place the CUDA module node-llama-cpp will load for this run: its own when a GPU here can
 * run it (read from its fatbin against each GPU and the driver, as cuda-llama's own policy does),
 * else cuda-llama's module `fallbackModule`. Without this, node-llama-cpp's own module would load,
 * list the GPU, and abort its process at the first kernel. The swap is undone by the next call
 * whose GPU can run the original.
 */
export function selectNodeLlamaCppCudaModule(
  fallbackModule: string,
  gpus: { name: string | null; computeCapability: string | null }[],
  driverCuda: string | null,
  installDir = nodeLlamaCppDir,
): NodeLlamaCppCudaModule {
  const { active, kept } = nodeLlamaCppCudaModulePaths(installDir);
  const swapped = existsSync(kept);
  const ownPath = swapped ? kept : active;
  if (!existsSync(ownPath)) throw new Error(`node-llama-cpp's CUDA module is not at ${active}: run ensureNodeLlamaCpp({ cuda: true })`);
  const code = readCudaModuleCode(ownPath);
  const verdicts = code ? cudaCodeVerdicts(code, gpus, driverCuda) : undefined;
  const refused = verdicts?.noneRuns
    ? verdicts.perGpu.map(({ gpu, verdict }) => `${gpu}: ${verdict.runs ? verdict.via : verdict.reason}`).join('; ')
    : undefined;
  // The carried copy's verdict is still worth stating: it is what the real file would have met here.
  const trimmed = existsSync(ownPath + TRIMMED_MARK)
    ? 'its copy here was carried with its GPU code removed (test/bench/carry-node-llama-cpp.ts)'
    : undefined;
  const reason =
    refused && trimmed
      ? `${refused} (and ${trimmed})`
      : (refused ?? (trimmed && `${trimmed}, though by its fatbin a GPU here could have run it`));
  const ownCode = code ? describeCudaCode(code) : 'unknown (its fatbin could not be read)';
  if (reason === undefined) {
    if (swapped) renameSync(kept, active);
    return { source: 'own', ownCode };
  }
  if (!swapped) {
    renameSync(active, kept);
    if (existsSync(active + TRIMMED_MARK)) renameSync(active + TRIMMED_MARK, kept + TRIMMED_MARK);
  }
  copyFileSync(fallbackModule, active);
  return { source: 'cuda-llama', ownCode, reason };
}

export interface NodeLlamaCppGpuSetup {
  cudaModule: NodeLlamaCppCudaModule;
  /** Pass to runNodeLlamaCpp / runNodeLlamaCppParallel with gpu 'cuda'. */
  cudaLibraryDirs: string[];
  /** For the report: which CUDA module node-llama-cpp's GPU rows ran, and why. */
  note: string;
}

/** Readies node-llama-cpp for GPU runs beside cuda-llama's `build` (whose CUDA module and runtime it may borrow). */
export function nodeLlamaCppGpuSetup(build: BuildReport, telemetry: GpuTelemetry): NodeLlamaCppGpuSetup {
  if (!build.cudaModule) throw new Error('cuda-llama has no CUDA module loaded: nothing to run node-llama-cpp against on the GPU');
  const gpus = telemetry.available ? telemetry.devices : [];
  const cudaModule = selectNodeLlamaCppCudaModule(build.cudaModule.path, gpus, telemetry.available ? telemetry.cudaDriverVersion : null);
  const note =
    cudaModule.source === 'own'
      ? `node-llama-cpp's GPU rows ran its own CUDA module (${cudaModule.ownCode}).`
      : `node-llama-cpp's own CUDA module cannot run here: ${cudaModule.reason}. It holds ${cudaModule.ownCode}. ` +
        `So its GPU rows ran node-llama-cpp's binding, libllama and ggml-base with cuda-llama's CUDA module (${relative(repoRoot, build.cudaModule.path)}, ` +
        'built from the same llama.cpp commit) copied into its place: on the GPU they compare the two bindings over one CUDA build, not two CUDA builds.';
  return { cudaModule, cudaLibraryDirs: cudaRuntimeDirs(build), note };
}
