/**
 * The one loader of the native binary. It tries the candidates in a fixed order, records why each
 * one failed, and when none loads throws one NativeBindingError with the runtime tuple and the
 * remedies that match the failures. After loading, it registers the ggml backend modules that sit
 * next to the binary (GGML_BACKEND_DL), so "which build am I running" has one answer.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, NativeBindingError } from '../errors.js';
import { cudaLibraryDirs, cudaRuntimeRemedy, satisfyLibraries, type RuntimeResolution } from '../gpu/runtime-libraries.js';
import type { NativeAddon } from './native.js';

export const ADDON_FILE = 'cuda_llama.node';
/** Warning code: a binary that is present (a local build) was passed over for a later candidate. */
export const BINARY_FALLBACK_WARNING = 'CUDA_LLAMA_BINARY_FALLBACK';
export const BUILD_INFO_FILE = 'cuda-llama-build.json';

/** What the build wrote next to the binary (CMakeLists.txt generates it). */
export interface BuildMetadata {
  variant: 'cpu' | 'cuda';
  /**
   * Fingerprint of the native/ sources it was built from, recorded at build time (scripts/native-sources.mjs);
   * null for a build made without the build scripts. Reported only: the build scripts refuse or rebuild a
   * stale local build (scripts/install.mjs), and an installed package's binaries come from its own native/.
   */
  nativeSourcesSha256?: string | null;
  llamaCppCommit: string;
  llamaCppTag: string;
  cpuVariants: string;
  cpuFeatures: string;
  cudaArchitectures: string | null;
  cudaCompilerVersion: string | null;
  compiler: string;
  system: string;
}

export interface Candidate {
  /** Where it came from: 'env' (CUDA_LLAMA_BINARY_DIR), 'local-build', 'prebuild'. */
  source: 'env' | 'local-build' | 'prebuild';
  dir: string;
}

/** npm package that carries the CUDA backend module for this platform (an optional install, see README). */
export const CUDA_PACKAGE = `@cuda-llama/${process.platform}-${process.arch}-cuda13`;
export const CUDA_MODULE_FILE = 'libggml-cuda.so';

/** Where the CUDA backend module was found, if anywhere, and why it was not used when it was not. */
export interface CudaModuleLocation {
  path: string;
  /** 'beside-addon': a local CUDA build or a prebuild folder; 'package': the optional CUDA package. */
  source: 'beside-addon' | 'package';
  /** The package's build metadata (variant, llama.cpp commit, CUDA architectures and version). */
  metadata: BuildMetadata | null;
  /** Set when the module was found but not loaded (e.g. built from another llama.cpp commit). */
  problem?: string;
  remedy?: string;
}

/**
 * The CUDA module for an addon in `dir`: the one beside it wins (a local CUDA build ships both
 * together); otherwise the optional CUDA package, used only when it was built from the same
 * llama.cpp commit, because a module from another commit would be loaded against a libggml-base
 * it was not compiled for.
 */
export function locateCudaModule(
  dir: string,
  addonMetadata: BuildMetadata | null,
  resolvePackage: (request: string) => string,
): CudaModuleLocation | null {
  const beside = join(dir, CUDA_MODULE_FILE);
  if (existsSync(beside)) return { path: beside, source: 'beside-addon', metadata: addonMetadata };
  let packageDir: string;
  try {
    packageDir = dirname(resolvePackage(`${CUDA_PACKAGE}/package.json`));
  } catch {
    return null; // not installed: a CPU-only installation, which cudaAvailability explains
  }
  const location: CudaModuleLocation = { path: join(packageDir, CUDA_MODULE_FILE), source: 'package', metadata: readMetadata(packageDir) };
  const wanted = addonMetadata?.llamaCppCommit;
  const got = location.metadata?.llamaCppCommit;
  if (!existsSync(location.path)) {
    location.problem = `${CUDA_PACKAGE} is installed at ${packageDir} but has no ${CUDA_MODULE_FILE}`;
    location.remedy = `reinstall it: \`npm install ${CUDA_PACKAGE}\``;
  } else if (!wanted || !got || wanted !== got) {
    location.problem = `${CUDA_PACKAGE} was built from llama.cpp ${got?.slice(0, 12) ?? 'unknown'}, the addon from ${wanted?.slice(0, 12) ?? 'unknown'}`;
    location.remedy = `install the ${CUDA_PACKAGE} version that matches cuda-llama's (the same version number), or build the CUDA variant: \`npm run build:cuda\``;
  }
  return location;
}

export interface LoadedBinary {
  addon: NativeAddon;
  /** CUDA runtime libraries preloaded for the CUDA module (empty when the loader found them itself). */
  cudaRuntime: RuntimeResolution | null;
  source: Candidate['source'];
  dir: string;
  path: string;
  metadata: BuildMetadata | null;
  /** The CUDA backend module, beside the addon or from the optional CUDA package; null when there is none. */
  cudaModule: CudaModuleLocation | null;
}

export interface CandidateFailure extends Candidate {
  reason: string;
  /** No binary there at all (no local build in an installed package): no news, unlike one passed over. */
  absent?: true;
}

export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The candidates, in the order they are tried. */
export function binaryCandidates(env: NodeJS.ProcessEnv = process.env, root = packageRoot): Candidate[] {
  if (env.CUDA_LLAMA_BINARY_DIR) {
    // An explicit choice is the only candidate: falling through to another build would hide the mistake.
    // Absolute, from the working directory: require() would read 'build/Release/x.node' as a package name.
    return [{ source: 'env', dir: resolve(env.CUDA_LLAMA_BINARY_DIR) }];
  }
  return [
    { source: 'local-build', dir: join(root, 'build', 'Release') },
    { source: 'prebuild', dir: join(root, 'prebuilds', `${process.platform}-${process.arch}`) },
  ];
}

/** The runtime tuple printed with every loader failure. */
export function runtimeDescription(): string {
  const report = process.report?.getReport?.() as { header?: { glibcVersionRuntime?: string } } | undefined;
  const libc = report?.header?.glibcVersionRuntime ? `glibc ${report.header.glibcVersionRuntime}` : 'libc unknown (musl?)';
  // A container may hide /proc/driver/nvidia yet pass the device nodes through (test-pack reads it the same way).
  const nvidiaDriver =
    existsSync('/proc/driver/nvidia/version') || existsSync('/dev/nvidiactl')
      ? 'NVIDIA driver present'
      : 'no NVIDIA driver (neither /proc/driver/nvidia/version nor /dev/nvidiactl)';
  return `${process.platform}-${process.arch}, ${libc}, Node ${process.versions.node} (Node-API ${process.versions.napi}), ${nvidiaDriver}`;
}

/** Remedies matched to the failures seen. */
export function remediesFor(failures: CandidateFailure[], execArgv: string[] = process.execArgv): string[] {
  const remedies: string[] = [];
  if (execArgv.includes('--no-addons')) remedies.push('Node was started with --no-addons; native addons cannot load. Remove the flag.');
  const reasons = failures.map((f) => f.reason).join('\n');
  if (/libcudart|libcublas/.test(reasons)) {
    remedies.push(cudaRuntimeRemedy());
  }
  if (/libcuda\.so/.test(reasons))
    remedies.push('no NVIDIA driver library (libcuda.so.1): install the NVIDIA driver, or use the CPU build');
  if (/GLIBC_|GLIBCXX_/.test(reasons))
    remedies.push('the binary needs a newer C/C++ runtime than this system has: build from source with `npm run build:native`');
  if (/not found|does not exist/.test(reasons)) {
    remedies.push(
      'no binary was built or shipped for this platform: run `npm run build:native` in the package folder (needs cmake and a C++17 compiler)',
    );
  }
  if (remedies.length === 0) remedies.push('rebuild from source with `npm run build:native`, and report the failure with the lines above');
  return remedies;
}

function readMetadata(dir: string): BuildMetadata | null {
  try {
    return JSON.parse(readFileSync(join(dir, BUILD_INFO_FILE), 'utf8')) as BuildMetadata;
  } catch {
    return null; // an old or hand-made build without metadata; reported as unknown, not guessed
  }
}

/** Loads the first candidate that works. Throws ERR_NO_BINARY with every failure otherwise. */
export function loadNativeBinary(
  candidates: Candidate[] = binaryCandidates(),
  requireFn: NodeJS.Require = createRequire(import.meta.url),
): LoadedBinary {
  const failures: CandidateFailure[] = [];
  for (const candidate of candidates) {
    const path = join(candidate.dir, ADDON_FILE);
    if (!existsSync(path)) {
      failures.push({ ...candidate, reason: `${path} does not exist`, absent: true });
      continue;
    }
    const metadata = readMetadata(candidate.dir);
    try {
      const addon = requireFn(path) as NativeAddon;
      const cudaModule = locateCudaModule(candidate.dir, metadata, (request) => requireFn.resolve(request));
      const usable = cudaModule !== null && cudaModule.problem === undefined;
      // Before ggml loads the CUDA module: make its runtime libraries findable if they are not.
      const cudaRuntime = usable ? satisfyLibraries(addon, cudaModule.path, () => cudaLibraryDirs()) : null;
      addon.loadBackendsFromDir(candidate.dir);
      // ggml looks for modules in one folder at a time; the package's folder holds only the CUDA one.
      if (usable && cudaModule.source === 'package') addon.loadBackendsFromDir(dirname(cudaModule.path));
      // A candidate that is there but was passed over (a broken local build) is not
      // skipped silently: the binary now running is another one than the user built.
      const passedOver = failures.filter((f) => !f.absent);
      if (passedOver.length > 0) {
        process.emitWarning(
          `cuda-llama is running ${path} (${candidate.source}) because ${passedOver.map((f) => `[${f.source}] ${f.reason}`).join('; ')}. ` +
            remediesFor(passedOver).join(' '),
          { type: 'CudaLlamaWarning', code: BINARY_FALLBACK_WARNING },
        );
      }
      return { addon, cudaRuntime, source: candidate.source, dir: candidate.dir, path, metadata, cudaModule };
    } catch (error) {
      failures.push({ ...candidate, reason: (error as Error).message.split('\n')[0] });
    }
  }
  const tried = failures.map((f, i) => `  ${i + 1}. [${f.source}] ${f.reason}`).join('\n');
  const remedies = remediesFor(failures);
  throw new NativeBindingError(ErrorCode.NO_BINARY, `No cuda-llama binary could be loaded for ${runtimeDescription()}.\nTried:\n${tried}`, {
    remedy: remedies.map((r, i) => `(${i + 1}) ${r}`).join(' '),
    details: { failures, runtime: runtimeDescription() },
  });
}

let loaded: LoadedBinary | undefined;

/** The process-wide binary, loaded on first use. */
export function nativeBinary(): LoadedBinary {
  loaded ??= loadNativeBinary();
  return loaded;
}
