// Shared by the build scripts: where the repo is, and the one list of cmake-js arguments.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
  const cuda = env.CUDA_LLAMA_CUDA === '1' || env.CUDA_LLAMA_CUDA === 'ON';
  args.push(`--CDCUDA_LLAMA_CUDA=${cuda ? 'ON' : 'OFF'}`);
  if (cuda) {
    // Set by scripts/build-cuda.mjs from the toolkit it found.
    if (env.CUDA_LLAMA_CUDA_ARCHITECTURES) args.push(`--CDCUDA_LLAMA_CUDA_ARCHITECTURES=${env.CUDA_LLAMA_CUDA_ARCHITECTURES}`);
    if (env.CUDA_LLAMA_CUDA_TOOLKIT) args.push(`--CDCUDAToolkit_ROOT=${env.CUDA_LLAMA_CUDA_TOOLKIT}`);
    if (env.CUDA_LLAMA_NVCC) args.push(`--CDCMAKE_CUDA_COMPILER=${env.CUDA_LLAMA_NVCC}`);
    if (env.CUDA_LLAMA_CUDA_RPATH) args.push(`--CDCUDA_LLAMA_CUDA_RPATH=${env.CUDA_LLAMA_CUDA_RPATH}`);
  }
  return args;
}
