// Shared by the build scripts: where the repo is, and the one list of cmake-js arguments.
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeSourcesSha256 } from './native-sources.mjs';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

export function say(message) {
  process.stderr.write(`[cuda-llama] ${message}\n`);
}

/** The build folder (relative to the repo): CUDA_LLAMA_BUILD_DIR, default "build". */
export function buildDirName(env = process.env) {
  return env.CUDA_LLAMA_BUILD_DIR || 'build';
}

/** cmake-js arguments for the build the environment asks for. */
export function cmakeJsArgs(env = process.env) {
  const args = ['--out', buildDirName(env), '--config', 'Release'];
  const cpuVariants = env.CUDA_LLAMA_CPU_VARIANTS ?? 'native';
  if (!['native', 'all'].includes(cpuVariants)) {
    throw new Error(`CUDA_LLAMA_CPU_VARIANTS must be native or all, got ${cpuVariants}`);
  }
  args.push(`--CDCUDA_LLAMA_CPU_VARIANTS=${cpuVariants}`);
  // Recorded in the build metadata, checked by the loader (scripts/native-sources.mjs).
  args.push(`--CDCUDA_LLAMA_NATIVE_SOURCES=${nativeSourcesSha256(repoRoot)}`);
  const cuda = env.CUDA_LLAMA_CUDA === '1' || env.CUDA_LLAMA_CUDA === 'ON';
  args.push(`--CDCUDA_LLAMA_CUDA=${cuda ? 'ON' : 'OFF'}`);
  if (cuda) {
    // Set by scripts/build-cuda.mjs from the toolkit it found.
    if (env.CUDA_LLAMA_CUDA_ARCHITECTURES) args.push(`--CDCUDA_LLAMA_CUDA_ARCHITECTURES=${env.CUDA_LLAMA_CUDA_ARCHITECTURES}`);
    if (env.CUDA_LLAMA_CUDA_TOOLKIT) args.push(`--CDCUDAToolkit_ROOT=${env.CUDA_LLAMA_CUDA_TOOLKIT}`);
    if (env.CUDA_LLAMA_NVCC) args.push(`--CDCMAKE_CUDA_COMPILER=${env.CUDA_LLAMA_NVCC}`);
    if (env.CUDA_LLAMA_CUDA_RPATH) args.push(`--CDCUDA_LLAMA_CUDA_RPATH=${env.CUDA_LLAMA_CUDA_RPATH}`);
    if (env.CUDA_LLAMA_CUDA_VERSION) args.push(`--CDCUDA_LLAMA_CUDA_VERSION=${env.CUDA_LLAMA_CUDA_VERSION}`);
  }
  return args;
}

// CUDA toolkit discovery, shared by build-cuda.mjs (which uses it) and install.mjs (which names it).
function hasNvcc(root) {
  return root && existsSync(join(root, 'bin', 'nvcc'));
}

function pythonWheelRoots() {
  for (const python of ['python3', 'python']) {
    const found = spawnSync(python, ['-c', 'import nvidia, json; print(json.dumps(list(nvidia.__path__)))'], { encoding: 'utf8' });
    if (found.status === 0) {
      try {
        return JSON.parse(found.stdout).map((p) => join(p, 'cu13'));
      } catch {
        // not JSON: an odd python; try the next one
      }
    }
  }
  return [];
}

/** Returns { root, source } of the first toolkit found, or null. */
export function findToolkit(env = process.env, wheelDir = join(repoRoot, buildDirName(env), 'cuda-wheels')) {
  for (const name of ['CUDA_PATH', 'CUDA_HOME']) {
    if (env[name]) {
      if (hasNvcc(env[name])) return { root: env[name], source: name };
      say(`${name}=${env[name]} has no bin/nvcc; looking further`);
    }
  }
  const which = spawnSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim()) {
    const root = dirname(dirname(realpathSync(which.stdout.trim())));
    if (hasNvcc(root)) return { root, source: 'nvcc on PATH' };
  }
  if (hasNvcc('/usr/local/cuda')) return { root: '/usr/local/cuda', source: '/usr/local/cuda' };
  for (const root of pythonWheelRoots()) if (hasNvcc(root)) return { root, source: 'python3 site-packages (PyPI wheels)' };
  const local = join(wheelDir, 'nvidia', 'cu13');
  if (hasNvcc(local)) return { root: local, source: `${wheelDir} (PyPI wheels)` };
  return null;
}

