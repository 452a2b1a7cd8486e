// Bad input gets a typed error and the process lives: bad files, absurd options, misuse.
import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContextError, DisposedError, ErrorCode, Llama, ModelFileError } from '../../lib/index.js';
import { readGguf, type GgufValue } from '../../lib/gguf/reader.js';
import { GgufWriter } from '../../lib/gguf/writer.js';
import { nativeBinary } from '../../lib/binding/load-native.js';
import { repoRoot, syntheticModel } from '../helpers/models.js';

let dir: string;
let tiny: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cuda-llama-bad-'));
  tiny = await syntheticModel('tiny');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function expectLoadError(path: string, code: string, message?: RegExp): Promise<void> {
  const error = await Llama.load(path, { gpu: 'cpu' }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModelFileError);
  expect((error as ModelFileError).code).toBe(code);
  expect((error as ModelFileError).remedy).toBeTruthy();
  if (message) expect((error as Error).message).toMatch(message);
}

/** Rewrites the tiny model's structure: metadata edits and a tensor filter/reshaper. */
async function rewriteModel(
  name: string,
  edit: {
    metadata?: (key: string, value: GgufValue) => GgufValue | null;
    tensor?: (name: string, dims: number[]) => number[] | null;
  },
): Promise<string> {
  const source = await readGguf(tiny);
  const bytes = await readFile(tiny);
  const writer = new GgufWriter();
  for (const [key, value] of source.metadata) {
    const next = edit.metadata ? edit.metadata(key, value) : value;
    if (next) writer.addKv(key, next);
  }
  const kept: { from: (typeof source.tensors)[number]; dims: number[] }[] = [];
  for (const t of source.tensors) {
    const dims = edit.tensor ? edit.tensor(t.name, t.dims) : t.dims;
    if (!dims) continue;
    writer.addTensor(t.name, dims, t.type);
    kept.push({ from: t, dims });
  }
  const out = join(dir, name);
  await writer.write(out, async (index, info, chunk) => {
    const { from } = kept[index];
    const data =
      from.byteSize === info.byteSize ? bytes.subarray(from.fileOffset, from.fileOffset + from.byteSize) : new Uint8Array(info.byteSize);
    await chunk.write(data);
  });
  return out;
}

describe('bad model files', () => {
  it('missing path, a directory, an empty file, random bytes', async () => {
    await expectLoadError(join(dir, 'nope.gguf'), ErrorCode.MODEL_NOT_FOUND, /not found/);
    await expectLoadError(dir, ErrorCode.MODEL_NOT_A_FILE);
    await writeFile(join(dir, 'empty.gguf'), '');
    await expectLoadError(join(dir, 'empty.gguf'), ErrorCode.MODEL_INVALID, /empty/);
    await writeFile(join(dir, 'random.gguf'), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)));
    await expectLoadError(join(dir, 'random.gguf'), ErrorCode.MODEL_INVALID, /not a GGUF/);
  });

  it('a truncated GGUF, a corrupted header, a corrupted tensor table', async () => {
    const bytes = await readFile(tiny);
    await writeFile(join(dir, 'truncated.gguf'), bytes.subarray(0, Math.floor(bytes.length / 2)));
    await expectLoadError(join(dir, 'truncated.gguf'), ErrorCode.MODEL_INVALID);

    const header = Buffer.from(bytes);
    header.writeUInt32LE(77, 4); // version
    await writeFile(join(dir, 'header.gguf'), header);
    await expectLoadError(join(dir, 'header.gguf'), ErrorCode.MODEL_INVALID, /version/);

    const layout = (await readGguf(tiny, { layout: true })).layout!;
    const table = Buffer.from(bytes);
    table.writeBigUInt64LE(1n << 40n, layout.tensors[3].dimsOffset); // an absurd dimension
    await writeFile(join(dir, 'table.gguf'), table);
    await expectLoadError(join(dir, 'table.gguf'), ErrorCode.MODEL_INVALID);
  });

  it('an unsupported architecture', async () => {
    const path = await rewriteModel('arch.gguf', {
      metadata: (key, value) => (key === 'general.architecture' ? { type: 'string', value: 'no-such-arch' } : value),
    });
    await expectLoadError(path, ErrorCode.UNSUPPORTED_ARCHITECTURE, /no-such-arch/);
  });

  it('well-formed GGUFs that llama.cpp refuses: a missing tensor, a wrong shape', async () => {
    const missing = await rewriteModel('missing.gguf', { tensor: (name, dims) => (name === 'output_norm.weight' ? null : dims) });
    await expectLoadError(missing, ErrorCode.MODEL_LOAD, /output_norm/);
    const shape = await rewriteModel('shape.gguf', { tensor: (name, dims) => (name === 'blk.0.attn_k.weight' ? [64, 64] : dims) });
    await expectLoadError(shape, ErrorCode.MODEL_LOAD, /attn_k/);
  });
});

describe('absurd options', () => {
  it.each([
    [{ contextSize: -1 }, RangeError, /contextSize/],
    [{ contextSize: 0 }, RangeError, /contextSize/],
    [{ contextSize: 1e12 }, RangeError, /contextSize/],
    [{ contextSize: 4096 }, RangeError, /training context \(2048\)/],
    [{ contextSize: 1.5 }, RangeError, /integer/],
    [{ threads: 0 }, RangeError, /threads/],
    [{ batchSize: 64, ubatchSize: 128 }, RangeError, /ubatchSize/],
    [{ gpu: 'gpu' }, TypeError, /"auto", "cuda", "cpu"/],
    [{ nGpuLayers: 10 }, TypeError, /use gpuLayers/],
    [{ gpuLayers: -3 }, RangeError, /gpuLayers/],
  ])('load %o', async (options, ErrorClass, message) => {
    await expect(Llama.load(tiny, options as never)).rejects.toThrow(ErrorClass);
    await expect(Llama.load(tiny, options as never)).rejects.toThrow(message);
  });

  it('generate options and a prompt longer than the context', async () => {
    const model = await Llama.load(tiny, { gpu: 'cpu', contextSize: 32 });
    try {
      for (const [options, ErrorClass] of [
        [{ maxTokens: 0 }, RangeError],
        [{ maxTokens: -5 }, RangeError],
        [{ maxTokens: 1.5 }, RangeError],
        [{ temperature: Number.NaN }, RangeError],
        [{ temperature: -1 }, RangeError],
        [{ topP: 0 }, RangeError],
        [{ seed: -1 }, RangeError],
        [{ stop: [''] }, TypeError],
        [{ signal: 'stop' }, TypeError],
        [{ temp: 0.5 }, TypeError],
      ] as const) {
        await expect(model.generate('hi', options as never)).rejects.toThrow(ErrorClass);
      }
      // llama.cpp rounds the context up (to 256 here); the effective size is what counts.
      const { contextSize } = model.contextInfo;
      expect(contextSize).toBeGreaterThanOrEqual(32);
      const long = 'word '.repeat(contextSize + 10);
      const error = await model.generate(long).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ContextError);
      expect(error).toMatchObject({ code: ErrorCode.CONTEXT_FULL });
      // A huge maxTokens is bounded by the room left in the context.
      const result = await model.generate('hi', { maxTokens: Number.MAX_SAFE_INTEGER, temperature: 0 });
      expect(['contextFull', 'maxTokens', 'eos']).toContain(result.stopReason);
      expect(result.promptTokens + result.tokens.length).toBeLessThanOrEqual(contextSize);
      // Token-id prompts are checked too.
      await expect(model.generate([1, 32000])).rejects.toThrow(RangeError);
    } finally {
      await model.dispose();
    }
  });
});

describe('lifecycle', () => {
  it('use after dispose throws ERR_DISPOSED; dispose is idempotent', async () => {
    const model = await Llama.load(tiny, { gpu: 'cpu', contextSize: 256 });
    await model.dispose();
    await model.dispose();
    expect(model.disposed).toBe(true);
    expect(() => model.tokenize('x')).toThrow(DisposedError);
    await expect(model.generate('x')).rejects.toMatchObject({ code: ErrorCode.DISPOSED });
    await expect(model.layerReport()).rejects.toMatchObject({ code: ErrorCode.DISPOSED });
  });

  it('dispose during generation stops it; running and queued calls reject with ERR_DISPOSED', async () => {
    const model = await Llama.load(tiny, { gpu: 'cpu', contextSize: 2048 });
    let disposing: Promise<void> | undefined;
    const running = model.generate('long', {
      maxTokens: 1500,
      temperature: 0,
      onText: () => {
        disposing ??= model.dispose();
      },
    });
    const queued = model.generate('queued', { maxTokens: 5 });
    await expect(running).rejects.toBeInstanceOf(DisposedError);
    await expect(queued).rejects.toBeInstanceOf(DisposedError);
    await disposing;
    expect(model.disposed).toBe(true);
  });

  it('aborting mid-load rejects with the reason, and the next load works', async () => {
    const small = await syntheticModel('small');
    const controller = new AbortController();
    const reason = new Error('stop loading');
    const fractions: number[] = [];
    await expect(
      Llama.load(small, {
        gpu: 'cpu',
        mmap: false,
        signal: controller.signal,
        onProgress: (f) => {
          fractions.push(f);
          if (f > 0) controller.abort(reason);
        },
      }),
    ).rejects.toBe(reason);
    expect(fractions.length).toBeGreaterThan(0);
    // Progress is coalesced: on a busy machine the worker can finish reading before the event loop
    // runs the first callback, and then the abort lands after the load (still rejected with the reason).
    if (Math.max(...fractions) >= 1) console.warn('abort mid-load: the load finished before the first progress callback ran');
    const model = await Llama.load(small, { gpu: 'cpu', contextSize: 128 });
    expect(model.info.layerCount).toBe(6);
    await model.dispose();
  });

  it('a wrong handle type throws a TypeError instead of crashing', async () => {
    const { addon } = nativeBinary();
    await expect(async () => addon.Context.create({} as never, {})).rejects.toThrow(TypeError);
    expect(() => new addon.Sampler({} as never, {} as never)).toThrow(TypeError);
    const flag = new addon.CancelFlag();
    expect(() => addon.layerPlacement(flag as never)).toThrow(TypeError);
    expect(() => addon.memoryBreakdown({} as never)).toThrow(TypeError);
  });

  it('the process exits cleanly with undisposed models and a generation in flight', () => {
    const script = `
      import { Llama } from ${JSON.stringify(join(repoRoot, 'lib', 'index.ts'))};
      const model = await Llama.load(${JSON.stringify(tiny)}, { gpu: 'cpu' });
      const other = await Llama.load(${JSON.stringify(tiny)}, { gpu: 'cpu' });
      await other.generate('warm', { maxTokens: 2 });
      if (process.argv[2] === 'exit-mid-generation') {
        model.generate('forever', { maxTokens: 100000, temperature: 0, onText: () => process.exit(0) });
      } else {
        console.log('loaded and left undisposed');
      }
    `;
    for (const mode of ['natural-exit', 'exit-mid-generation']) {
      const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, '--', mode], {
        cwd: repoRoot,
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect({ mode, status: child.status, signal: child.signal, stderr: child.stderr.slice(-500) }).toMatchObject({
        mode,
        status: 0,
        signal: null,
      });
    }
  });
});

describe('files are checked against the copy on disk', () => {
  it('a copied model loads the same as the original', async () => {
    const copy = join(dir, 'copy.gguf');
    await copyFile(tiny, copy);
    const model = await Llama.load(copy, { gpu: 'cpu', contextSize: 64 });
    expect(model.info.path).toBe(copy);
    await model.dispose();
  });
});

describe('user callbacks', () => {
  it('a throwing onProgress stops the load and becomes its error', async () => {
    const boom = new Error('progress handler failed');
    await expect(
      Llama.load(tiny, {
        gpu: 'cpu',
        mmap: false,
        onProgress: () => {
          throw boom;
        },
      }),
    ).rejects.toBe(boom);
    const model = await Llama.load(tiny, { gpu: 'cpu', contextSize: 64 });
    await model.dispose();
  });

  it('a throwing onText stops the generation and becomes its error', async () => {
    const model = await Llama.load(tiny, { gpu: 'cpu', contextSize: 256 });
    try {
      const boom = new Error('text handler failed');
      await expect(
        model.generate('x', {
          maxTokens: 50,
          onText: () => {
            throw boom;
          },
        }),
      ).rejects.toBe(boom);
      expect((await model.generate('x', { maxTokens: 3, temperature: 0 })).tokens).toHaveLength(3);
    } finally {
      await model.dispose();
    }
  });
});
