#!/usr/bin/env node
// npm run build:cuda: builds the CUDA backend module (libggml-cuda.so) next to the addon, with a
// CUDA toolkit found on this machine. Search order, first hit wins:
//   1. CUDA_PATH / CUDA_HOME            (a system toolkit the user points at)
//   2. nvcc on PATH                     (its parent folder is the toolkit)
//   3. /usr/local/cuda
//   4. PyPI wheels in python3's site-packages: nvidia/cu13 (nvidia-cuda-nvcc, -runtime, -cublas, ...)
//   5. build/cuda-wheels/nvidia/cu13    (what --install-wheels puts there)
// Usage: node scripts/build-cuda.mjs [--arch 90] [--install-wheels]
//   --arch LIST        CMAKE_CUDA_ARCHITECTURES, e.g. 90 or "86-real;90-real" (default: Turing..Blackwell)
//   --install-wheels   pip-install the CUDA 13.0 wheels into build/cuda-wheels first (PyPI only)
// Release builds (the published @cuda-llama/linux-x64-cuda13 package): `npm run release:cuda`
// (scripts/release-cuda.ts), which runs this script with the release architecture list, resumably.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildDirName, findToolkit, repoRoot, say } from './build-common.mjs';

const CUDA_VERSION = '13.0';
const WHEELS = ['nvidia-cuda-nvcc', 'nvidia-cuda-runtime', 'nvidia-cublas', 'nvidia-cuda-cccl', 'nvidia-nvvm', 'nvidia-cuda-crt'].map(
  (name) => `${name}==${CUDA_VERSION}.*`,
);

const argv = process.argv.slice(2);
const archIndex = argv.indexOf('--arch');
const arch = archIndex >= 0 ? argv[archIndex + 1] : undefined;
const wheelDir = join(repoRoot, buildDirName(), 'cuda-wheels');

/**
 * The wheels are a toolkit without unversioned library links, without static runtime archives and
 * without a libcuda stub; and nvcc finds its libraries relative to its own real location. So the
 * shim is a toolkit root of its own: a copy of nvcc and its profile (so $(TOP) is the shim), links
 * to everything else, and the missing link-time pieces.
 */
function wheelShim(root) {
  const shim = join(repoRoot, buildDirName(), 'cuda-toolkit');
  rmSync(shim, { recursive: true, force: true });
  mkdirSync(join(shim, 'bin'), { recursive: true });
  mkdirSync(join(shim, 'lib64', 'stubs'), { recursive: true });
  for (const entry of readdirSync(join(root, 'bin'))) {
    if (entry === 'nvcc' || entry === 'nvcc.profile') copyFileSync(join(root, 'bin', entry), join(shim, 'bin', entry));
    else symlinkSync(join(root, 'bin', entry), join(shim, 'bin', entry));
  }
  chmodSync(join(shim, 'bin', 'nvcc'), 0o755);
  for (const dir of ['include', 'nvvm']) if (existsSync(join(root, dir))) symlinkSync(join(root, dir), join(shim, dir));
  for (const file of readdirSync(join(root, 'lib'))) {
    symlinkSync(join(root, 'lib', file), join(shim, 'lib64', file));
    const unversioned = file.replace(/\.so\.\d+(\.\d+)*$/, '.so');
    if (unversioned !== file && !existsSync(join(shim, 'lib64', unversioned)))
      symlinkSync(join(root, 'lib', file), join(shim, 'lib64', unversioned));
  }
  // nvcc links -lcudart_static -lcudadevrt by default (CMake's compiler check does too). The wheels
  // ship only the shared runtime: a GNU ld linker script named like the archive points at it, and
  // ggml uses no relocatable device code, so an empty device-runtime archive stands in.
  const cudart = readdirSync(join(root, 'lib')).find((f) => /^libcudart\.so\.\d+$/.test(f));
  if (cudart) writeFileSync(join(shim, 'lib64', 'libcudart_static.a'), `INPUT(${join(root, 'lib', cudart)})\n`);
  writeFileSync(join(shim, 'lib64', 'libcudadevrt.a'), '!<arch>\n');
  // libggml-cuda links the driver API (VMM). The real libcuda.so.1 comes with the NVIDIA driver at
  // run time; to link without one, an empty stub with the same soname stands in, as the toolkit's own stubs do.
  const stubSource = join(shim, 'lib64', 'stubs', 'cuda-stub.c');
  writeFileSync(stubSource, '/* link-time stand-in for the NVIDIA driver library */\n');
  execFileSync('cc', ['-shared', '-fPIC', '-Wl,-soname,libcuda.so.1', '-o', join(shim, 'lib64', 'stubs', 'libcuda.so'), stubSource]);
  return shim;
}

if (argv.includes('--install-wheels')) {
  say(`installing the CUDA ${CUDA_VERSION} wheels from PyPI into ${wheelDir}`);
  execFileSync('python3', ['-m', 'pip', 'install', '--quiet', '--no-deps', '--target', wheelDir, ...WHEELS], { stdio: 'inherit' });
}

const toolkit = findToolkit(process.env, wheelDir);
if (!toolkit) {
  say('no CUDA toolkit found (CUDA_PATH, CUDA_HOME, nvcc on PATH, /usr/local/cuda, python3 nvidia wheels).');
  say(
    `install one: \`npm run build:cuda -- --install-wheels\` (PyPI: ${WHEELS.join(' ')}), or the CUDA toolkit ${CUDA_VERSION}, then run this again.`,
  );
  process.exit(1);
}
const isWheel = !existsSync(join(toolkit.root, 'lib64')) && existsSync(join(toolkit.root, 'lib'));
const toolkitRoot = isWheel ? wheelShim(toolkit.root) : toolkit.root;
const nvcc = join(toolkitRoot, 'bin', 'nvcc');
const version = execFileSync(nvcc, ['--version'], { encoding: 'utf8' }).match(/release ([\d.]+)/)?.[1] ?? 'unknown';
say(`CUDA toolkit ${version} from ${toolkit.source}: ${toolkit.root}${isWheel ? ` (wheel layout, shim in ${toolkitRoot})` : ''}`);
say(`CUDA architectures: ${arch ?? 'default list (Turing through Blackwell)'}; this build takes a while (ggml's CUDA kernels are many)`);

const env = {
  ...process.env,
  CUDA_LLAMA_CUDA: '1',
  CUDA_LLAMA_CUDA_TOOLKIT: toolkitRoot,
  CUDA_LLAMA_NVCC: nvcc,
  CUDA_LLAMA_CUDA_VERSION: version,
  // Local builds find the runtime libraries where they were built from, with no LD_LIBRARY_PATH.
  CUDA_LLAMA_CUDA_RPATH: join(toolkit.root, isWheel ? 'lib' : 'lib64'),
  ...(arch ? { CUDA_LLAMA_CUDA_ARCHITECTURES: arch } : {}),
  PATH: `${join(toolkit.root, 'bin')}:${process.env.PATH}`,
};
const result = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'install.mjs'), '--force'], { stdio: 'inherit', env });
process.exit(result.status ?? 1);
