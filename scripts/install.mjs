#!/usr/bin/env node
// `npm install` entry point: materialize the pinned llama.cpp, then build the addon unless the
// build in build/Release already came from exactly these inputs.
//
// Usage: node scripts/install.mjs [--force]
//   --force                always run the (incremental) build
// Environment:
//   CUDA_LLAMA_CUDA=1      build the CUDA backend module too (see scripts/build-cuda.mjs)
//   CUDA_LLAMA_CPU_VARIANTS=native|all
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { repoRoot, say, cmakeJsArgs } from './build-common.mjs';

const require = createRequire(import.meta.url);
const force = process.argv.includes('--force');

execFileSync(process.execPath, [join(repoRoot, 'vendor', 'materialize.mjs')], { stdio: 'inherit' });

// `cmake-js build`, not `compile`: compile wipes the build folder after any failure, turning a
// typo into a full llama.cpp rebuild.
const args = cmakeJsArgs();
const hash = createHash('sha256');
hash.update(JSON.stringify(args));
for (const file of ['CMakeLists.txt', 'vendor/llama.cpp.pin.json']) hash.update(readFileSync(join(repoRoot, file)));
for (const file of readdirSync(join(repoRoot, 'native')).sort()) hash.update(file).update(readFileSync(join(repoRoot, 'native', file)));
const inputsHash = hash.digest('hex');

const stampFile = join(repoRoot, 'build', 'inputs.sha256');
const addon = join(repoRoot, 'build', 'Release', 'cuda_llama.node');
if (!force && existsSync(addon) && existsSync(stampFile) && readFileSync(stampFile, 'utf8').trim() === inputsHash) {
  say('native build is up to date (build/Release); `npm run build` forces a rebuild');
  process.exit(0);
}

say(`building the addon and llama.cpp (${args.join(' ')}); the first build takes several minutes`);
const started = Date.now();
execFileSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'build', ...args], {
  cwd: repoRoot,
  stdio: 'inherit',
});
writeFileSync(stampFile, `${inputsHash}\n`);
say(`native build done in ${((Date.now() - started) / 1000).toFixed(0)} s: ${readFileSync(join(repoRoot, 'build', 'Release', 'cuda-llama-build.json'), 'utf8').replace(/\s+/g, ' ')}`);
