/**
 * npm run fuzz -- --seed S --count N [--kind metadata|bytes|both] [--jobs J] [--start I] [--json out.json]
 *
 * Loads N seeded mutants of the tiny synthetic model, each in a child process, and prints the
 * outcome counts. Deaths and hangs are saved under test/.models/fuzz-deaths (git-ignored) with their seed and index;
 * `--start I --count 1` with the same seed and kind rebuilds one of them.
 */
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { loadBases, systematicCount, type FuzzKind } from '../test/fuzz/mutants.js';
import { formatTotals, runFuzz } from '../test/fuzz/runner.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    count: { type: 'string', default: '200' },
    kind: { type: 'string', default: 'both' },
    jobs: { type: 'string', default: '1' },
    start: { type: 'string', default: '0' },
    json: { type: 'string' },
    quiet: { type: 'boolean', default: false },
  },
});

function integer(name: string, text: string | undefined, min: number): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`--${name} must be an integer >= ${min}, got '${text}'`);
  return n;
}

const seed = integer('seed', values.seed, 0);
const count = integer('count', values.count, 1);
const jobs = integer('jobs', values.jobs, 1);
const start = integer('start', values.start, 0);
const kinds: FuzzKind[] =
  values.kind === 'both' ? ['metadata', 'bytes'] : values.kind === 'metadata' || values.kind === 'bytes' ? [values.kind] : [];
if (kinds.length === 0) throw new RangeError(`--kind must be metadata, bytes or both, got '${values.kind}'`);

const bases = await loadBases({ cacheDir: `${root}test/.models`, vocabDir: `${root}vendor/llama.cpp/models` });
let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
} catch {
  // Not a git checkout (an npm tarball): the commit stays 'unknown' in the report.
}
console.log(
  `fuzz: seed ${seed}, ${count} mutants from ${start} (${kinds.join(' + ')}), ${jobs} job(s), commit ${commit}; the metadata fuzzer walks ${systematicCount(bases)} single-key edits before combining them`,
);
const began = Date.now();
const totals = await runFuzz({
  seed,
  count,
  start,
  kinds,
  bases,
  jobs,
  workDir: `${root}test/.models/fuzz-work`,
  deathDir: `${root}test/.models/fuzz-deaths`,
  onResult: (result, t) => {
    if (result.outcome === 'death' || result.outcome === 'hang' || result.outcome === 'untyped') {
      console.log(
        `${result.outcome.toUpperCase()}: --seed ${result.seed} --kind ${result.kind} --start ${result.index} --count 1 (${result.base}): ${result.description.slice(0, 300)}`,
      );
      if (result.outcome === 'death')
        console.log(
          `  signal ${result.signal}, exit ${result.exitCode}; saved ${result.savedAs}\n  ${result.stderr.trim().split('\n').slice(-3).join('\n  ')}`,
        );
      if (result.outcome === 'untyped') console.log(`  ${result.name}: ${result.message}`);
    }
    if (!values.quiet && t.mutants % 100 === 0) {
      console.log(`[${t.mutants}/${count}] ${((Date.now() - began) / 1000).toFixed(0)} s: ${formatTotals(t)}`);
    }
  },
});
const seconds = (Date.now() - began) / 1000;
console.log(`done in ${seconds.toFixed(0)} s (${(totals.mutants / seconds).toFixed(2)} mutants/s): ${formatTotals(totals)}`);
if (values.json) {
  await writeFile(values.json, JSON.stringify({ seed, start, count, kinds, commit, seconds, ...totals }, null, 2));
}
process.exitCode = totals.deaths.length + totals.hangs.length + totals.untyped.length > 0 ? 1 : 0;
