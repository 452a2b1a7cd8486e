// NVML, loaded at run time with dlopen (libnvidia-ml.so.1 comes with the NVIDIA driver): no
// build-time dependency, and a machine without a driver simply reports "not available".
#pragma once

#include <napi.h>

namespace cuda_llama {

// JS: nvmlSample() -> { available: false, reason } |
//   { available: true, driverVersion, cudaDriverVersion, devices: [{ index, name, computeCapability,
//     smClockMHz, memoryClockMHz, maxSmClockMHz, powerW, powerLimitW, temperatureC,
//     utilizationGpu, utilizationMemory, throttleReasons, memoryTotal, memoryFree }] }
// Readings NVML cannot give on a device are null. lib/telemetry.ts names the throttle bits.
Napi::Value NvmlSample(const Napi::CallbackInfo& info);

}  // namespace cuda_llama
