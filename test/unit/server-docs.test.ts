// docs/server.md is checked against the source, as docs.test.ts checks api.md: every flag of
// `cuda-llama serve` is in its flag table, every Llama.load option has a flag (the issue's "every
// load option reachable"), and every metric the server registers is in its metrics table.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { loadKeys } from '../../lib/options.js';
import { ServerMetrics } from '../../lib/server/metrics.js';
import { registerServe } from '../../lib/tools/cli/serve-command.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const serverDoc = readFileSync(join(root, 'docs', 'server.md'), 'utf8');
const section = (heading: string): string => {
  const start = serverDoc.indexOf(`\n## ${heading}\n`);
  expect(start, `docs/server.md has a "## ${heading}" section`).toBeGreaterThanOrEqual(0);
  const end = serverDoc.indexOf('\n## ', start + 1);
  return serverDoc.slice(start, end === -1 ? undefined : end);
};

const program = new Command();
registerServe(program, { out: () => undefined, err: () => undefined, exitCode: 0 });
const serve = program.commands.find((c) => c.name() === 'serve')!;
const flags = serve.options.map((o) => o.long!);

/** Load options that are not a flag of their own, and why. */
const notFlags: Record<string, string> = {
  sequences: '--parallel', // named as llama-server names it
  rpcServers: '--rpc', // named as llama-server names it
  offloadKvCache: '--no-offload-kv-cache',
  mmap: '--no-mmap',
  warmup: '--no-warmup',
  onProgress: 'a callback: the server logs its own progress',
  signal: 'a callback: SIGTERM/SIGINT stop the load',
  parkedSessionBytes: 'the server keeps no sessions, so it parks nothing',
};

describe('docs/server.md', () => {
  it('documents every flag of `cuda-llama serve` in its flag table', () => {
    const table = section('Flags');
    const missing = flags.filter((flag) => !new RegExp(`\`${flag}[\` ]`).test(table));
    expect(missing).toEqual([]);
  });

  it('every Llama.load option is reachable from a flag', () => {
    const kebab = (key: string) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    const unreachable = loadKeys.filter((key) => {
      const instead = notFlags[key];
      if (instead === undefined) return !flags.includes(kebab(key));
      return instead.startsWith('--') && !flags.includes(instead);
    });
    expect(unreachable).toEqual([]);
  });

  it('documents every metric the server registers', () => {
    // Registered names, less prom-client's process metrics (documented as a group).
    const metrics = new ServerMetrics({ sequences: () => 1, telemetry: () => ({ available: false }), inFlight: () => 0 } as never);
    const defaults = new Registry();
    collectDefaultMetrics({ register: defaults, prefix: 'cuda_llama_' });
    const builtIn = new Set(defaults.getMetricsAsArray().map((m) => m.name));
    const names = metrics.registry
      .getMetricsAsArray()
      .map((m) => m.name)
      .filter((name) => !builtIn.has(name))
      .map((name) => name.replace(/^cuda_llama_/, ''));
    expect(names.length).toBeGreaterThan(10);
    const table = section('Metrics');
    const missing = names.filter((name) => !table.includes(`\`${name}`));
    expect(missing).toEqual([]);
  });
});
