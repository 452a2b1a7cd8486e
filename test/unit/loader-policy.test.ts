// The loader's choices and the GPU policy, with injected fakes (no addon): which binary is tried,
// what a failure says, and why gpu: 'cuda' is refused.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { ErrorCode, GpuError, NativeBindingError } from '../../lib/errors.js';
import { cudaAvailability, remedyForLoadError } from '../../lib/gpu/availability.js';
import { decideGpu, modelParams } from '../../lib/gpu/decision.js';
import { cudaGpuNames, isCudaGpu } from '../../lib/gpu/devices.js';
import { CUDA_RUNTIME_WHEELS, cudaRuntimeRemedy } from '../../lib/gpu/runtime-libraries.js';
import {
  BINARY_FALLBACK_WARNING,
  CUDA_MODULE_FILE,
  CUDA_PACKAGE,
  binaryCandidates,
  loadNativeBinary,
  locateCudaModule,
  remediesFor,
} from '../../lib/binding/load-native.js';
import type { NativeAddon, NativeBackend, NativeDevice } from '../../lib/binding/native.js';

function fakeAddon(
  backends: NativeBackend[],
  devices: Partial<NativeDevice>[] = [],
  probe: string | null = null,
  computeCapability: string | null = null,
): NativeAddon {
  return {
    nvmlSample: () =>
      computeCapability === null
        ? { available: false, reason: 'no NVML here' }
        : {
            available: true,
            driverVersion: '580.0',
            cudaDriverVersion: 13000,
            devices: [{ index: 0, name: 'NVIDIA Test', computeCapability } as never],
          },
    listBackends: () => backends,
    listDevices: () => devices as NativeDevice[],
    probeLibrary: () => probe,
    loadBackendsFromDir: () => undefined,
  } as unknown as NativeAddon;
}

const cpuOnly = [{ name: 'CPU', deviceCount: 1, features: {} }];
const withCuda = [...cpuOnly, { name: 'CUDA', deviceCount: 1, features: { ARCHS: '900' } }];

describe('binary candidates', () => {
  it('tries the local build, then the prebuild; an explicit directory is the only candidate', () => {
    expect(binaryCandidates({}, '/pkg').map((c) => [c.source, c.dir])).toEqual([
      ['local-build', '/pkg/build/Release'],
      ['prebuild', `/pkg/prebuilds/${process.platform}-${process.arch}`],
    ]);
    expect(binaryCandidates({ CUDA_LLAMA_BINARY_DIR: '/x' }, '/pkg')).toEqual([{ source: 'env', dir: '/x' }]);
    // A relative folder is the working directory's, as a shell user means it.
    expect(binaryCandidates({ CUDA_LLAMA_BINARY_DIR: 'build-cuda/Release' }, '/pkg')).toEqual([
      { source: 'env', dir: join(process.cwd(), 'build-cuda', 'Release') },
    ]);
  });

  it('reports every candidate and a remedy when nothing loads', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-loader-'));
    writeFileSync(join(dir, 'cuda_llama.node'), 'not a shared object');
    const requireFn = ((path: string) => {
      throw new Error(`${path}: libcudart.so.13: cannot open shared object file`);
    }) as unknown as NodeJS.Require;
    let error: unknown;
    try {
      loadNativeBinary(
        [
          { source: 'local-build', dir: '/nowhere' },
          { source: 'prebuild', dir },
        ],
        requireFn,
      );
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(NativeBindingError);
    const e = error as NativeBindingError;
    expect(e.code).toBe(ErrorCode.NO_BINARY);
    expect(e.message).toMatch(/1\. \[local-build\] \/nowhere\/cuda_llama\.node does not exist/);
    expect(e.message).toMatch(/2\. \[prebuild\] .*libcudart\.so\.13/);
    expect(e.message).toMatch(/Node-API/);
    expect(e.remedy).toMatch(/nvidia-cuda-runtime/);
    expect(e.remedy).toMatch(/npm run build:native/);
  });

  it('passes over a local build that fails to load, and says so when a later candidate loads', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-broken-'));
    writeFileSync(join(dir, 'cuda_llama.node'), 'not loadable');
    const good = mkdtempSync(join(tmpdir(), 'cuda-llama-good-'));
    writeFileSync(join(good, 'cuda_llama.node'), '');
    // The fingerprint is reported, not judged here: the build scripts keep a local build current.
    writeFileSync(join(good, 'cuda-llama-build.json'), JSON.stringify({ variant: 'cpu', nativeSourcesSha256: 'a'.repeat(64) }));
    const addon = { loadBackendsFromDir: () => undefined, listBackends: () => [] };
    const requireFn = ((path: string) => {
      if (path.startsWith(dir)) throw new Error(`${path}: undefined symbol: llama_model_load_from_file`);
      return addon;
    }) as unknown as NodeJS.Require;
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const loaded = loadNativeBinary(
        [
          { source: 'local-build', dir },
          { source: 'prebuild', dir: good },
        ],
        requireFn,
      );
      expect(loaded.source).toBe('prebuild');
      expect(loaded.metadata?.nativeSourcesSha256).toBe('a'.repeat(64));
      expect(warn).toHaveBeenCalledWith(
        expect.stringMatching(/running .*cuda_llama\.node \(prebuild\) because \[local-build\] .*undefined symbol.*npm run build:native/),
        { type: 'CudaLlamaWarning', code: BINARY_FALLBACK_WARNING },
      );
      // A candidate that is simply not there (no local build in an installed package) is no news.
      warn.mockClear();
      loadNativeBinary(
        [
          { source: 'local-build', dir: '/nowhere' },
          { source: 'prebuild', dir: good },
        ],
        requireFn,
      );
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });

  it('matches remedies to failures', () => {
    expect(remediesFor([], ['--no-addons'])[0]).toMatch(/--no-addons/);
    expect(remediesFor([{ source: 'prebuild', dir: '/', reason: "GLIBCXX_3.4.32' not found" }], [])[0]).toMatch(/newer C\/C\+\+ runtime/);
  });
});

describe('GPU policy', () => {
  it("gpu: 'cuda' with a CPU-only build: ERR_CUDA_UNAVAILABLE naming the missing module", () => {
    const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-cpuonly-'));
    const binary = { addon: fakeAddon(cpuOnly), dir, cudaModule: null };
    expect(() => decideGpu({ gpu: 'cuda' }, binary)).toThrow(GpuError);
    expect(() => decideGpu({ gpu: 'cuda' }, binary)).toThrow(new RegExp(`${CUDA_MODULE_FILE} is not there`));
    try {
      decideGpu({ gpu: 'cuda' }, binary);
    } catch (e) {
      expect((e as GpuError).code).toBe(ErrorCode.CUDA_UNAVAILABLE);
      expect((e as GpuError).remedy).toMatch(/build:cuda/);
      expect((e as GpuError).remedy).toContain(`npm install ${CUDA_PACKAGE}`);
    }
  });

  it("uses the optional CUDA package only when it was built from the addon's llama.cpp commit", () => {
    const addonDir = mkdtempSync(join(tmpdir(), 'cuda-llama-addon-'));
    const packageDir = mkdtempSync(join(tmpdir(), 'cuda-llama-cudapkg-'));
    writeFileSync(join(packageDir, 'package.json'), JSON.stringify({ name: CUDA_PACKAGE }));
    const resolve = (request: string) => {
      expect(request).toBe(`${CUDA_PACKAGE}/package.json`);
      return join(packageDir, 'package.json');
    };
    const addonMetadata = { llamaCppCommit: 'de3ff815ea7d559ee917f063901b8986f038abc6' } as never;
    // Not installed: no module, and the policy says what to install.
    expect(
      locateCudaModule(addonDir, addonMetadata, () => {
        throw new Error('Cannot find module');
      }),
    ).toBeNull();
    // Installed without its module.
    expect(locateCudaModule(addonDir, addonMetadata, resolve)?.problem).toMatch(/has no libggml-cuda\.so/);
    // Built from another llama.cpp: refused with the reason, never loaded.
    writeFileSync(join(packageDir, CUDA_MODULE_FILE), '');
    writeFileSync(join(packageDir, 'cuda-llama-build.json'), JSON.stringify({ variant: 'cuda', llamaCppCommit: '0123456789abcdef' }));
    const other = locateCudaModule(addonDir, addonMetadata, resolve)!;
    expect(other).toMatchObject({ source: 'package', path: join(packageDir, CUDA_MODULE_FILE) });
    expect(other.problem).toBe(`${CUDA_PACKAGE} was built from llama.cpp 0123456789ab, the addon from de3ff815ea7d`);
    const refused = cudaAvailability({ addon: fakeAddon(cpuOnly), dir: addonDir, cudaModule: other });
    expect(refused).toMatchObject({ available: false, reason: other.problem });
    expect(refused.remedy).toMatch(/matches cuda-llama's/);
    // The same commit: used, and a load failure is reported from the package's path.
    writeFileSync(
      join(packageDir, 'cuda-llama-build.json'),
      JSON.stringify({ variant: 'cuda', llamaCppCommit: 'de3ff815ea7d559ee917f063901b8986f038abc6', cudaArchitectures: '90-real' }),
    );
    const same = locateCudaModule(addonDir, addonMetadata, resolve)!;
    expect(same.problem).toBeUndefined();
    expect(same.metadata).toMatchObject({ variant: 'cuda', cudaArchitectures: '90-real' });
    const failed = cudaAvailability({
      addon: fakeAddon(cpuOnly, [], 'libcuda.so.1: cannot open shared object file'),
      dir: addonDir,
      cudaModule: same,
    });
    expect(failed.reason).toBe(`${same.path} failed to load: libcuda.so.1: cannot open shared object file`);
    expect(failed.remedy).toMatch(/NVIDIA driver/);
    // A module beside the addon (a local CUDA build) wins over the package.
    writeFileSync(join(addonDir, CUDA_MODULE_FILE), '');
    expect(locateCudaModule(addonDir, addonMetadata, resolve)?.source).toBe('beside-addon');
  });

  it('a CUDA module that fails to load: the dlopen reason and the install command', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-badcuda-'));
    writeFileSync(join(dir, CUDA_MODULE_FILE), '');
    const cudaModule = locateCudaModule(dir, null, () => '/unused');
    expect(cudaModule).toEqual({ path: join(dir, CUDA_MODULE_FILE), source: 'beside-addon', metadata: null });
    const availability = cudaAvailability({
      addon: fakeAddon(cpuOnly, [], 'libcublas.so.13: cannot open shared object file'),
      dir,
      cudaModule,
    });
    expect(availability.available).toBe(false);
    expect(availability.reason).toMatch(/libcublas\.so\.13/);
    expect(availability.remedy).toBe(cudaRuntimeRemedy());
    expect(remedyForLoadError('libcuda.so.1: cannot open')).toMatch(/NVIDIA driver/);
    expect(remedyForLoadError('libcudart.so.13: cannot open')).toBe(cudaRuntimeRemedy());
  });

  it('gives one pip command for the CUDA 13 runtime, in the loader and in the policy alike', () => {
    expect(CUDA_RUNTIME_WHEELS).toEqual(['nvidia-cuda-runtime==13.0.*', 'nvidia-cublas==13.0.*']);
    expect(cudaRuntimeRemedy()).toContain('`pip install "nvidia-cuda-runtime==13.0.*" "nvidia-cublas==13.0.*"`');
    expect(remediesFor([{ source: 'prebuild', dir: '/', reason: 'libcublas.so.13: cannot open shared object file' }], [])).toEqual([
      cudaRuntimeRemedy(),
    ]);
  });

  it('calls a device the GPU only when the registry lists it as a CUDA GPU', () => {
    const devices = [
      { name: 'CPU', backend: 'CPU', type: 'cpu' as const },
      { name: 'CUDA0', backend: 'CUDA', type: 'gpu' as const },
      { name: 'BLAS', backend: 'BLAS', type: 'accel' as const },
      { name: 'CUDA1', backend: 'CUDA', type: 'gpu' as const },
    ];
    expect(devices.map(isCudaGpu)).toEqual([false, true, false, true]);
    expect(cudaGpuNames(devices)).toEqual(['CUDA0', 'CUDA1']);
  });

  it('a CUDA backend with no device', () => {
    const availability = cudaAvailability({
      addon: fakeAddon([...cpuOnly, { name: 'CUDA', deviceCount: 0, features: {} }]),
      dir: '/x',
      cudaModule: null,
    });
    expect(availability).toMatchObject({ available: false, reason: 'the CUDA backend loaded but found no CUDA device' });
  });

  it("gpu: 'auto' without CUDA decides for the CPU and records why, without a warning (the load warns)", () => {
    const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-auto-'));
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const decision = decideGpu({ gpu: 'auto' }, { addon: fakeAddon(cpuOnly), dir, cudaModule: null });
      expect(decision).toMatchObject({ target: 'cpu', requested: 'auto', devices: [], gpuLayers: 0 });
      expect(decision.fallback?.reason).toMatch(/no CUDA backend/);
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });

  it('a GPU older than every compiled architecture is refused with the rebuild command', () => {
    const gpus = [{ name: 'CUDA0', backend: 'CUDA', type: 'gpu' as const }];
    const old = cudaAvailability({ addon: fakeAddon(withCuda, gpus, null, '8.6'), dir: '/x', cudaModule: null });
    expect(old.available).toBe(false);
    expect(old.reason).toMatch(/compute capability 8\.6, older than every architecture this CUDA build contains \(900\)/);
    expect(old.remedy).toMatch(/--arch 86/);
    expect(cudaAvailability({ addon: fakeAddon(withCuda, gpus, null, '9.0'), dir: '/x', cudaModule: null }).available).toBe(true);
  });

  it("gpu: 'cuda' with a CUDA device: every layer on it, CPU excluded from placement", () => {
    const binary = {
      addon: fakeAddon(withCuda, [
        { name: 'CUDA0', backend: 'CUDA', type: 'gpu' },
        { name: 'CPU', backend: 'CPU', type: 'cpu' },
      ]),
      dir: '/x',
      cudaModule: null,
    };
    const decision = decideGpu({ gpu: 'cuda' }, binary);
    expect(decision).toMatchObject({ target: 'cuda', devices: ['CUDA0'], gpuLayers: 'max', fallback: null });
    expect(modelParams(decision, {})).toMatchObject({ devices: ['CUDA0'], nGpuLayers: -1 });
    // llama.cpp counts the output layer too: 7 repeating layers are its n_gpu_layers 8.
    expect(modelParams(decideGpu({ gpu: 'cuda', gpuLayers: 7 }, binary), {})).toMatchObject({ nGpuLayers: 8 });
    expect(modelParams(decideGpu({ gpu: 'cuda', gpuLayers: 0 }, binary), {})).toMatchObject({ nGpuLayers: 0 });
    expect(modelParams(decideGpu({ gpu: 'cpu' }, binary), {})).toMatchObject({ devices: [], nGpuLayers: 0 });
  });
});

describe('layer report formatting', async () => {
  const { buildLayerReport } = await import('../../lib/layer-report.js');
  const none = { count: 0, examples: [] };
  it('summarises a partial offload from API data', () => {
    const report = buildLayerReport({
      decision: { target: 'cuda', requested: 'cuda', devices: ['CUDA0'], gpuLayers: 2, fallback: null },
      placement: { layers: ['CPU', 'CPU', 'CUDA0', 'CUDA0'], output: 'CPU', input: 'CPU', outputTensor: 'CPU', hasOutputTensor: true },
      memory: [
        { bufferType: 'CUDA0', device: 'CUDA0', deviceType: 'gpu', isHost: false, model: 2 << 20, context: 1 << 20, compute: 3 << 20 },
        { bufferType: 'CPU_Mapped', device: null, deviceType: null, isHost: true, model: 5 << 20, context: 0, compute: 0 },
        { bufferType: 'CPU', device: 'CPU', deviceType: 'cpu', isHost: true, model: 0, context: 1 << 20, compute: 1 << 20 },
      ],
      tokenGraph: { splits: 3, nodes: 90, nodesByBackend: { CPU: 50, CUDA0: 40 }, cpuOpsOnGpuMemory: none },
      promptGraph: { splits: 3, nodes: 90, nodesByBackend: { CPU: 50, CUDA0: 40 }, cpuOpsOnGpuMemory: none },
      offloadKvCache: true,
    });
    expect(report.problems).toEqual([]);
    expect(report.offloaded).toEqual({ layers: 2, total: 4 });
    expect(report.kvCache).toEqual({ devices: ['CUDA0', 'CPU'], bytes: 2 << 20 });
    expect(report.devices.find((d) => d.device === 'CPU')).toMatchObject({ weightsBytes: 5 << 20, kvCacheBytes: 1 << 20 });
    expect(report.summary).toBe('offloaded: 2/4 layers to CUDA0; output CPU; KV cache CUDA0, CPU');
    expect(String(report)).toContain('layers: 0-1 CPU, 2-3 CUDA0');
  });

  it('carries ops that run on the CPU on GPU-resident data as a placement problem', () => {
    const example = { op: 'FLASH_ATTN_EXT', node: '__fattn__-0', backend: 'CPU', tensor: 'cache_k_l0', device: 'CUDA0' };
    const report = buildLayerReport({
      decision: { target: 'cuda', requested: 'cuda', devices: ['CUDA0'], gpuLayers: 'max', fallback: null },
      placement: { layers: ['CUDA0', 'CUDA0'], output: 'CUDA0', input: 'CPU', outputTensor: 'CUDA0', hasOutputTensor: true },
      memory: [
        { bufferType: 'CUDA0', device: 'CUDA0', deviceType: 'gpu', isHost: false, model: 2 << 20, context: 1 << 20, compute: 3 << 20 },
      ],
      tokenGraph: { splits: 2, nodes: 40, nodesByBackend: { CPU: 1, CUDA0: 39 }, cpuOpsOnGpuMemory: none },
      promptGraph: {
        splits: 5,
        nodes: 40,
        nodesByBackend: { CPU: 3, CUDA0: 37 },
        cpuOpsOnGpuMemory: { count: 2, examples: [example, { ...example, node: '__fattn__-1', tensor: 'cache_k_l1' }] },
      },
      offloadKvCache: true,
    });
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0]).toMatchObject({ kind: 'ops' });
    expect(report.problems[0]!.message).toBe(
      '2 op(s) of the prompt batch graph run on CPU although they read weights or KV cache in GPU memory ' +
        '(the GPU backend cannot run them here): FLASH_ATTN_EXT __fattn__-0 reads cache_k_l0 on CUDA0, FLASH_ATTN_EXT __fattn__-1 reads cache_k_l1 on CUDA0',
    );
    expect(report.graph.promptProcessing.cpuOpsOnGpuMemory.examples[0]).toEqual(example);
    expect(report.summary).toBe('offloaded: 2/2 layers to CUDA0; output CUDA0; KV cache CUDA0; NOT AS REQUESTED: ops');
    expect(String(report)).toContain('NOT AS REQUESTED (ops): 2 op(s) of the prompt batch graph');
    expect(JSON.parse(JSON.stringify(report)).problems).toEqual(report.problems);
  });
});

describe('placement verification', async () => {
  const { placementProblems, placementRemedy } = await import('../../lib/gpu/placement.js');
  const { cpuFallback } = await import('../../lib/gpu/decision.js');
  const { cpuFallbackMessage } = await import('../../lib/gpu/fallback.js');
  const cuda = { target: 'cuda' as const, requested: 'cuda' as const, devices: ['CUDA0'], fallback: null };
  const layers = (devices: string[]) => devices.map((device, index) => ({ index, device }));

  it('accepts a full offload and an exact partial offload', () => {
    expect(
      placementProblems(
        { ...cuda, gpuLayers: 'max' },
        { layers: layers(['CUDA0', 'CUDA0']), output: 'CUDA0', kvCache: { devices: ['CUDA0'] } },
        {},
      ),
    ).toEqual([]);
    expect(
      placementProblems(
        { ...cuda, gpuLayers: 1 },
        { layers: layers(['CPU', 'CUDA0']), output: 'CPU', kvCache: { devices: ['CPU', 'CUDA0'] } },
        {},
      ),
    ).toEqual([]);
  });

  it('names layers, output and KV cache that stayed on the CPU', () => {
    const problems = placementProblems(
      { ...cuda, gpuLayers: 'max' },
      { layers: layers(['CPU', 'CUDA0', 'CUDA0']), output: 'CPU', kvCache: { devices: ['CUDA0', 'CPU'] } },
      {},
    );
    expect(problems).toEqual([
      { kind: 'layers', message: '2 of 3 layers are on the GPU, 3 were requested (on the CPU: 0)' },
      { kind: 'output', message: 'the output layer is on CPU, not on the GPU' },
      { kind: 'kvCache', message: 'part of the KV cache is on CPU, not on the GPU' },
    ]);
    expect(placementRemedy(problems)).toMatch(/^free GPU memory or lower contextSize/);
    expect(
      placementProblems(
        { ...cuda, gpuLayers: 'max' },
        { layers: layers(['CUDA0']), output: 'CUDA0', kvCache: { devices: ['CPU'] } },
        { offloadKvCache: false },
      ),
    ).toEqual([]);
  });

  it('refuses CPU ops on GPU-resident data in a partial offload too, and never judges a CPU load', () => {
    const ops = {
      count: 1,
      examples: [{ op: 'MUL_MAT', node: 'ffn_out-1', backend: 'CPU', tensor: 'blk.1.ffn_down.weight', device: 'CUDA0' }],
    };
    const none = { count: 0, examples: [] };
    const facts = {
      layers: layers(['CPU', 'CUDA0']),
      output: 'CPU',
      kvCache: { devices: ['CPU', 'CUDA0'] },
      graph: { tokenGeneration: { cpuOpsOnGpuMemory: ops }, promptProcessing: { cpuOpsOnGpuMemory: none } },
    };
    const problems = placementProblems({ ...cuda, gpuLayers: 1 }, facts, {});
    expect(problems).toEqual([
      {
        kind: 'ops',
        message: expect.stringMatching(
          /^1 op\(s\) of the generation step graph run on CPU .*: MUL_MAT ffn_out-1 reads blk\.1\.ffn_down\.weight on CUDA0$/,
        ),
      },
    ]);
    expect(placementRemedy(problems)).toMatch(/^for ops the GPU cannot run: flashAttention 'auto'/);
    expect(placementProblems({ target: 'cpu', requested: 'auto', devices: [], gpuLayers: 0, fallback: null }, facts, {})).toEqual([]);
  });

  it("gpu: 'auto' settles on the CPU with the reason in the decision, and the load's warning says it", () => {
    const decision = cpuFallback('the model does not fit on the GPU: CUDA0 ...', "gpuLayers: 'auto' offloads as many layers as fit");
    expect(decision).toEqual({
      target: 'cpu',
      requested: 'auto',
      devices: [],
      gpuLayers: 0,
      fallback: { reason: 'the model does not fit on the GPU: CUDA0 ...', remedy: "gpuLayers: 'auto' offloads as many layers as fit" },
    });
    expect(cpuFallbackMessage(decision, [])).toBe(
      "gpu: 'auto' is running on the CPU because the model does not fit on the GPU: CUDA0 .... gpuLayers: 'auto' offloads as many layers as fit",
    );
  });

  it("the warning for gpu: 'auto' partly on the CPU names the problems and their remedy; other loads have none", () => {
    const problems = [{ kind: 'output' as const, message: 'the output layer is on CPU, not on the GPU' }];
    const auto = { ...cuda, requested: 'auto' as const, gpuLayers: 'max' as const };
    expect(cpuFallbackMessage(auto, problems)).toBe(
      `gpu: 'auto' is running partly on the CPU: the output layer is on CPU, not on the GPU. ${placementRemedy(problems)}`,
    );
    expect(cpuFallbackMessage(auto, [])).toBeNull();
    expect(cpuFallbackMessage({ ...cuda, gpuLayers: 'max' }, problems)).toBeNull();
    expect(cpuFallbackMessage({ target: 'cpu', requested: 'cpu', devices: [], gpuLayers: 0, fallback: null }, [])).toBeNull();
  });
});

describe('telemetry decoding', async () => {
  const { decodeThrottleReasons, isThrottled, archSupportsDevice, cudaVersionString, sampleGpus } =
    await import('../../lib/gpu/telemetry.js');
  it('names throttle bits and flags power/thermal ones', () => {
    expect(decodeThrottleReasons(0x1)).toEqual(['gpuIdle']);
    expect(isThrottled(decodeThrottleReasons(0x1))).toBe(false);
    expect(decodeThrottleReasons(0x4 | 0x40)).toEqual(['swPowerCap', 'hwThermalSlowdown']);
    expect(isThrottled(decodeThrottleReasons(0x40))).toBe(true);
    expect(decodeThrottleReasons(null)).toEqual([]);
  });
  it('checks compiled CUDA architectures against a compute capability', () => {
    expect(archSupportsDevice('900', '9.0')).toBe(true);
    expect(archSupportsDevice('900', '8.6')).toBe(false);
    expect(archSupportsDevice('750,800,860,890,900,1000,1200', '7.5')).toBe(true);
    expect(archSupportsDevice('1200', '9.0')).toBe(false);
    expect(archSupportsDevice(undefined, '9.0')).toBeNull();
    expect(cudaVersionString(13000)).toBe('13.0');
  });
  it('passes through an NVML that is not there', () => {
    expect(sampleGpus({ nvmlSample: () => ({ available: false, reason: 'libnvidia-ml.so.1: cannot open' }) })).toEqual({
      available: false,
      reason: 'libnvidia-ml.so.1: cannot open',
    });
  });
});

describe('CUDA runtime libraries', async () => {
  const { missingLibrary, satisfyLibraries } = await import('../../lib/gpu/runtime-libraries.js');
  it('reads the missing library from a dlopen error', () => {
    expect(missingLibrary('libcublas.so.13: cannot open shared object file: No such file or directory')).toBe('libcublas.so.13');
    expect(missingLibrary('undefined symbol: foo')).toBeNull();
  });

  it('preloads dependencies first (cublasLt before cublas) and stops at a library found nowhere', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-runtime-'));
    for (const lib of ['libcudart.so.13', 'libcublas.so.13', 'libcublasLt.so.13']) writeFileSync(join(dir, lib), '');
    const loaded = new Set<string>();
    const needs: Record<string, string[]> = { module: ['libcudart.so.13', 'libcublas.so.13'], 'libcublas.so.13': ['libcublasLt.so.13'] };
    const addon = {
      probeLibrary: (path: string) => {
        const name = path.split('/').pop() as string;
        const missing = (needs[name] ?? []).find((n) => !loaded.has(n));
        return missing ? `${missing}: cannot open shared object file: No such file or directory` : null;
      },
      preloadLibrary: (path: string) => {
        loaded.add(path.split('/').pop() as string);
        return null;
      },
    };
    const result = satisfyLibraries(addon, 'module', () => [{ dir, source: 'test' }]);
    expect(result.error).toBeNull();
    expect(result.preloaded.map((p) => p.soname)).toEqual(['libcudart.so.13', 'libcublasLt.so.13', 'libcublas.so.13']);
    needs.module.push('libcuda.so.1');
    const missing = satisfyLibraries(addon, 'module', () => [{ dir, source: 'test' }]);
    expect(missing.error).toMatch(/libcuda\.so\.1/);
  });
});

describe("gpuLayers: 'auto' through llama.cpp's fitter", async () => {
  const { fitLayers, modelParams: params } = await import('../../lib/gpu/decision.js');
  const { placementProblems } = await import('../../lib/gpu/placement.js');
  const cudaDecision = {
    target: 'cuda' as const,
    requested: 'cuda' as const,
    devices: ['CUDA0'],
    gpuLayers: 'auto' as const,
    fallback: null,
  };
  const fitting = (result: object) =>
    ({ fitParams: async () => ({ status: 'success', nGpuLayers: 12, tensorSplit: [], tensorOverrides: 0, ...result }) }) as never;

  it('uses the layer count the fitter chose, and checks placement against it', async () => {
    const decision = await fitLayers(fitting({}), '/m.gguf', cudaDecision, {});
    expect(decision.fittedLayers).toBe(12);
    expect(params(decision, {})).toMatchObject({ nGpuLayers: 12, devices: ['CUDA0'] });
    // The fitter answers in llama.cpp's count: 12 is 11 repeating layers and the output layer.
    const layers = Array.from({ length: 22 }, (_, index) => ({ index, device: index < 11 ? 'CPU' : 'CUDA0' }));
    expect(placementProblems(decision, { layers, output: 'CPU', kvCache: { devices: ['CPU', 'CUDA0'] } }, {})).toEqual([]);
  });

  it("refuses for gpu: 'cuda' and decides for the CPU (fallback set, no warning) for gpu: 'auto' when nothing fits", async () => {
    await expect(fitLayers(fitting({ status: 'failure' }), '/m.gguf', cudaDecision, {})).rejects.toMatchObject({
      code: ErrorCode.GPU_PLACEMENT,
    });
    await expect(fitLayers(fitting({ tensorOverrides: 3 }), '/m.gguf', cudaDecision, {})).rejects.toThrow(/tensor overrides/);
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const decision = await fitLayers(fitting({ status: 'failure' }), '/m.gguf', { ...cudaDecision, requested: 'auto' as never }, {});
      expect(decision).toMatchObject({ target: 'cpu', gpuLayers: 0 });
      expect(decision.fallback?.reason).toMatch(/fitter found no placement/);
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });

  it('leaves CPU decisions and explicit counts alone', async () => {
    const cpu = { target: 'cpu' as const, requested: 'cpu' as const, devices: [], gpuLayers: 0, fallback: null };
    expect(await fitLayers({} as never, '/m.gguf', cpu, {})).toBe(cpu);
    const counted = { ...cudaDecision, gpuLayers: 7 };
    expect(await fitLayers({} as never, '/m.gguf', counted, {})).toBe(counted);
  });
});
