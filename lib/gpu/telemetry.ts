/**
 * GPU telemetry from NVML (loaded at run time by the addon): clocks, power against its limit,
 * temperature, utilization and the current throttle reasons, named. A run whose GPU was throttled
 * (power, thermal or a hardware slowdown) is flagged, so slow numbers are explained, not guessed.
 */
import type { NativeAddon, NativeNvmlDevice } from '../binding/native.js';

/** nvmlClocksEventReasons bits (nvml.h), by the names NVIDIA documents. */
export const throttleReasonBits = {
  gpuIdle: 0x1,
  applicationsClocksSetting: 0x2,
  swPowerCap: 0x4,
  hwSlowdown: 0x8,
  syncBoost: 0x10,
  swThermalSlowdown: 0x20,
  hwThermalSlowdown: 0x40,
  hwPowerBrakeSlowdown: 0x80,
  displayClockSetting: 0x100,
} as const;
export type ThrottleReason = keyof typeof throttleReasonBits;

/** The reasons that mean "slower than it could be because of power or heat". */
const slowingReasons: ThrottleReason[] = ['swPowerCap', 'hwSlowdown', 'swThermalSlowdown', 'hwThermalSlowdown', 'hwPowerBrakeSlowdown'];

export function decodeThrottleReasons(mask: number | null): ThrottleReason[] {
  if (mask === null) return [];
  return (Object.keys(throttleReasonBits) as ThrottleReason[]).filter((name) => (mask & throttleReasonBits[name]) !== 0);
}

export function isThrottled(reasons: ThrottleReason[]): boolean {
  return reasons.some((r) => slowingReasons.includes(r));
}

export interface GpuReading extends Omit<NativeNvmlDevice, 'throttleReasons'> {
  throttleReasons: ThrottleReason[];
  /** Power, thermal or hardware slowdown was active when sampled. */
  throttled: boolean;
}

export type GpuTelemetry =
  | { available: false; reason: string }
  | { available: true; driverVersion: string | null; cudaDriverVersion: string | null; devices: GpuReading[] };

/** "13.0" from NVML's 13000. */
export function cudaVersionString(version: number | null): string | null {
  return version === null ? null : `${Math.floor(version / 1000)}.${Math.floor((version % 1000) / 10)}`;
}

export function sampleGpus(addon: Pick<NativeAddon, 'nvmlSample'>): GpuTelemetry {
  const sample = addon.nvmlSample();
  if (!sample.available) return sample;
  return {
    available: true,
    driverVersion: sample.driverVersion,
    cudaDriverVersion: cudaVersionString(sample.cudaDriverVersion),
    devices: sample.devices.map((d) => {
      const throttleReasons = decodeThrottleReasons(d.throttleReasons);
      return { ...d, throttleReasons, throttled: isThrottled(throttleReasons) };
    }),
  };
}

/**
 * Whether code compiled for `compiledArchs` (the CUDA backend's ARCHS feature, e.g.
 * "750,800,860,890,900") may run on a device of compute capability `capability` ("8.6"): false when
 * every architecture is newer than the device, which can never run. True is only "not ruled out":
 * SASS runs only within its own major version and PTX needs a new enough driver, and ARCHS does not
 * say which an architecture was compiled as. The GPU policy uses this only when it cannot read the
 * module's fatbin (lib/cuda-fatbin.ts). Returns null when either side is unknown.
 */
export function archSupportsDevice(compiledArchs: string | undefined, capability: string | null): boolean | null {
  if (!compiledArchs || !capability) return null;
  const device = Math.round(Number(capability) * 10);
  const archs = compiledArchs
    .split(/[,;\s]+/)
    .map((a) => Number.parseInt(a, 10))
    .filter((a) => Number.isFinite(a))
    .map((a) => (a >= 100 && a % 10 === 0 ? a / 10 : a));
  if (!Number.isFinite(device) || archs.length === 0) return null;
  return archs.some((arch) => arch <= device);
}
