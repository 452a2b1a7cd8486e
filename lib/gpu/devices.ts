/**
 * The one answer to "is this device the GPU". ggml's registry says it for each device (backend and
 * type); the facts that name devices only (layer placement, memory rows, graph ops, the plan) are
 * judged against the names that test chose, so a layer report, a placement check and a tuning
 * summary cannot disagree about what ran on the GPU.
 */
import type { NativeDevice } from '../binding/native.js';

/** A device of ggml's CUDA backend that is a discrete GPU (not the CUDA host buffer or the CPU). */
export function isCudaGpu(device: Pick<NativeDevice, 'backend' | 'type'>): boolean {
  return device.backend === 'CUDA' && device.type === 'gpu';
}

/** The names of the registry's CUDA GPUs, in its order ('CUDA0', 'CUDA1', ...). */
export function cudaGpuNames(devices: Pick<NativeDevice, 'name' | 'backend' | 'type'>[]): string[] {
  return devices.filter(isCudaGpu).map((d) => d.name);
}

/**
 * For a device name from placement or memory facts: whether it is one of `gpus`, the offload devices
 * a GPU decision took (CUDA GPUs from the availability check, remote RPC devices from their
 * registration; empty for a CPU load, so nothing is on the GPU). A layer on the local CPU never counts.
 */
export function onGpu(gpus: readonly string[], device: string): boolean {
  return gpus.includes(device);
}
