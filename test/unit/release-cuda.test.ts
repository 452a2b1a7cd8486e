// The release script's pure parts (scripts/release-cuda.ts wires them): the architecture list and
// its parsing, the manifest of a module (synthetic ELF files from test/helpers/cuda-module.ts),
// the build time across a killed attempt, the size check, and the docs section.
import { appendFileSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CUDA_PACKAGE } from '../../lib/binding/load-native.js';
import { readFatbinEntries } from '../../lib/gpu/fatbin.js';
import {
  buildTime,
  describeBuildTime,
  finishAttempt,
  heartbeat,
  isBuildInto,
  ninjaLogRuns,
  runningAttempt,
  startAttempt,
  type BuildState,
} from '../../scripts/build-time.js';
import {
  CUDA13_DRIVER,
  DOCS_BEGIN,
  DOCS_END,
  DOCS_NOT_BUILT,
  describeModuleCode,
  docsSection,
  fatbinFingerprint,
  manifestMarkdown,
  replaceDocsSection,
  sizeCheck,
  withText,
  type CudaReleaseManifest,
} from '../../scripts/cuda-manifest.js';
import {
  CUDA_FAMILIES,
  cudaPackageName,
  imagesForArchitectures,
  parseCudaArchitectures,
  RELEASE_CUDA_ARCHITECTURES,
  releaseArchitectureList,
  releaseBuildDirName,
} from '../../scripts/cuda-release.mjs';
import { ptx, sass, writeModule } from '../helpers/cuda-module.js';

const RELEASE_LIST = '75-real;80-real;86-real;89-real;90-real;100;120-real;121-real';
const MiB = 2 ** 20;

describe('the release architecture list', () => {
  it('is the list the release build in build-release-cuda13/ was started with (another list starts it over)', () => {
    expect(releaseArchitectureList()).toBe(RELEASE_LIST);
    expect(releaseBuildDirName()).toBe('build-release-cuda13');
  });

  it('splits into families that together are the whole list, each with its own package and build folder', () => {
    expect(CUDA_FAMILIES).toEqual(['sm75-89', 'sm90-121']);
    expect(CUDA_FAMILIES.map((f) => releaseArchitectureList(f)).join(';')).toBe(RELEASE_LIST);
    expect(cudaPackageName('sm75-89')).toBe(`${CUDA_PACKAGE}-sm75-89`);
    expect(releaseBuildDirName('sm90-121')).toBe('build-release-cuda13-sm90-121');
    expect(() => releaseArchitectureList('sm50')).toThrow(RangeError);
  });

  it("names the loader's package", () => {
    expect(cudaPackageName()).toBe(CUDA_PACKAGE);
  });

  it('parses CMake entries: "100" is SASS and PTX, "-real" SASS, "-virtual" PTX, and ggml makes 12X into 12Xa', () => {
    expect(parseCudaArchitectures('100;75-real;90-virtual')).toEqual([
      { spec: '100', arch: 100, sass: true, ptx: true },
      { spec: '75-real', arch: 75, sass: true, ptx: false },
      { spec: '90-virtual', arch: 90, sass: false, ptx: true },
    ]);
    expect(parseCudaArchitectures('120-real')).toEqual([{ spec: '120-real', arch: 120, variant: 'a', sass: true, ptx: false }]);
    expect(parseCudaArchitectures('121')).toEqual([{ spec: '121', arch: 121, variant: 'a', sass: true, ptx: true }]);
    expect(parseCudaArchitectures('120f-real')).toEqual([{ spec: '120f-real', arch: 120, variant: 'f', sass: true, ptx: false }]);
    expect(parseCudaArchitectures('120-real', { ggml: false })).toEqual([{ spec: '120-real', arch: 120, sass: true, ptx: false }]);
  });

  it('refuses what a release must not ask for', () => {
    expect(() => parseCudaArchitectures('native')).toThrow(/got 'native' .*a release names its architectures/);
    expect(() => parseCudaArchitectures('90;;100')).toThrow(/got ''/);
    expect(() => parseCudaArchitectures('90-real;90')).toThrow(/90 appears twice/);
    expect(() => parseCudaArchitectures('sm_90')).toThrow(RangeError);
  });

  it('gives the images nvcc writes for it', () => {
    expect(imagesForArchitectures(RELEASE_CUDA_ARCHITECTURES, '9.0')).toEqual([
      sass(75),
      sass(80),
      sass(86),
      sass(89),
      sass(90),
      sass(100),
      ptx(100, '9.0'),
      sass(120, 'a'),
      sass(121, 'a'),
    ]);
  });
});

describe('the manifest of a module', () => {
  const release = imagesForArchitectures(RELEASE_LIST, '9.0');
  // Three code units; the third has no PTX (as nvlink's own unit, when nvcc links the library).
  const path = writeModule([release, release, release.filter((i) => i.kind === 'sass')]);
  const entries = readFatbinEntries(path)!;
  const code = describeModuleCode(entries, parseCudaArchitectures(RELEASE_LIST));
  const bytes = (arch: number, kind: 'sass' | 'ptx') =>
    entries.filter((e) => e.image.arch === arch && e.image.kind === kind).reduce((sum, e) => sum + e.payloadBytes, 0);

  it('has one row per architecture and variant, with units, bytes and the list entry', () => {
    expect(code.units).toBe(3);
    expect(code.architectures.map((r) => r.name)).toEqual(['75', '80', '86', '89', '90', '100', '120a', '121a']);
    expect(code.architectures.find((r) => r.name === '120a')).toEqual({
      name: '120a',
      arch: 120,
      variant: 'a',
      gpus: 'Blackwell: RTX 50, RTX PRO 6000',
      requested: '120-real',
      sass: { units: 3, bytes: bytes(120, 'sass') },
      ptx: null,
    });
    expect(code.architectures.find((r) => r.name === '100')).toMatchObject({
      requested: '100',
      sass: { units: 3, bytes: bytes(100, 'sass') },
      ptx: { units: 2, bytes: bytes(100, 'ptx'), isa: ['9.0'] },
    });
  });

  it('gives each PTX ISA the oldest driver that compiles it', () => {
    expect(code.ptx).toEqual([{ isa: '9.0', driverCuda: '13.0' }]);
    const newer = describeModuleCode(readFatbinEntries(writeModule([[sass(90), ptx(90, '9.1')]]))!, null);
    expect(newer.ptx).toEqual([{ isa: '9.1', driverCuda: '13.1' }]);
  });

  it('names code missing from some units, code asked for and absent, and code nobody asked for', () => {
    expect(code.problems).toEqual(["PTX compute_100 is in only 2 of the module's 3 code units"]);
    // A module with plain sm_120 (an older ggml, or a reader that cannot see the variant) against 120-real.
    const plain = describeModuleCode(readFatbinEntries(writeModule([[sass(90), sass(120)]]))!, parseCudaArchitectures('90-real;120-real'));
    expect(plain.problems).toEqual([
      'SASS sm_120 is in the module but the list does not ask for it',
      'SASS sm_120a was asked for (120-real) but the module has none',
    ]);
  });

  it('with no list known, reports what is there and nothing as missing', () => {
    const unknown = describeModuleCode(entries, null);
    expect(unknown.problems).toEqual(["PTX compute_100 is in only 2 of the module's 3 code units"]);
    expect(unknown.architectures.every((r) => r.requested === null)).toBe(true);
  });

  it('prints as markdown, one row per architecture', () => {
    const manifest: CudaReleaseManifest = {
      package: { name: cudaPackageName(), version: '0.1.0' },
      date: '2026-01-02T03:04:05.000Z',
      commit: { sha: 'a'.repeat(40), dirty: false },
      llamaCpp: { commit: 'de3ff815ea7d559ee917f063901b8986f038abc6', tag: 'v0.5.0' },
      toolkit: '13.0.88',
      architecturesRequested: RELEASE_LIST,
      module: 'prebuilds/linux-x64-cuda13/libggml-cuda.so',
      code,
      driver: CUDA13_DRIVER,
      files: [{ name: 'libggml-cuda.so', bytes: 3 * MiB, unstrippedBytes: 4 * MiB }],
      tarball: { file: 'prebuilds/x.tgz', bytes: 2 * MiB, unpackedBytes: 3 * MiB },
      size: sizeCheck(2 * MiB, false),
      buildTime: withText({ seconds: 3 * 3600 + 600, attempts: 2, fromNinjaLog: 0, killed: 1 }),
    };
    const text = manifestMarkdown(manifest);
    expect(text).toContain(`#### ${cudaPackageName()}@0.1.0`);
    expect(text).toContain('| driver | CUDA 13.0 runtime: Linux driver 580.65.06 or newer |');
    expect(text).toContain('| PTX | ISA 9.0: drivers for CUDA 13.0 and newer compile it |');
    expect(text).toContain('| files | libggml-cuda.so 3.0 MiB (unstripped 4.0 MiB) |');
    expect(text).toContain('| build time | 3 h 10 min over 2 attempts (1 killed) |');
    expect(text).toContain(`| 120a | Blackwell: RTX 50, RTX PRO 6000 | \`120-real\` | 3/3, ${bytes(120, 'sass')} B | – |`);
    expect(text).toContain(`| 100 | `);
    expect(text).toContain(`| 3/3, ${bytes(100, 'sass')} B | 2/3, ${bytes(100, 'ptx')} B, ISA 9.0 |`);
    expect(text).toContain("- PTX compute_100 is in only 2 of the module's 3 code units");
  });
});

describe('the strip check', () => {
  it('sees the same fatbin wherever it lies, and any changed code byte', () => {
    const path = writeModule([[sass(86), ptx(100, '9.0')]]);
    const before = fatbinFingerprint(path)!;
    expect(before.entries).toBe(2);
    const grown = join(path, '..', 'grown.so');
    copyFileSync(path, grown);
    appendFileSync(grown, Buffer.alloc(100)); // what strip drops lies outside the fatbin
    expect(fatbinFingerprint(grown)).toEqual(before);
    const changed = readFileSync(path);
    changed[readFatbinEntries(path)![1]!.payloadOffset] = 0;
    writeFileSync(join(path, '..', 'changed.so'), changed);
    expect(fatbinFingerprint(join(path, '..', 'changed.so'))!.sha256).not.toBe(before.sha256);
  });
});

describe('the build time across attempts', () => {
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  const at = (minutes: number) => new Date(t0 + minutes * 60_000);
  const list = RELEASE_LIST;
  const noEarlier = () => [];

  /** An attempt that beat every 30 s for `minutes` and was then killed (no end recorded). */
  function killedAttempt(state: BuildState | null, from: number, minutes: number): BuildState {
    let s = startAttempt(state, list, at(from), 1234, noEarlier);
    for (let m = 0.5; m <= minutes; m += 0.5) s = heartbeat(s, at(from + m));
    return s;
  }

  it('counts a killed attempt to its last heartbeat, and sums the attempts', () => {
    let state = killedAttempt(null, 0, 10);
    state = startAttempt(state, list, at(60), 5678, noEarlier);
    state = finishAttempt(state, at(80), 0);
    expect(state.attempts.map((a) => a.exit)).toEqual([undefined, 0]);
    expect(buildTime(state)).toEqual({ seconds: 30 * 60, attempts: 2, fromNinjaLog: 0, killed: 1 });
    expect(describeBuildTime(buildTime(state))).toBe('30 min over 2 attempts (1 killed)');
  });

  it('starts over for another architecture list, and reads ninja runs from before the state file only then', () => {
    const earlier = [{ start: t0 - 3_600_000, end: t0 - 1_800_000, steps: 40 }];
    const first = startAttempt(null, list, at(0), 1, () => earlier);
    expect(first.earlier).toEqual(earlier);
    const again = startAttempt(finishAttempt(first, at(5), 'SIGINT'), list, at(10), 2, () => {
      throw new Error('read only when the state is made');
    });
    expect(again.attempts).toHaveLength(2);
    expect(buildTime(finishAttempt(again, at(15), 0))).toEqual({ seconds: 30 * 60 + 10 * 60, attempts: 3, fromNinjaLog: 1, killed: 0 });
    const other = startAttempt(again, '90-real', at(20), 3, noEarlier);
    expect(other.attempts).toHaveLength(1);
    expect(other.architectures).toBe('90-real');
  });

  it('knows a running attempt from a dead one', () => {
    const state = killedAttempt(null, 0, 10);
    expect(runningAttempt(state, at(10.5), () => true)?.pid).toBe(1234);
    expect(runningAttempt(state, at(10.5), () => false)).toBeNull(); // killed: its pid is gone
    expect(runningAttempt(state, at(20), () => true)).toBeNull(); // no heartbeat for 10 minutes: a reused pid
    expect(runningAttempt(finishAttempt(state, at(11), 0), at(11), () => true)).toBeNull();
    expect(runningAttempt(null, at(0), () => true)).toBeNull();
  });

  it('reads ninja runs from .ninja_log: each step started at its mtime less its end time', () => {
    const ns = (ms: number) => `${BigInt(ms) * 1_000_000n}`;
    const run1 = t0;
    const run2 = t0 + 3_600_000;
    const log = [
      '# ninja log v5',
      `8\t30\t0\t/x/CMakeFiles/cmake.verify_globs\tabc`,
      `100\t5000\t${ns(run1 + 5000)}\ta.o\tabc`,
      `200\t9000\t${ns(run1 + 9000 + 40)}\tb.o\tabc`, // the mtime a little before ninja noted the end
      `0\t120000\t${ns(run2 + 120_000)}\tc.o\tabc`,
      '',
    ].join('\n');
    expect(ninjaLogRuns(log)).toEqual([
      { start: run1, end: run1 + 9040, steps: 2 },
      { start: run2, end: run2 + 120_000, steps: 1 },
    ]);
  });

  it('finds a build into a folder among process arguments', () => {
    const argv = [
      '/usr/bin/node',
      '/repo/node_modules/cmake-js/bin/cmake-js',
      'build',
      '--out',
      'build-release-cuda13',
      '--config',
      'Release',
    ];
    expect(isBuildInto(argv, 'build-release-cuda13')).toBe(true);
    expect(isBuildInto(argv, 'build-release-cuda13-sm75-89')).toBe(false);
    expect(isBuildInto(['ninja', '--out', 'build-release-cuda13'], 'build-release-cuda13')).toBe(false);
  });
});

describe('the size check', () => {
  it('passes a tarball up to the limit', () => {
    expect(sizeCheck(199 * MiB, false)).toMatchObject({ action: 'ok', limitBytes: 200 * MiB });
    expect(sizeCheck(200 * MiB, false).action).toBe('ok');
  });

  it('says how big one over the limit is, and to split by family', () => {
    const check = sizeCheck(250 * MiB, false);
    expect(check.action).toBe('split');
    expect(check.message).toBe(
      'the tarball is 250.0 MiB, over the 200.0 MiB limit (TARBALL_LIMIT_BYTES, scripts/cuda-release.mjs), which the registry refuses in practice: ' +
        'pack one package per family instead with `npm run release:cuda -- --split families`',
    );
  });

  it('asks for smaller families when one family is over', () => {
    expect(sizeCheck(250 * MiB, true)).toMatchObject({ action: 'refine', message: expect.stringMatching(/even for one family/) });
  });
});

describe('the docs section', () => {
  it('replaces what lies between the markers, and refuses docs without them', () => {
    const text = `# x\n\n${DOCS_BEGIN}\nold\n${DOCS_END}\n\nafter\n`;
    expect(replaceDocsSection(text, 'new')).toBe(`# x\n\n${DOCS_BEGIN}\n\nnew\n\n${DOCS_END}\n\nafter\n`);
    expect(() => replaceDocsSection('# x\n', 'new')).toThrow(/no release section/);
  });

  it('docs/install.md holds the section for the release list, and no invented numbers', () => {
    const docs = readFileSync(fileURLToPath(new URL('../../docs/install.md', import.meta.url)), 'utf8');
    const section = docs.slice(docs.indexOf(DOCS_BEGIN) + DOCS_BEGIN.length, docs.indexOf(DOCS_END)).trim();
    const table = docsSection([]).replace(DOCS_NOT_BUILT, '').trim();
    expect(section.startsWith(table)).toBe(true);
    // Until a release build writes its manifest there (--write-docs), the section says so.
    expect(section === docsSection([]) || section.includes(`#### ${cudaPackageName()}`)).toBe(true);
  });
});
