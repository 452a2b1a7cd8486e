/**
 * Whether CUDA can be used with the loaded binary, and if not, exactly why and what to do: from
 * ggml's backend registry, the CUDA module's load error, and the GPU code in its fatbin.
 */
import { CUDA_MODULE_FILE, CUDA_PACKAGE, type LoadedBinary } from '../binding/load-native.js';
import { cudaGpuNames } from './devices.js';
import { cudaCodeVerdicts, readCudaModuleCode, type CudaModuleCode } from './fatbin.js';
import { cudaRuntimeRemedy } from './runtime-libraries.js';
import { archSupportsDevice, sampleGpus } from './telemetry.js';

export interface CudaAvailability {
  available: boolean;
  devices: string[];
  reason?: string;
  remedy?: string;
  /** Per NVIDIA GPU (NVML order), what the driver runs of it: "SASS sm_90", or PTX it compiles at first use. */
  runsAs?: string[];
  /** The GPUs (NVML names) that run some of the module from PTX, compiled by the driver on the first load. */
  jitGpus?: string[];
}

/** What a first load from PTX costs, and how to pay it once: doctor prints it for the GPUs in `jitGpus`. */
export const PTX_JIT_NOTE =
  'the NVIDIA driver compiles that PTX on the first load (a one-time wait) and keeps the result in its JIT cache ' +
  '(~/.nv/ComputeCache); set CUDA_CACHE_MAXSIZE=4294967296 (4 GiB, the most CUDA allows) so that all of it stays cached';

type Binary = Pick<LoadedBinary, 'addon' | 'dir' | 'cudaModule'>;

/** Why CUDA can or cannot be used with this binary, from the registry and the module file. */
export function cudaAvailability(binary: Binary): CudaAvailability {
  const registry = binary.addon.listBackends().find((b) => b.name === 'CUDA');
  if (!registry) return whyNoCudaBackend(binary);
  const devices = cudaGpuNames(binary.addon.listDevices());
  if (devices.length === 0) {
    const tooOld = driverTooOld(binary);
    if (tooOld) return { available: false, devices, ...tooOld };
    return {
      available: false,
      devices,
      reason: 'the CUDA backend loaded but found no CUDA device',
      remedy: 'check `nvidia-smi`, and that CUDA_VISIBLE_DEVICES does not hide every GPU',
    };
  }
  return gpuCodeVerdict(binary, devices, registry.features.ARCHS);
}

/** No CUDA backend registered: no module, a module that was passed over, or one that failed to load. */
function whyNoCudaBackend({ addon, dir, cudaModule }: Binary): CudaAvailability {
  if (!cudaModule) {
    return {
      available: false,
      devices: [],
      reason: `the loaded binary (${dir}) has no CUDA backend: ${CUDA_MODULE_FILE} is not there (CPU-only build) and ${CUDA_PACKAGE} is not installed`,
      remedy: `install the prebuilt CUDA module with \`npm install ${CUDA_PACKAGE}\`, or build the CUDA variant with \`npm run build:cuda\` (needs nvcc and cuBLAS, see README "GPU set-up"), or pass gpu: 'cpu'`,
    };
  }
  if (cudaModule.problem) return { available: false, devices: [], reason: cudaModule.problem, remedy: cudaModule.remedy };
  const loadError = addon.probeLibrary(cudaModule.path) ?? 'the module loaded but did not register a CUDA backend';
  return {
    available: false,
    devices: [],
    reason: `${cudaModule.path} failed to load: ${loadError}`,
    remedy: remedyForLoadError(loadError),
  };
}

/**
 * The oldest driver for CUDA 13.0 on Linux (NVIDIA's CUDA 13.0 release notes, "CUDA Toolkit and
 * Corresponding Driver Versions"): an older one has no CUDA 13 runtime support at all, so the CUDA
 * backend loads and sees no device.
 */
export const CUDA13_MINIMUM_LINUX_DRIVER = '580.65.06';
/** CUDA 13 builds no code for GPUs before Turing (compute capability 7.5); CUDA 12 still does. */
export const CUDA13_OLDEST_COMPUTE_CAPABILITY = 7.5;

function rebuild(cc: string): string {
  const arch = cc.replace('.', '');
  if (Number(cc) < CUDA13_OLDEST_COMPUTE_CAPABILITY)
    return (
      `CUDA 13 has no code for compute capability ${cc} (it starts at ${CUDA13_OLDEST_COMPUTE_CAPABILITY}, Turing): build the CUDA module ` +
      `with a CUDA 12 toolkit (\`CUDA_PATH=/usr/local/cuda-12.9 npm run build:cuda -- --arch ${arch}\`), or pass gpu: 'cpu'`
    );
  return `rebuild the CUDA module for it: \`npm run build:cuda -- --arch ${arch}\``;
}

/**
 * When the CUDA backend sees no device but NVML sees GPUs under a driver older than the CUDA
 * version the module was built with: the reason and the remedy. Otherwise null.
 */
function driverTooOld({ addon, cudaModule }: Binary): { reason: string; remedy: string } | null {
  const telemetry = sampleGpus(addon);
  if (!telemetry.available || telemetry.devices.length === 0 || telemetry.cudaDriverVersion === null) return null;
  const built = cudaModule?.metadata?.cudaCompilerVersion ?? '13.0';
  // A driver runs every runtime of its own major version and older ones (CUDA's minor version
  // compatibility), so only an older major version is too old.
  const driverMajor = Number(telemetry.cudaDriverVersion.split('.')[0]);
  const builtMajor = Number(built.split('.')[0]);
  if (!(driverMajor < builtMajor)) return null;
  return {
    reason:
      `the NVIDIA driver ${telemetry.driverVersion ?? ''} supports CUDA ${telemetry.cudaDriverVersion}, and the CUDA module was built with CUDA ${built}: ` +
      'the CUDA runtime finds no device under a driver that old',
    remedy: `update the NVIDIA driver to ${builtMajor === 13 ? `${CUDA13_MINIMUM_LINUX_DRIVER} or newer (a driver for CUDA 13)` : `one for CUDA ${builtMajor}`}, or pass gpu: 'cpu'`,
  };
}

/**
 * A device the module has no usable code for would list fine and then abort the process at its
 * first kernel launch. The module's fatbin says exactly what it holds; ggml's ARCHS list (which
 * cannot tell SASS from PTX) is the fallback when the file has none this reader understands.
 * Refused only when no device can run it. With a mix, the ones that cannot are not left out of
 * placement: NVML numbers devices in PCI order, CUDA (and so ggml) fastest first, so an NVML
 * index does not name a CUDA device.
 */
function gpuCodeVerdict({ addon, cudaModule }: Binary, devices: string[], archs: string | undefined): CudaAvailability {
  const telemetry = sampleGpus(addon);
  if (!telemetry.available || telemetry.devices.length === 0) return { available: true, devices };
  const code = cudaModule ? cudaModuleCode(cudaModule.path) : null;
  if (code) {
    const { perGpu, noneRuns } = cudaCodeVerdicts(code, telemetry.devices, telemetry.cudaDriverVersion);
    const runsAs = perGpu.flatMap(({ gpu, verdict }) => (verdict.runs ? [`${gpu}: ${verdict.via}`] : []));
    const jitGpus = perGpu.flatMap(({ gpu, verdict }) => (verdict.runs && verdict.jit ? [gpu] : []));
    const first = perGpu[0];
    // noneRuns means every GPU was judged and refused; the last two tests only narrow the types.
    if (!noneRuns || !first || first.verdict.runs) return { available: true, devices, runsAs, ...(jitGpus.length > 0 ? { jitGpus } : {}) };
    const { verdict } = first;
    return {
      available: false,
      devices,
      runsAs,
      reason: `${first.gpu} cannot run ${cudaModule!.path}: ${verdict.reason}`,
      remedy:
        verdict.fix === 'driver'
          ? `update the NVIDIA driver to one for CUDA ${verdict.driverCuda} or newer, or ${rebuild(first.computeCapability)}`
          : rebuild(first.computeCapability),
    };
  }
  const tooOld = telemetry.devices.filter((d) => archSupportsDevice(archs, d.computeCapability) === false);
  const d = tooOld[0];
  if (!d || tooOld.length < telemetry.devices.length) return { available: true, devices };
  return {
    available: false,
    devices,
    reason: `${d.name ?? 'the GPU'} has compute capability ${d.computeCapability}, older than every architecture this CUDA build contains (${archs})`,
    remedy: rebuild(d.computeCapability!),
  };
}

/** The module's fatbin, read once per path (a module holds hundreds of code units); null when unreadable. */
const moduleCodeCache = new Map<string, CudaModuleCode | null>();
export function cudaModuleCode(path: string): CudaModuleCode | null {
  if (!moduleCodeCache.has(path)) {
    let code: CudaModuleCode | null = null;
    try {
      code = readCudaModuleCode(path);
    } catch {
      // Unreadable: nothing is known from the file, and ggml's ARCHS list decides.
    }
    moduleCodeCache.set(path, code);
  }
  return moduleCodeCache.get(path)!;
}

/** What to do about the CUDA module's dlopen error, by the library it names. */
export function remedyForLoadError(loadError: string): string {
  if (/libcuda\.so/.test(loadError))
    return "libcuda.so.1 is the NVIDIA driver: install the NVIDIA driver (a CUDA 13 capable one), or pass gpu: 'cpu'";
  if (/libcublas|libcudart/.test(loadError)) return cudaRuntimeRemedy();
  return "rebuild the CUDA variant (`npm run build:cuda`), or pass gpu: 'cpu'";
}
