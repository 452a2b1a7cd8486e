// How the benchmark drives llama.cpp's own programs: which llama-bench runs make up a repetition,
// and the environment that lets them load the same CUDA module as cuda-llama; and the runner every
// benchmark child (cuda-llama's, node-llama-cpp's) reports through.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { BuildReport } from '../../lib/index.js';
import { GEN_TOKENS, PROMPT_SIZES, SHORT_PROMPT_TOKENS, cpuConfig, ppSamples, runJsonChild } from '../bench/common.js';
import { llamaBenchInvocations, toolEnv } from '../bench/llama-bench.js';
import { perRepetitionRatios } from '../bench/report.js';
import { intervalVerdict, medianInterval, stats } from '../bench/stats.js';

const flag = (args: string[], name: string) => args[args.indexOf(name) + 1]!;

describe('llamaBenchInvocations', () => {
  const runs = llamaBenchInvocations('m.gguf', 2, cpuConfig);

  it('measures every prompt size once, with as many runs (-r) as the other programs take samples', () => {
    const seen = runs.flatMap((args) =>
      flag(args, '-p')
        .split(',')
        .map(Number)
        .filter((n) => n > 0)
        .map((size) => ({ size, reps: Number(flag(args, '-r')) })),
    );
    expect(seen.map((s) => s.size).sort((a, b) => a - b)).toEqual([...PROMPT_SIZES].sort((a, b) => a - b));
    for (const { size, reps } of seen) expect(reps).toBe(ppSamples(size));
    expect(seen.some((s) => s.reps > 1)).toBe(true); // the short rows are sampled more than once
  });

  it(`runs tg${GEN_TOKENS} exactly once per repetition, alone, at the depth of our ${SHORT_PROMPT_TOKENS}-token prompt, on the CPU placement`, () => {
    const withTg = runs.filter((args) => flag(args, '-n') !== '0');
    expect(withTg).toHaveLength(1);
    expect(flag(withTg[0]!, '-n')).toBe(String(GEN_TOKENS));
    expect(flag(withTg[0]!, '-p')).toBe('0');
    expect(flag(withTg[0]!, '-d')).toBe(String(SHORT_PROMPT_TOKENS));
    expect(flag(withTg[0]!, '-r')).toBe('1');
    // -d applies to every test of a run: the prompt rows must not get it.
    for (const args of runs.filter((a) => a !== withTg[0])) expect(args).not.toContain('-d');
    for (const args of runs) {
      expect([flag(args, '-ngl'), flag(args, '-dev'), flag(args, '-t'), flag(args, '-o')]).toEqual(['0', 'none', '2', 'json']);
    }
  });
});

describe('toolEnv', () => {
  const build = (cudaModule: Partial<NonNullable<BuildReport['cudaModule']>> | null, preloaded: string[] = []) =>
    ({
      cudaModule,
      cudaRuntime: {
        preloaded: preloaded.map((path) => ({ soname: path.split('/').pop(), path, source: 'test' })),
        error: null,
        searched: [],
      },
    }) as unknown as BuildReport;

  it('adds nothing without a CUDA build, or when the module sits beside the addon (and so beside llama-bench)', () => {
    expect(toolEnv(undefined)).toBeUndefined();
    expect(toolEnv(build(null))).toBeUndefined();
    expect(toolEnv(build({ path: '/repo/build/Release/libggml-cuda.so', source: 'beside-addon' }))).toBeUndefined();
  });

  it("names the optional package's module and the folders of the runtime libraries the loader preloaded", () => {
    const saved = process.env.LD_LIBRARY_PATH;
    process.env.LD_LIBRARY_PATH = '/opt/existing';
    try {
      const env = toolEnv(
        build({ path: '/p/node_modules/@cuda-llama/linux-x64-cuda13/libggml-cuda.so', source: 'package' }, [
          '/py/nvidia/cu13/lib/libcudart.so.13',
          '/py/nvidia/cu13/lib/libcublas.so.13',
        ]),
      )!;
      expect(env.GGML_BACKEND_PATH).toBe('/p/node_modules/@cuda-llama/linux-x64-cuda13/libggml-cuda.so');
      expect(env.LD_LIBRARY_PATH).toBe('/py/nvidia/cu13/lib:/opt/existing');
      expect(env.PATH).toBe(process.env.PATH); // the rest of the environment is kept
    } finally {
      if (saved === undefined) delete process.env.LD_LIBRARY_PATH;
      else process.env.LD_LIBRARY_PATH = saved;
    }
  });
});

describe('perRepetitionRatios', () => {
  it('pairs each repetition with itself, so the median ratio divides out drift between repetitions', () => {
    // Ours is 11% faster in two of three repetitions (the machine slowed down by half in the
    // second); the ratio of the medians, 80 / 90, would read 0.89.
    const ratios = perRepetitionRatios([100, 50, 80], [90, 45, 100]);
    expect(ratios).toEqual([100 / 90, 50 / 45, 0.8]);
    expect(stats(ratios).median).toBeCloseTo(100 / 90, 10);
    expect(() => perRepetitionRatios([1, 2], [1])).toThrow(RangeError);
    expect(() => perRepetitionRatios([], [])).toThrow(RangeError);
  });
});

describe('medianInterval', () => {
  const ranks = (n: number) => Array.from({ length: n }, (_, i) => n - i); // unsorted on purpose

  it('picks the order statistics of the binomial table: 2nd and 9th of 10, 3rd and 10th of 12, 6th and 15th of 20', () => {
    expect(medianInterval(ranks(10))).toEqual({ low: 2, high: 9, confidence: 1 - 2 * (11 / 1024) });
    expect(medianInterval(ranks(12))).toMatchObject({ low: 3, high: 10 });
    expect(medianInterval(ranks(20))).toMatchObject({ low: 6, high: 15 });
    for (const n of [6, 8, 10, 12, 20]) expect(medianInterval(ranks(n))!.confidence).toBeGreaterThanOrEqual(0.95);
  });

  it('is min–max at 6 to 8 samples and refuses 5 or fewer, where even min–max covers less than 95%', () => {
    expect(medianInterval(ranks(6))).toMatchObject({ low: 1, high: 6 });
    expect(medianInterval(ranks(8))).toMatchObject({ low: 1, high: 8 });
    expect(medianInterval(ranks(5))).toBeNull();
    expect(medianInterval([])).toBeNull();
  });
});

describe('intervalVerdict', () => {
  it('says whether the interval of the median lies above, below or across the threshold', () => {
    const around = (centre: number) => Array.from({ length: 12 }, (_, i) => centre + (i - 5.5) * 0.002); // 3rd and 10th of 12: centre ± 0.007
    expect(intervalVerdict(around(1.0), 0.98)).toBe('0.993–1.007, above 0.98');
    expect(intervalVerdict(around(0.96), 0.98)).toBe('0.953–0.967, below 0.98');
    expect(intervalVerdict(around(0.98), 0.98)).toBe('0.973–0.987, holds 0.98: within noise');
    expect(intervalVerdict([1, 1.1, 0.9], 1)).toBe('— (3 samples: too few for a 95% interval)');
  });
});

describe('runJsonChild', () => {
  // Each case is a tiny child script: the runner is what every benchmark child goes through.
  const dirs: string[] = [];
  afterAll(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));
  const script = (body: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-json-child-'));
    dirs.push(dir);
    const path = join(dir, 'child.mjs');
    writeFileSync(path, `import { readFileSync } from 'node:fs';\nconst request = JSON.parse(readFileSync(0, 'utf8'));\n${body}\n`);
    return path;
  };

  it('sends the request on stdin and returns the one JSON line from stdout', async () => {
    const path = script("process.stdout.write(JSON.stringify({ doubled: request.n * 2, big: request.ids.length }) + '\\n');");
    // Thousands of ids: what argv would not carry comfortably.
    await expect(runJsonChild(path, { n: 21, ids: Array.from({ length: 50_000 }, (_, i) => i) })).resolves.toEqual({
      doubled: 42,
      big: 50_000,
    });
  });

  it('rejects with the tail of stderr when the child fails', async () => {
    const path = script("process.stderr.write('request.kind must be one of workload, got nope\\n'); process.exit(3);");
    await expect(runJsonChild(path, {})).rejects.toThrow(/child\.mjs exited with 3:\nrequest\.kind must be one of workload, got nope/);
  });

  it('rejects a child that prints more than the one result line', async () => {
    const path = script("console.log('a notice'); console.log(JSON.stringify({ ok: true }));");
    await expect(runJsonChild(path, {})).rejects.toThrow(/printed 2 lines on stdout, expected one JSON line/);
  });

  it('rejects a result line that is not JSON', async () => {
    const path = script("console.log('done');");
    await expect(runJsonChild(path, {})).rejects.toThrow(/printed no valid JSON/);
  });
});
