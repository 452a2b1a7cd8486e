#!/usr/bin/env node
// Packs what a session on a lent GPU host needs into .carry/ (git-ignored), within the device
// tool's 64 MiB carry limit. That host has the CUDA wheels, cmake and ninja, but maybe no Node.js
// and no registry, and git-ignored folders (vendor source, node_modules) reach it only when carried.
//
//   node scripts/gpu-carry.mjs [--no-cuda-package] [--no-node-llama-cpp]
//
//   .carry/node.tar.xz          this machine's node, npm and npx (bin/, lib/node_modules/npm)
//   .carry/llama.tar.xz         vendor/llama.cpp, verified and stamped, without .git, docs, the
//                               server and its UI, and the vocab files the tests do not use
//   .carry/node_modules.tar.xz  the dev dependencies (tsx, vitest, cmake-js, node-addon-api, ...)
//   .carry/npm-cache.tar.xz     an npm cache holding the package's runtime dependencies: the host
//                               has no registry, and test-pack installs the packed tarball into an
//                               empty project, which npm can then do offline
//   .carry/npm-registry.txt     the registry that cache was filled from: npm keys its cache by URL,
//                               so the offline install must name the same one
//   .carry/cuda13.tar.xz        the optional CUDA package (prebuilds/<platform>-<arch>-cuda13, from
//                               `npm run prebuild -- --cuda`), when it was built from the pinned
//                               llama.cpp: with it the host skips the CUDA compile (minutes of its
//                               30-minute budget). --no-cuda-package leaves it out.
//   .carry-nlc/node-llama-cpp.tar.xz
//                               node-llama-cpp's benchmark install with its CUDA package, the
//                               module's GPU code zeroed (test/bench/carry-node-llama-cpp.ts):
//                               the GPU benchmark then runs the three-way comparison on the host.
//                               Installs it first (from the npm registry). A folder of its own
//                               because .carry with the CUDA package is close to the limit already: the
//                               `bench` call carries only .carry-nlc, onto the machine `setup`
//                               left warm. --no-node-llama-cpp leaves it out.
//
// scripts/gpu-session.sh unpacks and uses these on the host (CONTRIBUTING.md, "GPU sessions").
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { repoRoot, say } from './build-common.mjs';

const CARRY_LIMIT_BYTES = 64 * 2 ** 20;
const carry = join(repoRoot, '.carry');
const withCudaPackage = !process.argv.includes('--no-cuda-package');
const withNodeLlamaCpp = !process.argv.includes('--no-node-llama-cpp');
const pin = JSON.parse(readFileSync(join(repoRoot, 'vendor', 'llama.cpp.pin.json'), 'utf8'));

function tarXz(output, args, cwd = repoRoot) {
  // -T0: xz on every core; -9 keeps the node binary and node_modules small enough to fit.
  execFileSync('tar', ['-cf', output, '--use-compress-program=xz -9 -T0', ...args], { cwd, stdio: 'inherit' });
}

rmSync(carry, { recursive: true, force: true });
mkdirSync(carry);

say('verifying vendor/llama.cpp (and writing its stamp, which install.mjs accepts on the host)');
execFileSync(process.execPath, [join(repoRoot, 'vendor', 'materialize.mjs')], { stdio: 'inherit' });

// node with npm and npx beside it, as installed (bin/ and lib/node_modules/npm under one prefix):
// the runbook calls npx, and test-pack finds npm relative to the node binary.
const prefix = dirname(dirname(process.execPath));
const npmFiles = ['bin/npm', 'bin/npx', 'lib/node_modules/npm'];
const missingNpm = npmFiles.filter((f) => !existsSync(join(prefix, f)));
if (missingNpm.length)
  throw new Error(`node at ${process.execPath} has no ${missingNpm.join(', ')} under ${prefix}: carry a Node.js install that has npm`);
say(`packing node ${process.version} and npm from ${prefix}`);
tarXz(join(carry, 'node.tar.xz'), [relative(prefix, process.execPath), ...npmFiles], prefix);

say('packing vendor/llama.cpp');
// Left out: what no target of ours configures or builds (docs, media, benchmark logs, CI files,
// the server's and web UI's tests) and every vocab file but those the synthetic models use
// (llama-spm; bert-bge and qwen2 for the embedding and reranker shapes) and their test texts. tools/server and tools/ui stay: CMakeLists.txt configures them (llama-server for the
// serving benchmarks), and the UI's asset step reads its sources list even without the UI.
tarXz(join(carry, 'llama.tar.xz'), [
  ...[
    '.git',
    '.github',
    'docs',
    'media',
    'benches',
    'tools/server/tests',
    'tools/server/bench',
    'tools/ui/tests',
    'models/ggml-vocab-[ac-km-pr-z]*',
    'models/ggml-vocab-baichuan*',
    'models/ggml-vocab-qwen35*',
    'models/ggml-vocab-*.inp',
    'models/ggml-vocab-*.out',
    'models/ggml-vocab-llama-bpe*',
  ].map((path) => `--exclude=vendor/llama.cpp/${path}`),
  'vendor/llama.cpp',
]);

say('packing node_modules');
tarXz(join(carry, 'node_modules.tar.xz'), ['node_modules']);

// What `npm install <tarball>` fetches: the runtime dependencies, resolved from package.json's
// ranges as the registry answers today, into a cache of their own (scripts skipped: only the
// cache is kept).
say('packing an npm cache with the runtime dependencies');
const cacheWork = mkdtempSync(join(tmpdir(), 'cuda-llama-npm-cache-'));
try {
  const { dependencies } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
  const project = join(cacheWork, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'npm-cache-filler', private: true }));
  const npmCli = join(prefix, 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
  const registry = execFileSync(process.execPath, [npmCli, 'config', 'get', 'registry'], { cwd: project, encoding: 'utf8' }).trim();
  writeFileSync(join(carry, 'npm-registry.txt'), `${registry}\n`);
  execFileSync(
    process.execPath,
    [
      npmCli,
      'install',
      '--registry',
      registry,
      '--no-audit',
      '--no-fund',
      '--ignore-scripts',
      '--cache',
      join(cacheWork, 'npm-cache'),
      ...Object.entries(dependencies).map(([name, range]) => `${name}@${range}`),
    ],
    { cwd: project, stdio: 'inherit' },
  );
  tarXz(join(carry, 'npm-cache.tar.xz'), ['npm-cache'], cacheWork);
} finally {
  rmSync(cacheWork, { recursive: true, force: true });
}

if (withCudaPackage) {
  const packageDir = join('prebuilds', `${process.platform}-${process.arch}-cuda13`);
  const metadataPath = join(repoRoot, packageDir, 'cuda-llama-build.json');
  const metadata = existsSync(metadataPath) ? JSON.parse(readFileSync(metadataPath, 'utf8')) : null;
  if (!metadata) {
    say(`no ${packageDir} (run \`npm run prebuild -- --cuda\` after a CUDA build): the host will compile the CUDA module`);
  } else if (metadata.llamaCppCommit !== pin.commit) {
    say(`${packageDir} was built from llama.cpp ${metadata.llamaCppCommit.slice(0, 12)}, the pin is ${pin.commit.slice(0, 12)}: left out`);
  } else {
    say(`packing ${packageDir} (CUDA architectures ${metadata.cudaArchitectures}, CUDA ${metadata.cudaCompilerVersion})`);
    tarXz(join(carry, 'cuda13.tar.xz'), [packageDir]);
  }
}

const carryNodeLlamaCpp = join(repoRoot, '.carry-nlc');
rmSync(carryNodeLlamaCpp, { recursive: true, force: true });
if (withNodeLlamaCpp) {
  say('packing node-llama-cpp for the GPU three-way comparison into .carry-nlc/');
  mkdirSync(carryNodeLlamaCpp);
  const archive = join(carryNodeLlamaCpp, 'node-llama-cpp.tar.xz');
  execFileSync(join(repoRoot, 'node_modules', '.bin', 'tsx'), [join('test', 'bench', 'carry-node-llama-cpp.ts'), archive], {
    cwd: repoRoot,
    stdio: 'inherit',
  });
  say(`  .carry-nlc/node-llama-cpp.tar.xz: ${(statSync(archive).size / 2 ** 20).toFixed(1)} MiB (carried alone, by the bench call)`);
}

const files = ['node.tar.xz', 'llama.tar.xz', 'node_modules.tar.xz', 'npm-cache.tar.xz', 'cuda13.tar.xz'].filter((f) =>
  existsSync(join(carry, f)),
);
let total = 0;
for (const file of files) {
  const bytes = statSync(join(carry, file)).size;
  total += bytes;
  say(`  .carry/${file}: ${(bytes / 2 ** 20).toFixed(1)} MiB`);
}
say(`  total ${(total / 2 ** 20).toFixed(1)} MiB of the ${CARRY_LIMIT_BYTES / 2 ** 20} MiB carry limit`);
if (total > CARRY_LIMIT_BYTES) {
  say(
    `too big to carry${files.includes('cuda13.tar.xz') ? ': rerun with --no-cuda-package and let the host compile the CUDA module' : ''}`,
  );
  process.exit(1);
}
