// What the released CUDA module package is: its one architecture list, its families (for split
// packages), its names and folders, the driver it needs, and how its folder is made from a CUDA
// build (shared by `npm run release:cuda` and `npm run prebuild -- --cuda`).
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './build-common.mjs';

/**
 * The release build's CMAKE_CUDA_ARCHITECTURES, in order (the joined list is part of the build's
 * inputs: the same list resumes the same build). SASS for every family, so no GPU pays a
 * first-load PTX JIT (minutes for ggml's kernels) or depends on the driver's JIT; one PTX,
 * compute_100, for devices newer than the SASS covers. ggml's CMake rewrites 12X to 12Xa
 * (arch-specific, for Blackwell's FP4 tensor-core instructions), and an sm_12Xa cubin runs on
 * exactly that compute capability, so 120 and 121 each get their own.
 * `family` is the split package the entry goes to when one package is too big.
 * @type {readonly { spec: string, family: string, gpus: string, why: string }[]}
 */
export const RELEASE_CUDA_ARCHITECTURES = [
  { spec: '75-real', family: 'sm75-89', gpus: 'Turing: T4, RTX 20', why: 'SASS sm_75; the oldest architecture CUDA 13 supports' },
  { spec: '80-real', family: 'sm75-89', gpus: 'Ampere: A100, A30', why: 'SASS sm_80' },
  { spec: '86-real', family: 'sm75-89', gpus: 'Ampere: RTX 30, A10, A40', why: 'SASS sm_86' },
  { spec: '89-real', family: 'sm75-89', gpus: 'Ada: L4, L40S, RTX 40', why: 'SASS sm_89 (FP8); sm_86 would run, slower' },
  { spec: '90-real', family: 'sm90-121', gpus: 'Hopper: H100, H200, GH200', why: 'SASS sm_90' },
  {
    spec: '100',
    family: 'sm90-121',
    gpus: 'Blackwell: B200, GB200',
    why: 'SASS sm_100 (10.x devices run it), and the one PTX: compute_100, compiled by the driver for newer devices (sm_110, 12.x past 12.1, later generations)',
  },
  { spec: '120-real', family: 'sm90-121', gpus: 'Blackwell: RTX 50, RTX PRO 6000', why: 'SASS sm_120a (ggml rewrites 120 to 120a)' },
  { spec: '121-real', family: 'sm90-121', gpus: 'Blackwell: DGX Spark (GB10)', why: 'SASS sm_121a: an sm_120a cubin does not run on 12.1' },
];

/** The families of the split packages, in list order. */
export const CUDA_FAMILIES = [...new Set(RELEASE_CUDA_ARCHITECTURES.map((a) => a.family))];

/** The architecture list (CMake's form, `;`-joined) of the whole release or of one family. */
export function releaseArchitectureList(family = null) {
  const entries = RELEASE_CUDA_ARCHITECTURES.filter((a) => family === null || a.family === family);
  if (entries.length === 0) throw new RangeError(`family must be one of ${CUDA_FAMILIES.join(', ')}, got ${family}`);
  return entries.map((a) => a.spec).join(';');
}

/**
 * Parses a CMAKE_CUDA_ARCHITECTURES list ("75-real;100;120-real"): "N" is SASS and PTX, "N-real"
 * SASS only, "N-virtual" PTX only. With `ggml` (the default), 12X without a suffix becomes 12Xa,
 * as ggml's CMake rewrites it (ggml/src/ggml-cuda/CMakeLists.txt at our pin). A release names its
 * architectures: "native", "all" and "all-major" are refused.
 * @param {string} list
 * @param {{ ggml?: boolean }} [options]
 * @returns {{ spec: string, arch: number, variant?: 'a' | 'f', sass: boolean, ptx: boolean }[]}
 */
export function parseCudaArchitectures(list, { ggml = true } = {}) {
  const seen = new Set();
  return list.split(';').map((entry) => {
    const spec = entry.trim();
    const match = /^(\d{2,3})([af]?)(-real|-virtual)?$/.exec(spec);
    if (!match) {
      throw new RangeError(
        `CUDA architecture list: expected entries like 90, 90-real, 90-virtual or 120a-real, got '${spec}' in '${list}'` +
          (/^(native|all|all-major)$/.test(spec) ? ' (a release names its architectures)' : ''),
      );
    }
    const arch = Number(match[1]);
    const variant = /** @type {'a' | 'f' | undefined} */ (match[2] || (ggml && arch >= 120 && arch <= 129 ? 'a' : undefined));
    const key = `${arch}${variant ?? ''}`;
    if (seen.has(key)) throw new RangeError(`CUDA architecture list: ${key} appears twice in '${list}'`);
    seen.add(key);
    return { spec, arch, ...(variant ? { variant } : {}), sass: match[3] !== '-virtual', ptx: match[3] !== '-real' };
  });
}

/**
 * The images nvcc writes into each code unit's fatbin for an architecture list (entries of
 * RELEASE_CUDA_ARCHITECTURES, or CMake's `;`-joined form), after ggml's 12X rewrite: a cubin per
 * SASS entry and PTX of `ptxIsa` (the toolkit's: 9.0 for CUDA 13.0) per PTX entry.
 * @param {readonly { spec: string }[] | string} architectures
 * @param {string} ptxIsa
 */
export function imagesForArchitectures(architectures, ptxIsa) {
  const list = typeof architectures === 'string' ? architectures : architectures.map((a) => a.spec).join(';');
  return parseCudaArchitectures(list).flatMap(({ arch, variant, sass, ptx }) => {
    const v = variant ? { variant } : {};
    return [
      ...(sass ? [{ kind: /** @type {const} */ ('sass'), arch, ...v }] : []),
      ...(ptx ? [{ kind: /** @type {const} */ ('ptx'), arch, ptxIsa, ...v }] : []),
    ];
  });
}

/**
 * Above this a package is split by family: the registry refuses tarballs of about 200 MB and
 * over in practice, and every user downloads the whole package for one GPU's code.
 */
export const TARBALL_LIMIT_BYTES = 200 * 2 ** 20;

const platformArch = `${process.platform}-${process.arch}`;
/** `@cuda-llama/linux-x64-cuda13` (lib/binding/load-native.ts CUDA_PACKAGE), or a family's `-sm75-89` one. */
export const cudaPackageName = (family = null) => `@cuda-llama/${platformArch}-cuda13${family ? `-${family}` : ''}`;
/** prebuilds/linux-x64-cuda13[-family]: the package folder (git-ignored). */
export const cudaPackageDir = (family = null) => join(repoRoot, 'prebuilds', `${platformArch}-cuda13${family ? `-${family}` : ''}`);
/** The release build folder, relative to the repo: one per package, so each resumes on its own. */
export const releaseBuildDirName = (family = null) => `build-release-cuda13${family ? `-${family}` : ''}`;

/**
 * Makes the package folder `dir` from the CUDA build in `from` (a folder name under the repo):
 * libggml-cuda.so (stripped unless `strip` is false: the static symbol table only names functions
 * in a backtrace; `.nv_fatbin` is an allocated section, which strip keeps), its build metadata,
 * package.json and README (`gpus` and `driver`, the oldest Linux driver, go into the README). Throws
 * when the build is not a CUDA 13 build of the pinned llama.cpp.
 * @param {{ from: string, name?: string, dir?: string, strip?: boolean, gpus?: string, driver?: string }} options
 * @returns {{ name: string, version: string, dir: string, source: string, module: string, metadata: Record<string, any>, stripped: boolean }}
 */
export function packageCudaModule({ from, name = cudaPackageName(), dir = cudaPackageDir(), strip = true, gpus, driver }) {
  const release = join(repoRoot, from, 'Release');
  const source = join(release, 'libggml-cuda.so');
  const metadataPath = join(release, 'cuda-llama-build.json');
  if (!existsSync(source) || !existsSync(metadataPath)) {
    throw new Error(`${from}/Release has no CUDA build (libggml-cuda.so and cuda-llama-build.json): run \`npm run build:cuda\` first`);
  }
  const metadata = JSON.parse(readFileSync(metadataPath, 'utf8'));
  const pin = JSON.parse(readFileSync(join(repoRoot, 'vendor', 'llama.cpp.pin.json'), 'utf8'));
  if (metadata.variant !== 'cuda' || metadata.llamaCppCommit !== pin.commit) {
    throw new Error(
      `${from}/Release is a ${metadata.variant} build of llama.cpp ${metadata.llamaCppCommit}; the pin is ${pin.commit}: rebuild with \`npm run build:cuda\``,
    );
  }
  if (String(metadata.cudaCompilerVersion ?? '').split('.')[0] !== '13') {
    throw new Error(`the CUDA build used CUDA ${metadata.cudaCompilerVersion}; the package is named for CUDA 13`);
  }
  const root = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const module = join(dir, 'libggml-cuda.so');
  copyFileSync(source, module);
  let stripped = false;
  if (strip) {
    const result = spawnSync('strip', ['--strip-all', module], { encoding: 'utf8' });
    if (/** @type {NodeJS.ErrnoException | undefined} */ (result.error)?.code === 'ENOENT')
      throw new Error('strip is not on PATH (binutils): install binutils, or pack unstripped with strip: false');
    if (result.status !== 0) throw new Error(`strip --strip-all ${module} failed: ${result.stderr || result.error?.message}`);
    stripped = true;
  }
  writeFileSync(join(dir, 'cuda-llama-build.json'), `${JSON.stringify({ ...metadata, prebuild: true }, null, 2)}\n`);
  // Same version as cuda-llama: the loader also checks the llama.cpp commit, so a mismatched pair is refused, never loaded.
  const description = `The CUDA ${metadata.cudaCompilerVersion} backend module for cuda-llama ${root.version} (architectures ${metadata.cudaArchitectures})`;
  const manifest = {
    name,
    version: root.version,
    description,
    license: root.license,
    os: [process.platform],
    cpu: [process.arch],
    files: ['libggml-cuda.so', 'cuda-llama-build.json'],
  };
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(
    join(dir, 'README.md'),
    `# ${name}\n\nThe CUDA backend module of cuda-llama ${root.version}, built from llama.cpp ${metadata.llamaCppCommit.slice(0, 12)} ` +
      `with CUDA ${metadata.cudaCompilerVersion} for architectures ${metadata.cudaArchitectures}${gpus ? ` (${gpus})` : ''}. ` +
      `Install it next to cuda-llama: \`npm install ${name}\`. It needs an NVIDIA driver for CUDA 13${driver ? ` (Linux ${driver} or newer)` : ''} ` +
      "and the CUDA 13 runtime and cuBLAS (see cuda-llama's docs/install.md).\n",
  );
  return { name, version: root.version, dir, source, module, metadata, stripped };
}
