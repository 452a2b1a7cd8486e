#!/usr/bin/env node
// npm run prebuild: builds the portable CPU binary set into prebuilds/<platform>-<arch>/ (git-ignored;
// it goes into the packed tarball). The folder follows prebuildify's convention; the steps are our
// own (docs/architecture.md, Dependencies): the set is built by install.mjs in a folder of its own,
// and is the addon, its libllama/libggml siblings under their sonames ($ORIGIN run path), the CPU
// backend modules and the build metadata, each stripped as `prebuildify --strip` would.
//
//   node scripts/prebuild.mjs [--cpu-variants all|native]
//   node scripts/prebuild.mjs --cuda [--from build]
//
// "all" (default) builds every x86 CPU variant as a backend module; ggml picks the best one for the
// CPU it runs on. "native" is for quick local checks only: it runs on CPUs like this one.
//
// --cuda packages the CUDA backend module of a CUDA build (`npm run build:cuda`, default folder
// build/) as the optional npm package @cuda-llama/<platform>-<arch>-cuda13 in
// prebuilds/<platform>-<arch>-cuda13/: the CUDA module is tens of MiB per architecture, too big
// for the main tarball (the registry refuses packages of about 200 MB and over), and only GPU users need it.
// The folder is made by scripts/cuda-release.mjs packageCudaModule; `npm run release:cuda` builds
// the release architecture list, packs it and writes its manifest (scripts/release-cuda.ts).
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { repoRoot, say } from './build-common.mjs';
import { packageCudaModule } from './cuda-release.mjs';

const argv = process.argv.slice(2);
if (argv.includes('--cuda')) {
  try {
    const from = argv.includes('--from') ? argv[argv.indexOf('--from') + 1] : 'build';
    const pkg = packageCudaModule({ from });
    say(
      `${relative(repoRoot, pkg.dir)}: ${pkg.name}@${pkg.version}, libggml-cuda.so ${(lstatSync(pkg.module).size / 2 ** 20).toFixed(1)} MiB (stripped), architectures ${pkg.metadata.cudaArchitectures}`,
    );
  } catch (error) {
    say(error.message);
    process.exit(1);
  }
  process.exit(0);
}
const variants = argv.includes('--cpu-variants') ? argv[argv.indexOf('--cpu-variants') + 1] : 'all';
const buildDirName = `build-prebuild-${variants}`;
const platformDir = join(repoRoot, 'prebuilds', `${process.platform}-${process.arch}`);

say(`building the ${variants === 'all' ? 'portable (all CPU variants)' : 'native-CPU'} binary set in ${buildDirName}/`);
execFileSync(process.execPath, [join(repoRoot, 'scripts', 'install.mjs')], {
  stdio: 'inherit',
  env: {
    ...process.env,
    CUDA_LLAMA_BUILD_DIR: buildDirName,
    CUDA_LLAMA_CPU_VARIANTS: variants,
    CUDA_LLAMA_CUDA: '0',
    CUDA_LLAMA_FROM_SOURCE: '1',
  },
});

const release = join(repoRoot, buildDirName, 'Release');
// What the addon needs at run time: itself, the libraries under their sonames (what DT_NEEDED
// names), the backend modules, and the build metadata. Not llama.cpp's tools or their libraries.
const wanted = (name) =>
  name === 'cuda_llama.node' ||
  name === 'cuda-llama-build.json' ||
  /^lib(llama|llama-common|ggml|ggml-base)\.so\.\d+$/.test(name) ||
  /^libggml-(cpu|cuda|rpc)[\w-]*\.so$/.test(name);
rmSync(platformDir, { recursive: true, force: true });
mkdirSync(platformDir, { recursive: true });
const copied = [];
let strip = true;
for (const name of readdirSync(release).filter(wanted).sort()) {
  const target = join(platformDir, name);
  copyFileSync(join(release, name), target); // follows symlinks: one real file per soname
  // The static symbol table only names functions in a backtrace; the dynamic one, which loading
  // and ggml's backend lookup use, stays.
  if (strip && name !== 'cuda-llama-build.json') {
    const result = spawnSync('strip', ['--strip-all', target], { encoding: 'utf8' });
    if (/** @type {NodeJS.ErrnoException | undefined} */ (result.error)?.code === 'ENOENT') {
      say('strip is not on PATH (binutils): the binaries are packed unstripped');
      strip = false;
    } else if (result.status !== 0) {
      throw new Error(`strip --strip-all ${target} failed: ${result.stderr || result.error?.message}`);
    }
  }
  copied.push(`${name} (${(lstatSync(target).size / 2 ** 20).toFixed(1)} MiB)`);
}
const metadata = JSON.parse(readFileSync(join(platformDir, 'cuda-llama-build.json'), 'utf8'));
writeFileSync(join(platformDir, 'cuda-llama-build.json'), `${JSON.stringify({ ...metadata, prebuild: true }, null, 2)}\n`);

// The doctor's probe model needs llama.cpp's vocabulary; the packed package has no vendor/ folder.
const vocab = join(repoRoot, 'vendor', 'llama.cpp', 'models', 'ggml-vocab-llama-spm.gguf');
if (existsSync(vocab)) {
  mkdirSync(join(repoRoot, 'assets'), { recursive: true });
  copyFileSync(vocab, join(repoRoot, 'assets', 'ggml-vocab-llama-spm.gguf'));
}
say(`prebuilds/${process.platform}-${process.arch}: ${copied.join(', ')}`);
