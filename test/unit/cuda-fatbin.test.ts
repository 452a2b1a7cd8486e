// Reading a CUDA module's fatbin headers, and deciding whether a device and driver can run it.
// The modules are small ELF files (test/helpers/cuda-module.ts) with the layout nvcc writes.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cudaCodeVerdict,
  cudaCodeVerdicts,
  cudaVersionForPtxIsa,
  describeCudaCode,
  readCudaModuleCode,
  type CudaCodeImage,
} from '../../lib/gpu/fatbin.js';
import { cudaAvailability } from '../../lib/gpu/availability.js';
import type { NativeAddon } from '../../lib/binding/native.js';
import { ptx, sass, writeModule } from '../helpers/cuda-module.js';

type Image = CudaCodeImage;

// What our default build holds (75/80/100/120 as PTX, 86/89/90 as SASS, CUDA 13.0), and what
// node-llama-cpp 3.22.1's CUDA 13 package holds (read from its libggml-cuda.so, built with CUDA 13.1).
const ours = [sass(86), sass(89), sass(90), ptx(75, '9.0'), ptx(80, '9.0'), ptx(100, '9.0'), ptx(120, '9.0')];
const cuda131Build = [ptx(75, '9.1'), ptx(80, '9.1'), sass(86), sass(89), ptx(90, '9.1'), sass(120), sass(121)];

describe('reading the fatbin', () => {
  it('lists every unit with its SASS and PTX images, and the PTX ISA', () => {
    const code = readCudaModuleCode(writeModule([ours, ours.slice(0, 3)]))!;
    expect(code.units).toHaveLength(2);
    expect(code.units[0]).toEqual(ours);
    expect(describeCudaCode(code)).toBe(
      'SASS sm_86, sm_89, sm_90; PTX compute_75, compute_80, compute_100, compute_120 (PTX ISA 9.0: CUDA 13.0 drivers and newer)',
    );
  });

  it('knows nothing, rather than something wrong, about a file without a fatbin', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cuda-llama-fatbin-'));
    writeFileSync(join(dir, 'not-elf.so'), 'hello');
    expect(readCudaModuleCode(join(dir, 'not-elf.so'))).toBeNull();
    expect(readCudaModuleCode(writeModule([]))).toBeNull();
  });

  it('maps PTX ISA versions to the oldest CUDA driver that compiles them', () => {
    expect(cudaVersionForPtxIsa('9.1')).toEqual([13, 1]);
    expect(cudaVersionForPtxIsa('8.8')).toEqual([12, 9]); // CUDA 12.6 kept ISA 8.5
    expect(cudaVersionForPtxIsa('8.5')).toEqual([12, 5]);
    expect(cudaVersionForPtxIsa('7.8')).toEqual([11, 8]);
    expect(cudaVersionForPtxIsa('6.4')).toBeNull();
  });
});

describe('can this device and driver run it', () => {
  const code = (units: Image[][]) => ({ path: 'libggml-cuda.so', units });

  it('takes SASS of the same major version and at most the device minor one', () => {
    expect(cudaCodeVerdict(code([ours]), '9.0', '13.0')).toEqual({ runs: true, via: 'SASS sm_90', jit: false });
    expect(cudaCodeVerdict(code([ours]), '8.9', '13.0')).toEqual({ runs: true, via: 'SASS sm_89', jit: false });
    // sm_121 does not run on 12.0, sm_120 does; sm_86 never runs on 9.0.
    expect(cudaCodeVerdict(code([[sass(121), sass(120)]]), '12.0', '13.0')).toEqual({ runs: true, via: 'SASS sm_120', jit: false });
    expect(cudaCodeVerdict(code([[sass(86)]]), '9.0', '13.0')).toMatchObject({ runs: false, fix: 'rebuild' });
  });

  it('arch-specific code (sm_120a, as ggml builds every 12X) runs only on exactly that compute capability; family-specific on its major version', () => {
    expect(cudaCodeVerdict(code([[sass(120, 'a')]]), '12.0', '13.0')).toEqual({ runs: true, via: 'SASS sm_120a', jit: false });
    // A plain sm_120 cubin would run on a 12.1 GPU (a DGX Spark's GB10); sm_120a does not.
    expect(cudaCodeVerdict(code([[sass(120)]]), '12.1', '13.0')).toMatchObject({ runs: true, via: 'SASS sm_120' });
    expect(cudaCodeVerdict(code([[sass(120, 'a')]]), '12.1', '13.0')).toMatchObject({ runs: false, fix: 'rebuild' });
    expect(cudaCodeVerdict(code([[sass(120, 'a'), ptx(100, '9.0')]]), '12.1', '13.0')).toMatchObject({
      runs: true,
      via: 'PTX compute_100, compiled by the driver at first use',
    });
    expect(cudaCodeVerdict(code([[sass(120, 'f')]]), '12.1', '13.0')).toMatchObject({ runs: true, via: 'SASS sm_120f' });
    // PTX: arch-specific only for that capability, family-specific only within its major version, plain for any newer one.
    expect(cudaCodeVerdict(code([[ptx(120, '9.0', 'a')]]), '12.1', '13.0').runs).toBe(false);
    expect(cudaCodeVerdict(code([[ptx(100, '9.0', 'f')]]), '10.3', '13.0').runs).toBe(true);
    expect(cudaCodeVerdict(code([[ptx(100, '9.0', 'f')]]), '12.0', '13.0').runs).toBe(false);
    expect(cudaCodeVerdict(code([[ptx(100, '9.0')]]), '12.0', '13.0').runs).toBe(true);
  });

  it("reads the variant from the entry header's flags, as nvcc writes them", () => {
    const images = [sass(86), sass(120, 'a'), ptx(120, '9.0', 'f'), ptx(100, '9.0')];
    expect(readCudaModuleCode(writeModule([images]))!.units).toEqual([images]);
    expect(describeCudaCode({ path: 'x', units: [images] })).toBe(
      'SASS sm_86, sm_120a; PTX compute_100, compute_120f (PTX ISA 9.0: CUDA 13.0 drivers and newer)',
    );
  });

  it('falls back to the newest PTX at or below the device, compiled by the driver', () => {
    expect(cudaCodeVerdict(code([ours]), '10.0', '13.0')).toEqual({
      runs: true,
      via: 'PTX compute_100, compiled by the driver at first use',
      jit: true,
    });
    expect(cudaCodeVerdict(code([ours]), '7.5', null)).toEqual({
      runs: true,
      via: 'PTX compute_75, compiled by the driver at first use',
      jit: true,
    });
  });

  it('refuses PTX newer than the driver: a CUDA 13.1 build has only PTX for an H100 under a 13.0 driver', () => {
    const verdict = cudaCodeVerdict(code([cuda131Build]), '9.0', '13.0');
    expect(verdict).toEqual({
      runs: false,
      fix: 'driver',
      driverCuda: '13.1',
      reason:
        'its only code for compute capability 9.0 is PTX compute_90 of PTX ISA 9.1, which only a CUDA 13.1 or newer driver can compile; this driver is CUDA 13.0',
    });
    expect(cudaCodeVerdict(code([cuda131Build]), '9.0', '13.1')).toEqual({
      runs: true,
      via: 'PTX compute_90, compiled by the driver at first use',
      jit: true,
    });
    expect(cudaCodeVerdict(code([cuda131Build]), '8.6', '13.0')).toEqual({ runs: true, via: 'SASS sm_86', jit: false });
  });

  it('checks every unit: one without code for the device is enough to refuse', () => {
    const verdict = cudaCodeVerdict(code([ours, [sass(86)]]), '9.0', '13.0');
    expect(verdict.runs).toBe(false);
    expect(verdict.runs === false && verdict.reason).toMatch(/\(1 of its 2 code units\)/);
    expect(cudaCodeVerdict(code([ours]), '6.1', '13.0')).toMatchObject({ runs: false, fix: 'rebuild' });
  });
});

describe('across GPUs', () => {
  it('none runs it only when every GPU NVML reports was judged and refused', () => {
    const code = { path: 'libggml-cuda.so', units: [ours] };
    const ampere = { name: 'NVIDIA A100', computeCapability: '8.0' };
    const volta = { index: 1, name: null, computeCapability: '7.0' };
    expect(cudaCodeVerdicts(code, [volta], '13.0')).toMatchObject({
      noneRuns: true,
      perGpu: [{ gpu: 'GPU 1', computeCapability: '7.0', verdict: { runs: false, fix: 'rebuild' } }],
    });
    expect(cudaCodeVerdicts(code, [volta, ampere], '13.0')).toMatchObject({
      noneRuns: false,
      perGpu: [{ gpu: 'GPU 1' }, { gpu: 'NVIDIA A100', verdict: { runs: true } }],
    });
    // A GPU without a compute capability is not judged, so it is not counted as refusing.
    expect(cudaCodeVerdicts(code, [volta, { name: 'unknown', computeCapability: null }], '13.0')).toMatchObject({
      noneRuns: false,
      perGpu: [{ gpu: 'GPU 1' }],
    });
    expect(cudaCodeVerdicts(code, [], '13.0').noneRuns).toBe(false);
  });
});

describe('the GPU policy reads the module it would load', () => {
  const addon = (computeCapability: string, cudaDriverVersion: number) =>
    ({
      nvmlSample: () => ({
        available: true,
        driverVersion: '580.159.04',
        cudaDriverVersion,
        devices: [{ index: 0, name: 'NVIDIA H100 80GB HBM3', computeCapability } as never],
      }),
      listBackends: () => [
        { name: 'CPU', deviceCount: 1, features: {} },
        { name: 'CUDA', deviceCount: 1, features: { ARCHS: '750,800,860,890,900,1200,1210' } },
      ],
      listDevices: () => [{ name: 'CUDA0', backend: 'CUDA', type: 'gpu' }],
    }) as unknown as NativeAddon;

  it('refuses a module whose only code for the device needs a newer driver, naming both fixes', () => {
    const path = writeModule([cuda131Build]);
    const binary = (cc: string, driver: number) => ({
      addon: addon(cc, driver),
      dir: '/x',
      cudaModule: { path, source: 'beside-addon' as const, metadata: null },
    });
    // ARCHS alone (900 is there) would have said yes.
    const refused = cudaAvailability(binary('9.0', 13000));
    expect(refused.available).toBe(false);
    expect(refused.reason).toBe(
      `NVIDIA H100 80GB HBM3 cannot run ${path}: its only code for compute capability 9.0 is PTX compute_90 of PTX ISA 9.1, ` +
        'which only a CUDA 13.1 or newer driver can compile; this driver is CUDA 13.0',
    );
    expect(refused.remedy).toBe(
      'update the NVIDIA driver to one for CUDA 13.1 or newer, or rebuild the CUDA module for it: `npm run build:cuda -- --arch 90`',
    );
    expect(cudaAvailability(binary('9.0', 13010))).toEqual({
      available: true,
      devices: ['CUDA0'],
      runsAs: ['NVIDIA H100 80GB HBM3: PTX compute_90, compiled by the driver at first use'],
      jitGpus: ['NVIDIA H100 80GB HBM3'],
    });
    expect(cudaAvailability(binary('8.9', 13000))).toMatchObject({ available: true, runsAs: ['NVIDIA H100 80GB HBM3: SASS sm_89'] });
  });
});

describe('doctor', () => {
  it("prints the module's GPU code under its line, and what each GPU runs of it", async () => {
    const { formatDoctorReport } = await import('../../lib/tools/doctor.js');
    const text = formatDoctorReport({
      ok: true,
      build: {
        path: '/pkg/build/Release/cuda_llama.node',
        source: 'local-build',
        metadata: null,
        llamaCppCommit: 'de3ff815ea7d559ee917f063901b8986f038abc6',
        backends: [],
        systemInfo: '',
        cudaRuntime: null,
        cudaModule: { path: '/pkg/build/Release/libggml-cuda.so', source: 'beside-addon', metadata: null },
        cudaModuleCode: 'SASS sm_86, sm_89, sm_90; PTX compute_75 (PTX ISA 9.0: CUDA 13.0 drivers and newer)',
        cuda: { available: true, devices: ['CUDA0'], runsAs: ['NVIDIA H100 80GB HBM3: SASS sm_90'] },
      },
      devices: [],
      telemetry: null,
      probes: [],
      problems: [],
      warnings: [],
    });
    expect(text).toContain(
      'CUDA module: /pkg/build/Release/libggml-cuda.so (beside the addon; CUDA ?, architectures ?)\n' +
        '  its GPU code: SASS sm_86, sm_89, sm_90; PTX compute_75 (PTX ISA 9.0: CUDA 13.0 drivers and newer)\n' +
        'CUDA: usable on CUDA0\n  runs on NVIDIA H100 80GB HBM3: SASS sm_90',
    );
    expect(text).not.toContain('JIT cache');
  });

  it('says when a GPU runs the module from PTX: the first load compiles it, and how to keep it cached', async () => {
    const { formatDoctorReport } = await import('../../lib/tools/doctor.js');
    const { PTX_JIT_NOTE } = await import('../../lib/gpu/availability.js');
    const text = formatDoctorReport({
      ok: true,
      build: {
        path: '/pkg/cuda_llama.node',
        source: 'prebuild',
        metadata: null,
        llamaCppCommit: 'de3ff815ea7d559ee917f063901b8986f038abc6',
        backends: [],
        systemInfo: '',
        cudaRuntime: null,
        cudaModule: null,
        cudaModuleCode: null,
        cuda: {
          available: true,
          devices: ['CUDA0'],
          runsAs: ['NVIDIA Jetson Thor: PTX compute_100, compiled by the driver at first use'],
          jitGpus: ['NVIDIA Jetson Thor'],
        },
      },
      devices: [],
      telemetry: null,
      probes: [],
      problems: [],
      warnings: [],
    });
    expect(text).toContain(
      `  runs on NVIDIA Jetson Thor: PTX compute_100, compiled by the driver at first use\n  NVIDIA Jetson Thor: ${PTX_JIT_NOTE}`,
    );
    expect(PTX_JIT_NOTE).toMatch(/first load .*CUDA_CACHE_MAXSIZE=4294967296/);
  });
});
