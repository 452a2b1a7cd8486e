#!/usr/bin/env node
// Builds llama.cpp's own programs (llama-simple, llama-bench, llama-batched-bench, llama-server) from the addon's
// build folder, so that the reference test and the benchmarks run exactly the libllama/libggml the addon links;
// and our own reference programs (cuda-llama-chat-reference, test/reference/), which link the same way.
// llama-server (the serving benchmark's reference, test/bench/serve.ts) is built without its web UI.
// llama-embedding is the embeddings and rerank reference, run on the synthetic embedding and reranker models (lib/gguf/synthetic/).
//
// Usage: node scripts/build-tools.mjs [target...]     (default: llama-simple llama-bench)
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, say } from './build-common.mjs';

const DEFAULT_TARGETS = ['llama-simple', 'llama-bench'];
const targets = process.argv.slice(2).length > 0 ? process.argv.slice(2) : DEFAULT_TARGETS;
const buildDir = join(repoRoot, 'build');
const outDir = join(buildDir, 'Release');

for (const target of targets) {
  // The name becomes a file name and a cmake argument; anything else is a typo, not a target.
  if (!/^[A-Za-z0-9_.-]+$/.test(target)) {
    say(`not a target name: ${JSON.stringify(target)}`);
    process.exit(2);
  }
}

if (!existsSync(join(buildDir, 'CMakeCache.txt'))) {
  say(
    'build/CMakeCache.txt is missing: the native build has not been configured yet. Run `npm install` first (it configures and builds build/), then run this again.',
  );
  process.exit(1);
}

function mtimeMs(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

// libllama.so is relinked whenever llama.cpp or its build options change; a program older than
// it may have been built against different sources or flags, so it is rebuilt.
const libllamaTime = mtimeMs(join(outDir, 'libllama.so'));
// Our own programs are also stale when their source changed since they were built.
const ownSources = { 'cuda-llama-chat-reference': join(repoRoot, 'test', 'reference', 'chat-template-reference.cc') };
const stale = targets.filter((target) => {
  const programTime = mtimeMs(join(outDir, target));
  const sourceTime = ownSources[target] === undefined ? undefined : mtimeMs(ownSources[target]);
  return (
    programTime === undefined ||
    libllamaTime === undefined ||
    programTime <= libllamaTime ||
    (sourceTime !== undefined && programTime <= sourceTime)
  );
});
if (stale.length === 0) {
  say(`${targets.join(', ')}: up to date (build/Release)`);
  process.exit(0);
}

// `npm test` (pretest) and the benchmark may both get here at once; two Ninja runs in one build
// folder race on the same outputs and on .ninja_log, so they take turns.
const lockPath = join(buildDir, '.build-tools.lock');

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

function acquireLock() {
  const deadline = Date.now() + 30 * 60 * 1000;
  let announced = false;
  for (;;) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return;
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
    const holder = Number.parseInt(readFileSync(lockPath, 'utf8'), 10);
    if (!Number.isInteger(holder) || !isAlive(holder)) {
      // Left by a killed run; the pid check keeps us from stealing a live one.
      try {
        unlinkSync(lockPath);
      } catch {
        // another waiter removed it first
      }
      continue;
    }
    if (Date.now() > deadline) {
      say(`gave up waiting for process ${holder} (holding ${lockPath})`);
      process.exit(1);
    }
    if (!announced) {
      say(`waiting for another build-tools run (pid ${holder}) to finish`);
      announced = true;
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
  }
}

acquireLock();
let status = 1;
try {
  say(`building ${stale.join(', ')} in build/ (first time: a few minutes, it compiles llama.cpp's common library)`);
  const started = Date.now();
  const result = spawnSync('cmake', ['--build', buildDir, '--target', ...stale], { cwd: repoRoot, stdio: 'inherit' });
  if (result.error) {
    say(
      /** @type {NodeJS.ErrnoException} */ (result.error).code === 'ENOENT'
        ? 'cmake is not on PATH; install CMake (3.19 or newer)'
        : `cmake failed to start: ${result.error.message}`,
    );
  } else if (result.status !== 0) {
    say(`cmake --build build --target ${stale.join(' ')} failed (exit ${result.status ?? result.signal})`);
  } else {
    status = 0;
    say(`built ${stale.map((t) => `build/Release/${t}`).join(', ')} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
} finally {
  try {
    unlinkSync(lockPath);
  } catch {
    // already gone: nothing to release
  }
}
process.exit(status);
