// `cuda-llama doctor` on a CPU-only machine: it says what is missing, with remedies, and its
// exit code says whether what was asked for works.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Llama } from '../../lib/index.js';
import { repoRoot } from '../helpers/models.js';

function doctor(...args: string[]) {
  const child = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'lib', 'tools', 'cli.ts'), 'doctor', ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: child.status, stdout: child.stdout, stderr: child.stderr };
}

describe.skipIf(Llama.build().cuda.available)('doctor without a GPU', () => {
  it('asked for the GPU: exit 1, one line per problem with its remedy, the facts as JSON', () => {
    const { status, stdout } = doctor('--json', '--no-probe');
    expect(status).toBe(1);
    const report = JSON.parse(stdout);
    expect(report.ok).toBe(false);
    expect(report.build.source).toBe('local-build');
    expect(report.build.metadata.variant).toBe('cpu');
    expect(report.devices.map((d: { name: string }) => d.name)).toContain('CPU');
    // No CUDA module at all, or one (the optional package) that cannot load without a driver.
    expect(report.problems.join('\n')).toMatch(
      Llama.build().cudaModule
        ? /CUDA is not usable: .*libggml-cuda\.so failed to load: lib\w+\.so[.\d]*: cannot open shared object file.* - /
        : /CUDA is not usable: .*libggml-cuda\.so is not there.* - install the prebuilt CUDA module with `npm install @cuda-llama\/linux-x64-cuda13`, or build the CUDA variant/,
    );
    if (!report.telemetry.available) expect(report.problems.join('\n')).toMatch(/no NVIDIA driver found .* - install the NVIDIA driver/);
  });

  it('asked for the CPU only: exit 0 after a real probe generation', () => {
    const { status, stdout } = doctor('--cpu');
    expect(status).toBe(0);
    expect(stdout).toMatch(/probe cpu: load \d+ ms, [\d.]+ tok\/s; offloaded: 0\/6 layers; output CPU; KV cache CPU/);
    expect(stdout).toMatch(/doctor: everything asked for works/);
  });

  it('an unknown command prints the usage and exits 2', () => {
    const child = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'lib', 'tools', 'cli.ts'), 'docter'], {
      cwd: repoRoot,
      encoding: 'utf8',
    });
    expect(child.status).toBe(2);
    expect(child.stderr).toMatch(/^error: unknown command 'docter' \(Did you mean doctor\?\)\n[\s\S]*Usage: cuda-llama /);
  });
});
