#!/usr/bin/env node
// `npm install` entry point: materialize the pinned llama.cpp, then build the addon unless the
// build folder already came from exactly these inputs.
//
// Usage: node scripts/install.mjs [--force | --check]
//   --force                always run the (incremental) build
//   --check                build nothing: exit 1 with the reason and the command when the local
//                          build is missing or stale (the `predemo` and `predoctor` scripts)
// Environment (scripts/build-cuda.mjs sets the CUDA ones):
//   CUDA_LLAMA_CUDA=1|0, CUDA_LLAMA_CUDA_ARCHITECTURES, CUDA_LLAMA_CUDA_TOOLKIT, CUDA_LLAMA_NVCC,
//   CUDA_LLAMA_CUDA_RPATH, CUDA_LLAMA_CPU_VARIANTS=native|all, CUDA_LLAMA_BUILD_DIR (default build)
//   CUDA_LLAMA_FROM_SOURCE=1   build even when a prebuilt binary for this platform loads
// An installed package uses a prebuilt binary (prebuilds/<platform>-<arch>, shipped in the npm
// tarball) that loads here as is: no compiler, cmake or git needed. A git checkout always builds.
// The settings of the last successful build are kept in <build>/build-settings.json (see
// build-common.mjs buildInputs).
//
// This is where a stale local build is caught: the loader does not hash native/ at run time. A
// build is up to date when its stamp matches the hash of its inputs, which include the native/
// fingerprint; `npm test` (pretest) rebuilds a stale one, `npm run demo` and `npm run doctor`
// refuse it. An installed package's binaries are always made from its own native/.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { buildDirName, buildInputs, findToolkit, repoRoot, say } from './build-common.mjs';
import { ADDON_FILE, BUILD_INFO_FILE, INPUTS_STAMP_FILE, localBuildProblem, nativeSourcesSha256 } from './native-sources.mjs';

const require = createRequire(import.meta.url);
const force = process.argv.includes('--force');
const check = process.argv.includes('--check');

/** Loads the prebuilt addon in a child process; returns null when it works here, else why not. */
function prebuildProblem(dir) {
  const addon = join(dir, ADDON_FILE);
  if (!existsSync(addon)) return `no prebuilt binary for ${process.platform}-${process.arch}`;
  const probe = spawnSync(
    process.execPath,
    [
      '-e',
      `const a = require(${JSON.stringify(addon)}); a.loadBackendsFromDir(${JSON.stringify(dir)}); ` +
        "if (!a.listBackends().some((b) => b.name === 'CPU')) throw new Error('no CPU backend variant fits this CPU');",
    ],
    { encoding: 'utf8' },
  );
  return probe.status === 0 ? null : (probe.stderr.split('\n').find((line) => /Error/.test(line)) ?? `exit ${probe.status}`);
}

// A git checkout is development: it builds what its sources say, whatever prebuilds lie around.
const checkout = existsSync(join(repoRoot, '.git'));
if (check) process.exit(checkBuild());
if (!force && !checkout && process.env.CUDA_LLAMA_FROM_SOURCE !== '1') {
  const prebuildDir = join(repoRoot, 'prebuilds', `${process.platform}-${process.arch}`);
  const problem = prebuildProblem(prebuildDir);
  if (problem === null) {
    const metadata = readFileSync(join(prebuildDir, BUILD_INFO_FILE), 'utf8').replace(/\s+/g, ' ');
    say(`using the prebuilt binary in prebuilds/${process.platform}-${process.arch}: ${metadata}`);
    process.exit(0);
  }
  say(`${problem}: building from source`);
}

execFileSync(process.execPath, [join(repoRoot, 'vendor', 'materialize.mjs')], { stdio: 'inherit' });

const { buildDir, settingsFile, settings, args, inputsHash } = buildInputs();
const problem = localBuildProblem(buildDir, inputsHash, nativeSourcesSha256(repoRoot));
if (!force && problem === null) {
  say(`native build is up to date (${buildDirName()}/Release); \`npm run build:native\` forces a rebuild`);
  process.exit(0);
}
if (problem !== null) say(`${problem}: building`);

if (settings.CUDA_LLAMA_CUDA === '1') {
  say(`building with the CUDA backend (toolkit ${settings.CUDA_LLAMA_CUDA_TOOLKIT ?? "from CMake's search"})`);
} else {
  const toolkit = findToolkit();
  say(
    toolkit
      ? `building CPU-only: a CUDA toolkit is here (${toolkit.source}: ${toolkit.root}); \`npm run build:cuda\` adds the CUDA module`
      : 'building CPU-only: no CUDA toolkit found (CUDA_PATH, nvcc on PATH, /usr/local/cuda, python3 nvidia wheels); see README "GPU set-up"',
  );
}
say(`building the addon and llama.cpp (${args.join(' ')}); the first build takes several minutes`);
const started = Date.now();
// `cmake-js configure` + `build`, not `compile`: compile wipes the build folder after any failure,
// turning a typo into a full llama.cpp rebuild. Configure explicitly: `cmake-js build` alone skips configuration in a configured folder, and new
// settings (CUDA on, other architectures) would be silently ignored. Configuring is incremental.
for (const command of ['configure', 'build']) {
  execFileSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), command, ...args], {
    cwd: repoRoot,
    stdio: 'inherit',
    env: { ...process.env, ...settings },
  });
}
writeFileSync(join(buildDir, INPUTS_STAMP_FILE), `${inputsHash}\n`);
writeFileSync(settingsFile, `${JSON.stringify(settings, null, 2)}\n`);
say(
  `native build done in ${((Date.now() - started) / 1000).toFixed(0)} s: ${readFileSync(join(buildDir, 'Release', BUILD_INFO_FILE), 'utf8').replace(/\s+/g, ' ')}`,
);

/** --check: 0 when the local build is what its inputs make, else 1 after saying why and what to run. */
function checkBuild() {
  // An installed package runs the binary its install chose; an explicit folder is the user's choice.
  if (!checkout) return 0;
  if (process.env.CUDA_LLAMA_BINARY_DIR) {
    say(`CUDA_LLAMA_BINARY_DIR=${process.env.CUDA_LLAMA_BINARY_DIR}: not checking ${buildDirName()}/`);
    return 0;
  }
  const { buildDir, inputsHash } = buildInputs();
  const problem = localBuildProblem(buildDir, inputsHash, nativeSourcesSha256(repoRoot));
  if (problem === null) return 0;
  say(`${problem}. Build it from the current sources: \`npm run build:native\` (or \`npm install\`)`);
  return 1;
}
