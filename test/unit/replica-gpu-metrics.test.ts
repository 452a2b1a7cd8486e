// A pool's replicas and the NVML series: cuda_llama_replica_gpu_info maps each replica on a GPU to
// NVML's index of that GPU, matched by PCI bus id (NVML counts in bus order, CUDA may not).
import { describe, expect, it } from 'vitest';
import { ServerMetrics, nvmlIndexOf } from '../../lib/server/metrics.js';
import type { GpuReading } from '../../lib/gpu/telemetry.js';

function reading(index: number, pciBusId: string | null): GpuReading {
  return {
    index,
    name: 'Fake GPU',
    computeCapability: '9.0',
    smClockMHz: 1980,
    memoryClockMHz: 2619,
    maxSmClockMHz: 1980,
    powerW: 300,
    powerLimitW: 700,
    temperatureC: 60,
    utilizationGpu: 90,
    utilizationMemory: 40,
    throttleReasons: [],
    throttled: false,
    memoryTotal: 1e11,
    memoryFree: 5e10,
    pciBusId,
  };
}

describe('nvmlIndexOf', () => {
  const readings = [reading(0, '0000:1b:00.0'), reading(1, '0000:65:00.0'), reading(2, null)];

  it("finds a CUDA device's GPU by PCI bus id, not by position", () => {
    // CUDA's order (fastest first) can put NVML's GPU 1 first: CUDA0 is at 65.
    expect(nvmlIndexOf('0000:65:00.0', readings)).toBe(1);
    expect(nvmlIndexOf('0000:1b:00.0', readings)).toBe(0);
  });

  it('reads the domain and the function as numbers, and a virtual device as its GPU', () => {
    expect(nvmlIndexOf('00000000:65:00.0', readings)).toBe(1);
    expect(nvmlIndexOf('0000:1B:00.1', readings)).toBe(0);
    expect(nvmlIndexOf('0000:65:00.0-v1', readings)).toBe(1);
  });

  it('is null for the CPU, an id NVML does not list, and an id that is not one', () => {
    expect(nvmlIndexOf(null, readings)).toBeNull();
    expect(nvmlIndexOf('0000:99:00.0', readings)).toBeNull();
    expect(nvmlIndexOf('CUDA0', readings)).toBeNull();
  });
});

describe('cuda_llama_replica_gpu_info', () => {
  it('labels each replica on a GPU with its NVML index; a CPU replica has none', async () => {
    const metrics = new ServerMetrics({
      sequences: () => 4,
      inFlight: () => 0,
      engineStats: () => undefined,
      telemetry: () => ({
        available: true,
        driverVersion: '580.00',
        cudaDriverVersion: '13.0',
        devices: [reading(0, '0000:1b:00.0'), reading(1, '0000:65:00.0')],
      }),
      replicas: () =>
        [
          { replica: '0', device: 'CUDA0', pciBusId: '0000:65:00.0' },
          { replica: '1', device: 'CUDA1', pciBusId: '0000:1b:00.0' },
          { replica: '2', device: 'CPU', pciBusId: null },
        ].map(({ replica, device, pciBusId }) => ({
          labels: { replica, device },
          pciBusId,
          up: true,
          load: 0,
          sequences: 2,
          failovers: 0,
          engineStats: () => undefined,
        })),
    });
    const text = await metrics.registry.metrics();
    const info = text.split('\n').filter((line) => line.startsWith('cuda_llama_replica_gpu_info{'));
    expect(info.sort()).toEqual([
      'cuda_llama_replica_gpu_info{replica="0",device="CUDA0",gpu="1"} 1',
      'cuda_llama_replica_gpu_info{replica="1",device="CUDA1",gpu="0"} 1',
    ]);
    // The NVML series themselves stay per GPU.
    expect(text).toMatch(/cuda_llama_gpu_power_watts\{gpu="1",name="Fake GPU"\} 300/);
  });
});
