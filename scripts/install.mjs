#!/usr/bin/env node
// `npm install` entry point: materialize the pinned llama.cpp, then build the addon unless the
// build folder already came from exactly these inputs.
//
// Usage: node scripts/install.mjs [--force]
//   --force                always run the (incremental) build
// Environment (scripts/build-cuda.mjs sets the CUDA ones):
//   CUDA_LLAMA_CUDA=1|0, CUDA_LLAMA_CUDA_ARCHITECTURES, CUDA_LLAMA_CUDA_TOOLKIT, CUDA_LLAMA_NVCC,
//   CUDA_LLAMA_CUDA_RPATH, CUDA_LLAMA_CPU_VARIANTS=native|all, CUDA_LLAMA_BUILD_DIR (default build)
//   CUDA_LLAMA_FROM_SOURCE=1   build even when a prebuilt binary for this platform loads
// An installed package uses a prebuilt binary (prebuilds/<platform>-<arch>, shipped in the npm
// tarball) that loads here as is: no compiler, cmake or git needed. A git checkout always builds.
// The settings of the last successful build are kept in <build>/build-settings.json, so a plain
// `npm install` after `npm run build:cuda` keeps the CUDA build; CUDA_LLAMA_CUDA=0 goes back to CPU.
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { buildDirName, cmakeJsArgs, findToolkit, repoRoot, say } from './build-common.mjs';

const require = createRequire(import.meta.url);
const force = process.argv.includes('--force');
const SETTING_NAMES = ['CUDA_LLAMA_CUDA', 'CUDA_LLAMA_CUDA_ARCHITECTURES', 'CUDA_LLAMA_CUDA_TOOLKIT', 'CUDA_LLAMA_NVCC',
  'CUDA_LLAMA_CUDA_RPATH', 'CUDA_LLAMA_CUDA_VERSION', 'CUDA_LLAMA_CPU_VARIANTS'];

/** Loads the prebuilt addon in a child process; returns null when it works here, else why not. */
function prebuildProblem(dir) {
  const addon = join(dir, 'cuda_llama.node');
  if (!existsSync(addon)) return `no prebuilt binary for ${process.platform}-${process.arch}`;
  const probe = spawnSync(process.execPath, ['-e', `const a = require(${JSON.stringify(addon)}); a.loadBackendsFromDir(${JSON.stringify(dir)}); ` +
    "if (!a.listBackends().some((b) => b.name === 'CPU')) throw new Error('no CPU backend variant fits this CPU');"], { encoding: 'utf8' });
  return probe.status === 0 ? null : (probe.stderr.split('\n').find((line) => /Error/.test(line)) ?? `exit ${probe.status}`);
}

// A git checkout is development: it builds what its sources say, whatever prebuilds lie around.
const checkout = existsSync(join(repoRoot, '.git'));
if (!force && !checkout && process.env.CUDA_LLAMA_FROM_SOURCE !== '1') {
  const prebuildDir = join(repoRoot, 'prebuilds', `${process.platform}-${process.arch}`);
  const problem = prebuildProblem(prebuildDir);
  if (problem === null) {
    const metadata = readFileSync(join(prebuildDir, 'cuda-llama-build.json'), 'utf8').replace(/\s+/g, ' ');
    say(`using the prebuilt binary in prebuilds/${process.platform}-${process.arch}: ${metadata}`);
    process.exit(0);
  }
  say(`${problem}: building from source`);
}

execFileSync(process.execPath, [join(repoRoot, 'vendor', 'materialize.mjs')], { stdio: 'inherit' });

const buildDir = join(repoRoot, buildDirName());
const settingsFile = join(buildDir, 'build-settings.json');
const previous = existsSync(settingsFile) ? JSON.parse(readFileSync(settingsFile, 'utf8')) : {};
const settings = {};
for (const name of SETTING_NAMES) {
  const value = process.env[name] ?? previous[name];
  if (value !== undefined) settings[name] = value;
}
if (settings.CUDA_LLAMA_CUDA === '0') for (const name of SETTING_NAMES.filter((n) => n.includes('CUDA_LLAMA_CUDA') || n === 'CUDA_LLAMA_NVCC')) delete settings[name];

// `cmake-js configure` + `build`, not `compile`: compile wipes the build folder after any failure,
// turning a typo into a full llama.cpp rebuild.
const args = cmakeJsArgs({ ...process.env, ...settings });
const hash = createHash('sha256');
hash.update(JSON.stringify(args));
for (const file of ['CMakeLists.txt', 'vendor/llama.cpp.pin.json']) hash.update(readFileSync(join(repoRoot, file)));
// The native sources are in the arguments already (their fingerprint, for the build metadata).
const inputsHash = hash.digest('hex');

const stampFile = join(buildDir, 'inputs.sha256');
const addon = join(buildDir, 'Release', 'cuda_llama.node');
if (!force && existsSync(addon) && existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === inputsHash) {
  say(`native build is up to date (${buildDirName()}/Release); \`npm run build:native\` forces a rebuild`);
  process.exit(0);
}

if (settings.CUDA_LLAMA_CUDA === '1') {
  say(`building with the CUDA backend (toolkit ${settings.CUDA_LLAMA_CUDA_TOOLKIT ?? 'from CMake\'s search'})`);
} else {
  const toolkit = findToolkit();
  say(toolkit
    ? `building CPU-only: a CUDA toolkit is here (${toolkit.source}: ${toolkit.root}); \`npm run build:cuda\` adds the CUDA module`
    : 'building CPU-only: no CUDA toolkit found (CUDA_PATH, nvcc on PATH, /usr/local/cuda, python3 nvidia wheels); see README "GPU set-up"');
}
say(`building the addon and llama.cpp (${args.join(' ')}); the first build takes several minutes`);
const started = Date.now();
// Configure explicitly: `cmake-js build` alone skips configuration in a configured folder, and new
// settings (CUDA on, other architectures) would be silently ignored. Configuring is incremental.
for (const command of ['configure', 'build']) {
  execFileSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), command, ...args], {
    cwd: repoRoot,
    stdio: 'inherit',
    env: { ...process.env, ...settings },
  });
}
writeFileSync(stampFile, `${inputsHash}\n`);
writeFileSync(settingsFile, `${JSON.stringify(settings, null, 2)}\n`);
say(`native build done in ${((Date.now() - started) / 1000).toFixed(0)} s: ${readFileSync(join(buildDir, 'Release', 'cuda-llama-build.json'), 'utf8').replace(/\s+/g, ' ')}`);
