// The examples of docs/structured-output.md run as they are, against the demo model: each block
// marked `<!-- runnable: name -->` is written to a file (importing this checkout instead of the
// package) and run with tsx in a child process, which must exit 0 and print what the guide says.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, syntheticModel } from '../helpers/models.js';

const run = promisify(execFile);
const guide = readFileSync(join(repoRoot, 'docs', 'structured-output.md'), 'utf8');
const examples = [...guide.matchAll(/<!-- runnable: (\w+) -->\n```ts\n([\s\S]*?)```/g)].map((m) => ({ name: m[1]!, code: m[2]! }));
let dir: string;
let model: string;

beforeAll(async () => {
  model = await syntheticModel('small'); // what `npm run demo` makes
  dir = mkdtempSync(join(tmpdir(), 'cuda-llama-guide-'));
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('docs/structured-output.md', () => {
  it('has its runnable examples', () => {
    expect(examples.map((e) => e.name)).toEqual(['extract', 'tools']);
  });

  it.each(examples.map((e) => [e.name, e.code] as const))('%s runs against the demo model', async (name, code) => {
    const file = join(dir, `${name}.mts`); // an ES module: the examples use top-level await
    writeFileSync(file, code.replace(/from 'cuda-llama'/g, `from ${JSON.stringify(join(repoRoot, 'lib', 'index.ts'))}`));
    const { stdout } = await run(process.execPath, [join(repoRoot, 'node_modules', 'tsx', 'dist', 'cli.mjs'), file], {
      env: { ...process.env, MODEL: model },
      timeout: 240_000,
    });
    if (name === 'extract') expect(stdout).toMatch(/name: .*\n?.*age: \d+/s);
    if (name === 'tools') {
      // The first turn is held to a call; the last, to an answer.
      expect(stdout).toMatch(/^call: get_weather \{.*"city"/m);
      expect(stdout).toMatch(/^answer: /m);
    }
  });
});
