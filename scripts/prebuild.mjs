#!/usr/bin/env node
// npm run prebuild: builds the portable CPU binary set into prebuilds/<platform>-<arch>/ (git-ignored;
// it goes into the packed tarball). prebuildify's folder convention, our own copy step: prebuildify
// copies only the .node file, and ours needs its libllama/libggml siblings ($ORIGIN run path).
//
//   node scripts/prebuild.mjs [--cpu-variants all|native]
//
// "all" (default) builds every x86 CPU variant as a backend module; ggml picks the best one for the
// CPU it runs on. "native" is for quick local checks only: it runs on CPUs like this one.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, say } from './build-common.mjs';

const argv = process.argv.slice(2);
const variants = argv.includes('--cpu-variants') ? argv[argv.indexOf('--cpu-variants') + 1] : 'all';
const buildDirName = `build-prebuild-${variants}`;
const platformDir = join(repoRoot, 'prebuilds', `${process.platform}-${process.arch}`);

say(`building the ${variants === 'all' ? 'portable (all CPU variants)' : 'native-CPU'} binary set in ${buildDirName}/`);
execFileSync(process.execPath, [join(repoRoot, 'scripts', 'install.mjs')], {
  stdio: 'inherit',
  env: { ...process.env, CUDA_LLAMA_BUILD_DIR: buildDirName, CUDA_LLAMA_CPU_VARIANTS: variants, CUDA_LLAMA_CUDA: '0', CUDA_LLAMA_FROM_SOURCE: '1' },
});

const release = join(repoRoot, buildDirName, 'Release');
// What the addon needs at run time: itself, the libraries under their sonames (what DT_NEEDED
// names), the backend modules, and the build metadata. Not llama.cpp's tools or their libraries.
const wanted = (name) => name === 'cuda_llama.node' || name === 'cuda-llama-build.json'
  || /^lib(llama|llama-common|ggml|ggml-base)\.so\.\d+$/.test(name) || /^libggml-(cpu|cuda)[\w-]*\.so$/.test(name);
rmSync(platformDir, { recursive: true, force: true });
mkdirSync(platformDir, { recursive: true });
const copied = [];
for (const name of readdirSync(release).filter(wanted).sort()) {
  copyFileSync(join(release, name), join(platformDir, name)); // follows symlinks: one real file per soname
  copied.push(`${name} (${(lstatSync(join(platformDir, name)).size / 2 ** 20).toFixed(1)} MiB)`);
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
