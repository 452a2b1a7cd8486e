/**
 * Dry-run plans: llama.cpp's no-alloc load (the same mechanism its own fitter uses) tells per
 * device how many bytes of weights, KV cache and compute a configuration needs, before anything
 * is allocated. gpu: 'cuda' loads are checked against it, so a model that does not fit is refused
 * with the plan instead of spilling to the CPU or dying of out-of-memory.
 */
import { formatBytes } from './format.js';
import type { GpuDecision } from './gpu/decision.js';
import { layerDevices, memoryByDevice, type DeviceUsage } from './layer-report.js';
import type { NativeAddon, NativeContextParams, NativeDevice, NativeModelParams } from './binding/native.js';

export interface PlannedDevice extends DeviceUsage {
  totalBytes: number;
  /** Free memory the device reports now (null for host buffers that belong to no device). */
  freeBytes: number | null;
  fits: boolean;
}

export interface LoadPlan {
  policy: { requested: GpuDecision['requested']; target: GpuDecision['target']; gpuLayers: GpuDecision['gpuLayers'] };
  contextSize: number;
  layers: { index: number; device: string }[];
  output: string;
  devices: PlannedDevice[];
  /** Every device has room for its share. */
  fits: boolean;
}

/** Runs the dry run. The model and context it makes hold no tensor memory and are freed at once. */
export async function dryRun(addon: NativeAddon, path: string, decision: GpuDecision, modelParams: NativeModelParams,
  contextParams: NativeContextParams): Promise<LoadPlan> {
  const model = await addon.Model.load(path, { ...modelParams, noAlloc: true, loadMode: 0 });
  try {
    const context = await addon.Context.create(model, contextParams);
    try {
      const placement = addon.layerPlacement(model);
      const devices = planDevices(memoryByDevice(addon.memoryBreakdown(context)), addon.listDevices());
      return Object.freeze({
        policy: { requested: decision.requested, target: decision.target, gpuLayers: decision.gpuLayers },
        contextSize: context.info().contextSize,
        layers: layerDevices(placement),
        output: placement.output ?? 'CPU',
        devices,
        fits: devices.every((d) => d.fits),
      });
    } finally {
      context.dispose();
    }
  } finally {
    model.dispose();
  }
}

export function planDevices(usage: DeviceUsage[], devices: NativeDevice[]): PlannedDevice[] {
  return usage.map((u) => {
    const device = devices.find((d) => d.name === u.device);
    const totalBytes = u.weightsBytes + u.kvCacheBytes + u.computeBytes;
    const freeBytes = device ? device.memoryFree : null;
    return { ...u, totalBytes, freeBytes, fits: freeBytes === null || totalBytes <= freeBytes };
  });
}

export function formatPlan(plan: LoadPlan): string {
  const gib = (n: number) => formatBytes(n, { unit: 'GiB', digits: 2 });
  return plan.devices.map((d) => `${d.device}: needs ${gib(d.totalBytes)} (weights ${gib(d.weightsBytes)}, KV ${gib(d.kvCacheBytes)}, compute ${gib(d.computeBytes)})` +
    `${d.freeBytes === null ? '' : `, ${gib(d.freeBytes)} free`}${d.fits ? '' : ' - DOES NOT FIT'}`).join('; ');
}
