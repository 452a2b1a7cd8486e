// The loader's promise for every GPU generation the release CUDA package is for: a module holding
// what the release build holds (scripts/cuda-release.mjs: its architecture list, as nvcc and ggml
// turn it into SASS and PTX) is judged by the same fatbin check and availability logic the loader
// runs, for each generation's compute capability under a CUDA 13.0 and a CUDA 13.1 driver. Each is
// accepted from its own SASS, run from PTX (compiled by the driver on the first load), or refused
// with the remedy. The first-load JIT time is measured on a GPU host (scripts/gpu-session.sh).
import { describe, expect, it } from 'vitest';
import type { NativeAddon } from '../../lib/binding/native.js';
import { cudaAvailability } from '../../lib/gpu/availability.js';
import { cudaCodeVerdict, describeCudaCode, readCudaModuleCode } from '../../lib/gpu/fatbin.js';
import { RELEASE_CUDA_ARCHITECTURES, imagesForArchitectures } from '../../scripts/cuda-release.mjs';
import { writeModule } from '../helpers/cuda-module.js';

/** One GPU generation: its compute capability, GPUs people own of it, and what the release module does there. */
interface Generation {
  capability: string;
  gpus: string;
  expect: { runs: 'sass'; via: string } | { runs: 'ptx'; via: string } | { runs: 'no'; remedy: RegExp };
}

const generations: Generation[] = [
  { capability: '6.1', gpus: 'Pascal: GTX 1080, P40', expect: { runs: 'no', remedy: /CUDA 12 toolkit .*--arch 61/ } },
  { capability: '7.0', gpus: 'Volta: V100', expect: { runs: 'no', remedy: /CUDA 12 toolkit .*--arch 70/ } },
  { capability: '7.5', gpus: 'Turing: T4, RTX 2080', expect: { runs: 'sass', via: 'SASS sm_75' } },
  { capability: '8.0', gpus: 'Ampere: A100, A30', expect: { runs: 'sass', via: 'SASS sm_80' } },
  { capability: '8.6', gpus: 'Ampere: RTX 3060, 3090, 3050 laptop, A10', expect: { runs: 'sass', via: 'SASS sm_86' } },
  { capability: '8.9', gpus: 'Ada: RTX 4060 laptop, 4090, L4, L40S', expect: { runs: 'sass', via: 'SASS sm_89' } },
  { capability: '9.0', gpus: 'Hopper: H100, H200, GH200', expect: { runs: 'sass', via: 'SASS sm_90' } },
  { capability: '10.0', gpus: 'Blackwell: B200, GB200', expect: { runs: 'sass', via: 'SASS sm_100' } },
  { capability: '10.3', gpus: 'Blackwell Ultra: B300, GB300', expect: { runs: 'sass', via: 'SASS sm_100' } },
  { capability: '12.0', gpus: 'Blackwell: RTX 5090, 5070, RTX PRO 6000', expect: { runs: 'sass', via: 'SASS sm_120a' } },
  { capability: '12.1', gpus: 'Blackwell: DGX Spark (GB10)', expect: { runs: 'sass', via: 'SASS sm_121a' } },
  // What no SASS covers yet: the driver compiles the newest PTX at or below it.
  {
    capability: '11.0',
    gpus: 'Blackwell: Jetson Thor (arm64; stands for any GPU newer than the SASS)',
    expect: { runs: 'ptx', via: 'PTX compute_100' },
  },
];

// The release module: hundreds of code units, each with the same images; three stand for them.
const images = imagesForArchitectures(RELEASE_CUDA_ARCHITECTURES, '9.0');
const modulePath = writeModule([images, images, images]);
const code = readCudaModuleCode(modulePath)!;

/** A loaded addon as the loader sees it on a host with one GPU of `capability` under a driver for CUDA `cuda`. */
function host(capability: string, cuda: number, cudaDevices = 1) {
  const addon = {
    nvmlSample: () => ({
      available: true,
      driverVersion: cuda >= 13000 ? '580.95.05' : '575.57.08',
      cudaDriverVersion: cuda,
      devices: [{ index: 0, name: `GPU ${capability}`, computeCapability: capability } as never],
    }),
    listBackends: () => [
      { name: 'CPU', deviceCount: 1, features: {} },
      { name: 'CUDA', deviceCount: cudaDevices, features: {} },
    ],
    listDevices: () => (cudaDevices > 0 ? [{ name: 'CUDA0', backend: 'CUDA', type: 'gpu' }] : []),
  } as unknown as NativeAddon;
  return {
    addon,
    dir: '/pkg',
    cudaModule: {
      path: modulePath,
      source: 'package' as const,
      metadata: { cudaCompilerVersion: '13.0' } as never,
    },
  };
}

describe('the release CUDA module, read back', () => {
  it('holds SASS for every family from Turing to Blackwell, and compute_100 PTX for newer GPUs', () => {
    expect(describeCudaCode(code)).toBe(
      'SASS sm_75, sm_80, sm_86, sm_89, sm_90, sm_100, sm_120a, sm_121a; PTX compute_100 (PTX ISA 9.0: CUDA 13.0 drivers and newer)',
    );
  });
});

describe.each(generations)('compute capability $capability ($gpus)', ({ capability, expect: want }) => {
  for (const [driver, cuda] of [
    ['13.0', 13000],
    ['13.1', 13010],
  ] as const) {
    it(`under a CUDA ${driver} driver: ${want.runs === 'sass' ? want.via : want.runs === 'ptx' ? `${want.via}, JIT-compiled` : 'refused with the remedy'}`, () => {
      const verdict = cudaCodeVerdict(code, capability, driver);
      const availability = cudaAvailability(host(capability, cuda));
      if (want.runs === 'no') {
        expect(verdict.runs).toBe(false);
        expect(availability.available).toBe(false);
        expect(availability.reason).toContain(`cannot run ${modulePath}: it holds no code that compute capability ${capability} can run`);
        expect(availability.remedy).toMatch(want.remedy);
        return;
      }
      expect(verdict).toEqual({
        runs: true,
        via: want.runs === 'ptx' ? `${want.via}, compiled by the driver at first use` : want.via,
        jit: want.runs === 'ptx',
      });
      expect(availability).toMatchObject({
        available: true,
        devices: ['CUDA0'],
        runsAs: [`GPU ${capability}: ${verdict.runs && verdict.via}`],
      });
      // doctor's note on the first-load compile is for exactly the GPUs that will JIT.
      expect(availability.jitGpus).toEqual(want.runs === 'ptx' ? [`GPU ${capability}`] : undefined);
    });
  }

  it('under a CUDA 12.9 driver: the CUDA 13 runtime sees no device, and the remedy is the driver', () => {
    const availability = cudaAvailability(host(capability, 12090, 0));
    expect(availability.available).toBe(false);
    expect(availability.reason).toBe(
      'the NVIDIA driver 575.57.08 supports CUDA 12.9, and the CUDA module was built with CUDA 13.0: the CUDA runtime finds no device under a driver that old',
    );
    expect(availability.remedy).toBe("update the NVIDIA driver to 580.65.06 or newer (a driver for CUDA 13), or pass gpu: 'cpu'");
  });
});
