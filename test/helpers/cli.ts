// Runs the `cuda-llama` command from lib/ (through tsx) as a user would, for the CLI tests.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './models.js';

/** A line of a stack trace: the CLI never prints one for a usage mistake or a library error. */
export const stackLine = /^\s+at /m;

export function cli(...args: string[]) {
  const child = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'lib', 'tools', 'cli.ts'), ...args], {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: child.status, stdout: child.stdout, stderr: child.stderr };
}
