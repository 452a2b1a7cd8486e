// Shared by the build scripts: where the repo is, the one list of cmake-js arguments, and the
// inputs a build is made from (whose hash says whether a build folder is up to date).
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
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
  // Recorded in the build metadata; install.mjs compares it with native/ (scripts/native-sources.mjs).
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

const SETTING_NAMES = [
  'CUDA_LLAMA_CUDA',
  'CUDA_LLAMA_CUDA_ARCHITECTURES',
  'CUDA_LLAMA_CUDA_TOOLKIT',
  'CUDA_LLAMA_NVCC',
  'CUDA_LLAMA_CUDA_RPATH',
  'CUDA_LLAMA_CUDA_VERSION',
  'CUDA_LLAMA_CPU_VARIANTS',
];

/**
 * What a build in the environment's build folder is made from: the settings (the environment's,
 * else those of the folder's last build, kept in build-settings.json, so a plain `npm install`
 * after `npm run build:cuda` keeps the CUDA build; CUDA_LLAMA_CUDA=0 goes back to CPU), the
 * cmake-js arguments, and a hash over both plus CMakeLists.txt and the llama.cpp pin. The native
 * sources are in the arguments already (their fingerprint, for the build metadata).
 */
export function buildInputs(env = process.env) {
  const buildDir = join(repoRoot, buildDirName(env));
  const settingsFile = join(buildDir, 'build-settings.json');
  const previous = existsSync(settingsFile) ? JSON.parse(readFileSync(settingsFile, 'utf8')) : {};
  const settings = {};
  for (const name of SETTING_NAMES) {
    const value = env[name] ?? previous[name];
    if (value !== undefined) settings[name] = value;
  }
  if (settings.CUDA_LLAMA_CUDA === '0')
    for (const name of SETTING_NAMES.filter((n) => n.includes('CUDA_LLAMA_CUDA') || n === 'CUDA_LLAMA_NVCC')) delete settings[name];
  const args = cmakeJsArgs({ ...env, ...settings });
  const hash = createHash('sha256');
  hash.update(JSON.stringify(args));
  for (const file of ['CMakeLists.txt', 'vendor/llama.cpp.pin.json']) hash.update(readFileSync(join(repoRoot, file)));
  return { buildDir, settingsFile, settings, args, inputsHash: hash.digest('hex') };
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
