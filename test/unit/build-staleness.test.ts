// The build scripts' up-to-date test (scripts/native-sources.mjs, used by scripts/install.mjs):
// a local build made from other native/ sources or other inputs is named as such, never used.
import { mkdirSync, mkdtempSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ADDON_FILE,
  BUILD_INFO_FILE,
  INPUTS_STAMP_FILE,
  localBuildProblem,
  nativeSourcesSha256,
  staleBuild,
} from '../../scripts/native-sources.mjs';

const a = 'a'.repeat(64);
const b = 'b'.repeat(64);

function buildFolder(metadata: object | null, stamp: string | null): string {
  const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-build-'));
  mkdirSync(join(dir, 'Release'));
  writeFileSync(join(dir, 'Release', ADDON_FILE), '');
  if (metadata) writeFileSync(join(dir, 'Release', BUILD_INFO_FILE), JSON.stringify(metadata));
  if (stamp) writeFileSync(join(dir, INPUTS_STAMP_FILE), `${stamp}\n`);
  return dir;
}

describe('local build staleness', () => {
  it('accepts a build whose stamp and native/ fingerprint match', () => {
    expect(localBuildProblem(buildFolder({ variant: 'cpu', nativeSourcesSha256: a }, 'h1'), 'h1', a)).toBeNull();
  });

  it('names a build made from other native/ sources, with both fingerprints', () => {
    const dir = buildFolder({ variant: 'cpu', nativeSourcesSha256: a }, 'h1');
    expect(localBuildProblem(dir, 'h2', b)).toBe(
      `${join(dir, 'Release')}: it is a stale build: made from other native/ sources (aaaaaaaaaaaa) than these (bbbbbbbbbbbb)`,
    );
  });

  it('names a build made from other inputs, or one with no stamp', () => {
    expect(localBuildProblem(buildFolder({ variant: 'cpu', nativeSourcesSha256: a }, 'h1'), 'h2', a)).toMatch(
      /was built from other inputs \(CMakeLists\.txt, the llama\.cpp pin or the build settings\)/,
    );
    expect(localBuildProblem(buildFolder(null, null), 'h1', a)).toMatch(/was built from other inputs/);
  });

  it('says when there is no build at all', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-nobuild-'));
    expect(localBuildProblem(dir, 'h1', a)).toBe(`there is no local build (${join(dir, 'Release', ADDON_FILE)} does not exist)`);
  });

  it('does not judge a fingerprint that is unknown on either side', () => {
    expect(staleBuild({ nativeSourcesSha256: null }, b)).toBeNull();
    expect(staleBuild({ nativeSourcesSha256: a }, null)).toBeNull();
    expect(staleBuild(null, b)).toBeNull();
    expect(staleBuild({ nativeSourcesSha256: b }, b)).toBeNull();
  });

  it('fingerprints native/ by file names and contents', () => {
    const root = mkdtempSync(join(tmpdir(), 'cuda-llama-sources-'));
    expect(nativeSourcesSha256(root)).toBeNull();
    mkdirSync(join(root, 'native'));
    writeFileSync(join(root, 'native', 'model.cc'), 'int x;\n');
    const first = nativeSourcesSha256(root);
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect(nativeSourcesSha256(root)).toBe(first);
    writeFileSync(join(root, 'native', 'model.cc'), 'int y;\n');
    const edited = nativeSourcesSha256(root);
    expect(edited).not.toBe(first);
    renameSync(join(root, 'native', 'model.cc'), join(root, 'native', 'context.cc'));
    expect(nativeSourcesSha256(root)).not.toBe(edited);
  });
});
