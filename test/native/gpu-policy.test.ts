// The GPU policy with the real addon on a CPU-only machine: every refusal we can provoke here.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CPU_FALLBACK_WARNING, ErrorCode, GpuError, Llama } from '../../lib/index.js';
import { nativeBinary } from '../../lib/binding/load-native.js';
import { repoRoot, syntheticModel } from '../helpers/models.js';

const cudaHere = Llama.build().cuda.available;
// Without CUDA, either no CUDA module is installed (a CPU-only build) or one is (the optional
// package, a CUDA build) and fails to load: on a machine with no NVIDIA driver, for libcuda.so.1.
const cudaModule = Llama.build().cudaModule;
const whyNoCuda = cudaModule
  ? { message: /libggml-cuda\.so failed to load: lib(cuda|cudart|cublas)\w*\.so/, remedy: /NVIDIA driver|pip install/ }
  : { message: /has no CUDA backend: libggml-cuda\.so is not there/, remedy: /build:cuda/ };
let tiny: string;
let scratch: string;

beforeAll(async () => {
  tiny = await syntheticModel('tiny');
  scratch = mkdtempSync(join(tmpdir(), 'cuda-llama-policy-'));
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('device names', () => {
  it("a name ggml's registry lacks is ERR_CUDA_UNAVAILABLE, from the load and from the fitter alike", async () => {
    const { addon } = nativeBinary();
    const missing = { code: ErrorCode.CUDA_UNAVAILABLE, message: "no device named CUDA99 in ggml's registry" };
    await expect(addon.Model.load(tiny, { devices: ['CUDA99'], nGpuLayers: -1 })).rejects.toMatchObject(missing);
    await expect(addon.fitParams(tiny, { nCtx: 256, devices: ['CUDA99'] }, 0)).rejects.toMatchObject(missing);
  });
});

describe.skipIf(cudaHere)('GPU policy on a machine without CUDA', () => {
  it(`gpu: 'cuda' throws ERR_CUDA_UNAVAILABLE naming the ${cudaModule ? "CUDA module's missing library" : 'missing CUDA module'}`, async () => {
    const error = await Llama.load(tiny, { gpu: 'cuda' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GpuError);
    expect(error).toMatchObject({ code: ErrorCode.CUDA_UNAVAILABLE });
    expect((error as Error).message).toMatch(whyNoCuda.message);
    expect((error as GpuError).remedy).toMatch(whyNoCuda.remedy);
    await expect(Llama.plan(tiny, { gpu: 'cuda' })).rejects.toMatchObject({ code: ErrorCode.CUDA_UNAVAILABLE });
  });

  it("gpu: 'auto' falls back to the CPU loudly: a coded warning and the fallback in the report", async () => {
    const warnings: { code?: string; message: string }[] = [];
    const spy = vi.spyOn(process, 'emitWarning').mockImplementation(((message: string, options: { code?: string }) => {
      warnings.push({ message, code: options?.code });
    }) as never);
    const model = await Llama.load(tiny, { contextSize: 256 });
    spy.mockRestore();
    try {
      expect(warnings).toEqual([expect.objectContaining({ code: CPU_FALLBACK_WARNING })]);
      const report = await model.layerReport();
      expect(report.policy).toMatchObject({ requested: 'auto', target: 'cpu' });
      expect(report.policy.fallback?.reason).toMatch(whyNoCuda.message);
      expect(report.policy.fallback?.reason).toBe(Llama.build().cuda.reason);
      expect(report.summary).toMatch(/CPU FALLBACK/);
      expect(String(report)).toMatch(/fallback:/);
    } finally {
      await model.dispose();
    }
  });

  it("Llama.plan() with gpu: 'auto' decides for the CPU without a warning; a load warns once", async () => {
    const codes: (string | undefined)[] = [];
    const listener = (warning: Error & { code?: string }) => codes.push(warning.code);
    // process.emitWarning delivers 'warning' on a later tick: wait one turn before reading.
    const delivered = () => new Promise((resolve) => setImmediate(resolve));
    process.on('warning', listener);
    try {
      const plan = await Llama.plan(tiny, { contextSize: 256 });
      expect(plan.policy).toMatchObject({ requested: 'auto', target: 'cpu' });
      await delivered();
      expect(codes).toEqual([]);
      const model = await Llama.load(tiny, { contextSize: 256, warmup: false });
      await model.dispose();
      await delivered();
      expect(codes).toEqual([CPU_FALLBACK_WARNING]);
    } finally {
      process.off('warning', listener);
    }
  });

  it('a CUDA module that fails to load: the error names the missing library and how to install it', () => {
    // A binary folder like build/Release, plus a libggml-cuda.so that needs a libcudart.so.13 that is not there.
    const bin = join(scratch, 'bin');
    const lib = join(scratch, 'lib');
    mkdirSync(bin);
    mkdirSync(lib);
    for (const file of readdirSync(join(repoRoot, 'build', 'Release')))
      symlinkSync(join(repoRoot, 'build', 'Release', file), join(bin, file));
    writeFileSync(join(scratch, 'empty.c'), 'int cuda_llama_fake_module;\n');
    execFileSync('cc', ['-shared', '-fPIC', '-Wl,-soname,libcudart.so.13', '-o', join(lib, 'libcudart.so.13'), join(scratch, 'empty.c')]);
    execFileSync('cc', [
      '-shared',
      '-fPIC',
      '-o',
      join(bin, 'libggml-cuda.so'),
      join(scratch, 'empty.c'),
      `-L${lib}`,
      '-Wl,--no-as-needed',
      '-l:libcudart.so.13',
    ]);
    // Keep one copy where only an explicit search would find it (as a PyPI wheel folder would be).
    const wheel = join(scratch, 'wheel');
    mkdirSync(wheel);
    execFileSync('cp', [join(lib, 'libcudart.so.13'), join(wheel, 'libcudart.so.13')]);
    rmSync(join(lib, 'libcudart.so.13'));

    const script = `
      import { Llama } from ${JSON.stringify(join(repoRoot, 'lib', 'index.ts'))};
      const build = Llama.build();
      const error = await Llama.load(${JSON.stringify(tiny)}, { gpu: 'cuda' }).catch((e) => e);
      console.log(JSON.stringify({ source: build.source, cuda: build.cuda, code: error.code, message: error.message, remedy: error.remedy }));
    `;
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, CUDA_LLAMA_BINARY_DIR: bin },
    });
    expect(child.status, child.stderr).toBe(0);
    const out = JSON.parse(child.stdout.trim().split('\n').pop() as string);
    expect(out.source).toBe('env');
    expect(out.cuda.available).toBe(false);
    expect(out.code).toBe(ErrorCode.CUDA_UNAVAILABLE);
    expect(out.message).toMatch(/libggml-cuda\.so failed to load: .*libcudart\.so\.13/);
    expect(out.remedy).toMatch(/pip install "nvidia-cuda-runtime==13\.0\.\*"/);
    expect(out.cuda.reason).toMatch(/libcudart\.so\.13/);

    // With the library's folder among the places searched, the loader preloads it and the module
    // loads; this fake registers no backend, and the error now says exactly that.
    const found = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `
      import { Llama } from ${JSON.stringify(join(repoRoot, 'lib', 'index.ts'))};
      const build = Llama.build();
      console.log(JSON.stringify({ runtime: build.cudaRuntime, cuda: build.cuda }));
    `,
      ],
      {
        cwd: repoRoot,
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, CUDA_LLAMA_BINARY_DIR: bin, CUDA_LLAMA_CUDA_LIB_DIRS: wheel },
      },
    );
    expect(found.status, found.stderr).toBe(0);
    const resolved = JSON.parse(found.stdout.trim().split('\n').pop() as string);
    expect(resolved.runtime.preloaded).toEqual([
      { soname: 'libcudart.so.13', path: join(wheel, 'libcudart.so.13'), source: 'CUDA_LLAMA_CUDA_LIB_DIRS' },
    ]);
    expect(resolved.runtime.error).toBeNull();
    expect(resolved.cuda.reason).toMatch(/libggml-cuda\.so failed to load: the module loaded but did not register a CUDA backend/);
  });
});
