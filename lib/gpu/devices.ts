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

/**
 * A device layers can be offloaded to: a CUDA GPU, or a remote device of ggml's RPC backend (an
 * rpc-server's device, which ggml types as a GPU whatever it really is). The one definition of it:
 * the GPU decision's device list holds exactly such devices (CUDA GPUs from the availability check,
 * RPC devices from their registration), and placement checks, the layer report and the plan judge
 * names against that list (onGpu), so a layer on the local CPU never counts as offloaded.
 */
export function isOffloadDevice(device: Pick<NativeDevice, 'backend' | 'type'>): boolean {
  return isCudaGpu(device) || (device.backend === 'RPC' && device.type === 'gpu');
}

/** The names of the registry's CUDA GPUs, in its order ('CUDA0', 'CUDA1', ...). */
export function cudaGpuNames(devices: Pick<NativeDevice, 'name' | 'backend' | 'type'>[]): string[] {
  return devices.filter(isCudaGpu).map((d) => d.name);
}

/**
 * For a device name from placement or memory facts: whether it is one of `gpus`, the CUDA GPU
 * names a GPU decision took from the registry (empty for a CPU load, so nothing is on the GPU).
 */
export function onGpu(gpus: readonly string[], device: string): boolean {
  return gpus.includes(device);
}
