/**
 * Packs node-llama-cpp's benchmark install (test/bench/.node-llama-cpp, with its CUDA package) for a
 * GPU host, which has no npm registry, within the device tool's carry limit:
 *
 *   npx tsx test/bench/carry-node-llama-cpp.ts <out.tar.xz>
 *
 * Its CUDA module (181 MB of the 210 MB of binaries, 128 MB of it GPU code) goes with its GPU code
 * zeroed and a mark beside it: the fatbin headers stay, so on the host the benchmark still reads
 * what the module holds and whether that GPU could run it (selectNodeLlamaCppCudaModule), and the
 * mark keeps the benchmark from loading a module whose code is gone. Zeroed, the module packs to
 * about 2 MB. Left out as well: the llama.cpp source bundle node-llama-cpp builds from (35 MB),
 * never read by a prebuilt binary.
 *
 * scripts/gpu-carry.mjs runs this when the install is there; scripts/gpu-session.sh unpacks it.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { readFatbinEntries } from '../../lib/gpu/fatbin.js';
import { log, repoRoot } from './common.js';
import { TRIMMED_MARK, ensureNodeLlamaCpp, nodeLlamaCppCudaModulePaths, nodeLlamaCppDir } from './node-llama-cpp.js';

/** Overwrites the GPU code of every fatbin entry with zeros, in place; returns the bytes zeroed. */
export function zeroCudaCode(path: string): number {
  const entries = readFatbinEntries(path);
  if (!entries) throw new Error(`${path} has no fatbin this reader understands`);
  const fd = openSync(path, 'r+');
  let zeroed = 0;
  try {
    const zeros = Buffer.alloc(1 << 20);
    for (const { payloadOffset, payloadBytes } of entries) {
      for (let done = 0; done < payloadBytes; done += zeros.length) {
        writeSync(fd, zeros, 0, Math.min(zeros.length, payloadBytes - done), payloadOffset + done);
      }
      zeroed += payloadBytes;
    }
  } finally {
    closeSync(fd);
  }
  return zeroed;
}

async function main(): Promise<void> {
  const out = process.argv[2];
  if (!out) throw new Error('usage: npx tsx test/bench/carry-node-llama-cpp.ts <out.tar.xz>');
  await ensureNodeLlamaCpp({ cuda: true });
  const stage = mkdtempSync(join(tmpdir(), 'cuda-llama-nlc-carry-'));
  try {
    const staged = join(stage, relative(repoRoot, nodeLlamaCppDir));
    const bundle = join('node_modules', 'node-llama-cpp', 'llama', 'gitRelease.bundle');
    cpSync(nodeLlamaCppDir, staged, { recursive: true, filter: (source) => source !== join(nodeLlamaCppDir, bundle) });
    const module = nodeLlamaCppCudaModulePaths(staged).active;
    // A module swapped for cuda-llama's by an earlier GPU run here is not node-llama-cpp's: refuse it.
    if (!existsSync(module) || existsSync(nodeLlamaCppCudaModulePaths().kept)) {
      throw new Error(
        `${relative(repoRoot, nodeLlamaCppDir)} does not hold node-llama-cpp's own CUDA module in place: delete the folder and rerun`,
      );
    }
    const zeroed = zeroCudaCode(module);
    writeFileSync(
      module + TRIMMED_MARK,
      `GPU code (${zeroed} bytes) zeroed by test/bench/carry-node-llama-cpp.ts; fatbin headers intact\n`,
    );
    log(`${relative(stage, module)}: ${(zeroed / 2 ** 20).toFixed(1)} MiB of GPU code zeroed`);
    execFileSync('tar', ['-cf', resolve(out), '--use-compress-program=xz -9 -T0', relative(stage, staged)], {
      cwd: stage,
      stdio: 'inherit',
    });
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
