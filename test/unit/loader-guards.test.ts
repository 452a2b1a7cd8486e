// The loader-guard table: every row refuses its violating example with ERR_MODEL_INVALID naming
// the key, passes its valid example, and still points at the llama.cpp line it guards.
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, ModelFileError } from '../../lib/errors.js';
import {
  LOADER_GUARDS,
  checkLoaderGuards,
  loaderGuardViolations,
  type GuardExampleEdits,
  type LoaderGuard,
} from '../../lib/gguf/loader-guards.js';
import { readGguf, type GgufValue } from '../../lib/gguf/reader.js';
import { GgufWriter, gguf } from '../../lib/gguf/writer.js';

const vendor = fileURLToPath(new URL('../../vendor/llama.cpp', import.meta.url));
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cuda-llama-guards-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The tiny synthetic llama's metadata (lib/gguf/synthetic-model.ts), with a small SPM vocab (byte tokens included). */
function baseMetadata(architecture: string): Map<string, GgufValue> {
  const a = architecture;
  const bytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const tokens = ['<unk>', '<s>', '</s>', ...bytes, ...Array.from({ length: 61 }, (_, i) => `t${i}`)];
  return new Map<string, GgufValue>([
    ['general.architecture', gguf.string(a)],
    ['general.alignment', gguf.u32(32)],
    [`${a}.context_length`, gguf.u32(2048)],
    [`${a}.embedding_length`, gguf.u32(64)],
    [`${a}.block_count`, gguf.u32(4)],
    [`${a}.feed_forward_length`, gguf.u32(128)],
    [`${a}.attention.head_count`, gguf.u32(4)],
    [`${a}.attention.head_count_kv`, gguf.u32(2)],
    [`${a}.rope.dimension_count`, gguf.u32(16)],
    [`${a}.attention.layer_norm_rms_epsilon`, gguf.f32(1e-5)],
    ['tokenizer.ggml.model', gguf.string('llama')],
    ['tokenizer.ggml.tokens', gguf.array('string', tokens)],
    [
      'tokenizer.ggml.scores',
      gguf.array(
        'f32',
        tokens.map(() => 0),
      ),
    ],
    [
      'tokenizer.ggml.token_type',
      gguf.array(
        'i32',
        tokens.map((_, i) => (i < 3 ? 3 : i < 259 ? 6 : 1)),
      ),
    ],
  ]);
}

let written = 0;

/** Writes the base with the edits applied as a GGUF file, and reads it back as the loader does. */
async function exampleFile(guard: LoaderGuard, edits: GuardExampleEdits) {
  const architecture = guard.examples.architecture ?? 'llama';
  const metadata = baseMetadata(architecture);
  for (const [pattern, edit] of Object.entries(edits)) {
    const key = pattern.replace('{arch}', architecture);
    const next = typeof edit === 'function' ? edit(metadata.get(key)) : edit;
    if (next === null) metadata.delete(key);
    else metadata.set(key, next);
  }
  const writer = new GgufWriter();
  for (const [key, value] of metadata) writer.addKv(key, value);
  // One small tensor, so the rows about data placement have something to place.
  writer.addTensor('output_norm.weight', [8], 0);
  const path = join(dir, `example-${written++}.gguf`);
  await writer.write(path, async (_, tensor, out) => out.write(new Uint8Array(tensor.byteSize)));
  return { file: await readGguf(path), architecture };
}

describe('LOADER_GUARDS', () => {
  it('has rows, each with a source line and assert text', () => {
    expect(LOADER_GUARDS.length).toBeGreaterThan(10);
    for (const guard of LOADER_GUARDS) {
      expect(guard.llamaCppSource).toMatch(/^(src|ggml\/src)\/[\w/.-]+\.(cpp|c|h):\d+$/);
      expect(guard.assertText.length).toBeGreaterThan(5);
      expect(Object.keys(guard.examples.invalid).length).toBeGreaterThan(0);
    }
  });

  it('the tiny llama base passes every row', async () => {
    const { file } = await exampleFile(LOADER_GUARDS[0]!, {});
    expect(loaderGuardViolations(file.metadata, 'llama', file.tensors)).toEqual([]);
  });

  describe.each(LOADER_GUARDS.map((guard) => [`${guard.key} (${guard.llamaCppSource})`, guard] as const))('%s', (_, guard) => {
    it('refuses the violating example with ERR_MODEL_INVALID naming the key, and the value', async () => {
      const { file, architecture } = await exampleFile(guard, guard.examples.invalid);
      const key = guard.key.replace('{arch}', architecture);
      let error: unknown;
      try {
        checkLoaderGuards(file, architecture);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ModelFileError);
      const { code, message, details } = error as ModelFileError;
      expect(code).toBe(ErrorCode.MODEL_INVALID);
      const rows = (details?.violations as { key: string; llamaCppSource: string; value: string; allowed: string }[]) ?? [];
      const mine = rows.find((v) => v.llamaCppSource === guard.llamaCppSource && v.key === key);
      expect(mine, `violations: ${JSON.stringify(rows)}`).toBeDefined();
      expect(message).toContain(rows[0]!.key);
      expect(message).toContain(rows[0]!.value);
      expect(message).toContain(rows[0]!.allowed);
      expect(mine!.allowed.length).toBeGreaterThan(0);
    });

    it('passes the valid example', async () => {
      const { file, architecture } = await exampleFile(guard, guard.examples.valid);
      expect(loaderGuardViolations(file.metadata, architecture, file.tensors)).toEqual([]);
      expect(() => checkLoaderGuards(file, architecture)).not.toThrow();
    });
  });

  it('a row limited to some architectures says nothing about others', async () => {
    const guard = LOADER_GUARDS.find((g) => g.architectures)!;
    const { file } = await exampleFile({ ...guard, examples: { ...guard.examples, architecture: 'llama' } }, guard.examples.invalid);
    expect(loaderGuardViolations(file.metadata, 'llama').filter((v) => v.guard === guard)).toEqual([]);
  });

  it('a token that a NUL byte cuts to the text of another token is a duplicate, as llama.cpp reads C strings', async () => {
    const guard = LOADER_GUARDS.find((g) => g.assertText.includes('id_to_token.size() == token_to_id.size()'))!;
    const edit = (v: GgufValue | undefined) =>
      v?.type === 'array' && v.itemType === 'string'
        ? { ...v, value: v.value.map((t, i) => (i === 260 ? `${v.value[259]}\0x` : t)) }
        : null;
    const { file } = await exampleFile(guard, { 'tokenizer.ggml.tokens': edit });
    const rows = loaderGuardViolations(file.metadata, 'llama', file.tensors).filter((v) => v.guard === guard);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.value).toContain('token 260');
  });

  it('values of another type are left to llama.cpp, which refuses them with an error it catches', async () => {
    const guard = LOADER_GUARDS.find((g) => g.key === '{arch}.block_count')!;
    const { file } = await exampleFile(guard, { 'llama.block_count': gguf.i32(-1) });
    expect(loaderGuardViolations(file.metadata, 'llama', file.tensors)).toEqual([]);
  });
});

const hasVendor = existsSync(join(vendor, 'src', 'llama-model.cpp'));
if (!hasVendor) console.warn(`loader-guards: skipping the source-line checks: ${vendor} is absent (npm install materializes it)`);

describe.skipIf(!hasVendor)('each row still guards its llama.cpp line (vendor/llama.cpp at the pin)', () => {
  it.each(LOADER_GUARDS.map((g) => [g.llamaCppSource, g.assertText] as const))('%s: %s', (source, text) => {
    const [file, line] = source.split(':') as [string, string];
    const lines = readFileSync(join(vendor, file), 'utf8').split('\n');
    expect(lines[Number(line) - 1]?.trim()).toBe(text);
  });
});
