#include "nvml.h"

#include <dlfcn.h>

#include <cstdio>

#include <mutex>
#include <string>

namespace cuda_llama {
namespace {

// The few NVML types we need, declared here so that no NVML header is needed to build.
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
struct nvmlUtilization_t {
  unsigned int gpu;
  unsigned int memory;
};
struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};
// nvmlPciInfo_t (the same layout for the _v2 and _v3 calls); only domain, bus and device are read.
struct nvmlPciInfo_t {
  char bus_id_legacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pci_device_id;
  unsigned int pci_sub_system_id;
  char bus_id[32];
};
constexpr nvmlReturn_t kSuccess = 0;
constexpr int kClockSm = 1;
constexpr int kClockMem = 2;
constexpr int kTemperatureGpu = 0;

struct Nvml {
  void* handle = nullptr;
  std::string error;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*driver_version)(char*, unsigned int) = nullptr;
  nvmlReturn_t (*cuda_driver_version)(int*) = nullptr;
  nvmlReturn_t (*device_count)(unsigned int*) = nullptr;
  nvmlReturn_t (*device_by_index)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*name)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*clock)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*max_clock)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*power)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*power_limit)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*temperature)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*utilization)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
  nvmlReturn_t (*throttle_reasons)(nvmlDevice_t, unsigned long long*) = nullptr;
  nvmlReturn_t (*compute_capability)(nvmlDevice_t, int*, int*) = nullptr;
  nvmlReturn_t (*memory)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*pci_info)(nvmlDevice_t, nvmlPciInfo_t*) = nullptr;
};

template <typename F>
void Bind(Nvml& nvml, F& fn, const char* name, const char* fallback = nullptr) {
  fn = reinterpret_cast<F>(dlsym(nvml.handle, name));
  if (fn == nullptr && fallback != nullptr) fn = reinterpret_cast<F>(dlsym(nvml.handle, fallback));
}

// Loaded and initialized once per process; NVML is thread-safe after nvmlInit.
Nvml& Instance() {
  static Nvml nvml;
  static std::once_flag once;
  std::call_once(once, [] {
    nvml.handle = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (nvml.handle == nullptr) {
      const char* reason = dlerror();
      nvml.error = reason != nullptr ? reason : "dlopen(libnvidia-ml.so.1) failed";
      return;
    }
    Bind(nvml, nvml.init, "nvmlInit_v2", "nvmlInit");
    Bind(nvml, nvml.driver_version, "nvmlSystemGetDriverVersion");
    Bind(nvml, nvml.cuda_driver_version, "nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion");
    Bind(nvml, nvml.device_count, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
    Bind(nvml, nvml.device_by_index, "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex");
    Bind(nvml, nvml.name, "nvmlDeviceGetName");
    Bind(nvml, nvml.clock, "nvmlDeviceGetClockInfo");
    Bind(nvml, nvml.max_clock, "nvmlDeviceGetMaxClockInfo");
    Bind(nvml, nvml.power, "nvmlDeviceGetPowerUsage");
    Bind(nvml, nvml.power_limit, "nvmlDeviceGetEnforcedPowerLimit");
    Bind(nvml, nvml.temperature, "nvmlDeviceGetTemperature");
    Bind(nvml, nvml.utilization, "nvmlDeviceGetUtilizationRates");
    // Renamed in newer drivers ("clocks event reasons"); same bits.
    Bind(nvml, nvml.throttle_reasons, "nvmlDeviceGetCurrentClocksEventReasons",
         "nvmlDeviceGetCurrentClocksThrottleReasons");
    Bind(nvml, nvml.compute_capability, "nvmlDeviceGetCudaComputeCapability");
    Bind(nvml, nvml.memory, "nvmlDeviceGetMemoryInfo");
    Bind(nvml, nvml.pci_info, "nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2");
    if (nvml.init == nullptr || nvml.device_count == nullptr || nvml.device_by_index == nullptr) {
      nvml.error = "libnvidia-ml.so.1 lacks nvmlInit/nvmlDeviceGetCount/nvmlDeviceGetHandleByIndex";
    } else if (nvml.init() != kSuccess) {
      nvml.error = "nvmlInit failed (is the NVIDIA driver loaded?)";
    }
  });
  return nvml;
}

Napi::Value UnsignedOrNull(Napi::Env env, nvmlReturn_t (*fn)(nvmlDevice_t, unsigned int*), nvmlDevice_t dev,
                           double scale = 1) {
  unsigned int value = 0;
  if (fn == nullptr || fn(dev, &value) != kSuccess) return env.Null();
  return Napi::Number::New(env, value * scale);
}

Napi::Value ClockOrNull(Napi::Env env, nvmlReturn_t (*fn)(nvmlDevice_t, int, unsigned int*), nvmlDevice_t dev,
                        int type) {
  unsigned int value = 0;
  if (fn == nullptr || fn(dev, type, &value) != kSuccess) return env.Null();
  return Napi::Number::New(env, value);
}

}  // namespace

Napi::Value NvmlSample(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Nvml& nvml = Instance();
  Napi::Object result = Napi::Object::New(env);
  if (!nvml.error.empty()) {
    result.Set("available", false);
    result.Set("reason", nvml.error);
    return result;
  }
  result.Set("available", true);
  char text[128] = {0};
  result.Set("driverVersion", nvml.driver_version != nullptr && nvml.driver_version(text, sizeof(text)) == kSuccess
                                  ? Napi::Value(Napi::String::New(env, text))
                                  : env.Null());
  int cuda_version = 0;
  result.Set("cudaDriverVersion",
             nvml.cuda_driver_version != nullptr && nvml.cuda_driver_version(&cuda_version) == kSuccess
                 ? Napi::Value(Napi::Number::New(env, cuda_version))
                 : env.Null());
  unsigned int count = 0;
  Napi::Array devices = Napi::Array::New(env);
  if (nvml.device_count(&count) == kSuccess) {
    for (unsigned int i = 0; i < count; i++) {
      nvmlDevice_t dev = nullptr;
      if (nvml.device_by_index(i, &dev) != kSuccess) continue;
      Napi::Object d = Napi::Object::New(env);
      d.Set("index", i);
      char name[128] = {0};
      d.Set("name", nvml.name != nullptr && nvml.name(dev, name, sizeof(name)) == kSuccess
                        ? Napi::Value(Napi::String::New(env, name))
                        : env.Null());
      int major = 0, minor = 0;
      d.Set("computeCapability",
            nvml.compute_capability != nullptr && nvml.compute_capability(dev, &major, &minor) == kSuccess
                ? Napi::Value(Napi::String::New(env, std::to_string(major) + "." + std::to_string(minor)))
                : env.Null());
      d.Set("smClockMHz", ClockOrNull(env, nvml.clock, dev, kClockSm));
      d.Set("memoryClockMHz", ClockOrNull(env, nvml.clock, dev, kClockMem));
      d.Set("maxSmClockMHz", ClockOrNull(env, nvml.max_clock, dev, kClockSm));
      d.Set("powerW", UnsignedOrNull(env, nvml.power, dev, 0.001));
      d.Set("powerLimitW", UnsignedOrNull(env, nvml.power_limit, dev, 0.001));
      unsigned int temperature = 0;
      d.Set("temperatureC",
            nvml.temperature != nullptr && nvml.temperature(dev, kTemperatureGpu, &temperature) == kSuccess
                ? Napi::Value(Napi::Number::New(env, temperature))
                : env.Null());
      nvmlUtilization_t utilization{};
      bool have_utilization = nvml.utilization != nullptr && nvml.utilization(dev, &utilization) == kSuccess;
      d.Set("utilizationGpu", have_utilization ? Napi::Value(Napi::Number::New(env, utilization.gpu)) : env.Null());
      d.Set("utilizationMemory",
            have_utilization ? Napi::Value(Napi::Number::New(env, utilization.memory)) : env.Null());
      unsigned long long reasons = 0;
      d.Set("throttleReasons", nvml.throttle_reasons != nullptr && nvml.throttle_reasons(dev, &reasons) == kSuccess
                                   ? Napi::Value(Napi::Number::New(env, static_cast<double>(reasons)))
                                   : env.Null());
      nvmlMemory_t memory{};
      bool have_memory = nvml.memory != nullptr && nvml.memory(dev, &memory) == kSuccess;
      d.Set("memoryTotal",
            have_memory ? Napi::Value(Napi::Number::New(env, static_cast<double>(memory.total))) : env.Null());
      d.Set("memoryFree",
            have_memory ? Napi::Value(Napi::Number::New(env, static_cast<double>(memory.free))) : env.Null());
      // As ggml's CUDA backend writes a device's id (cudaDeviceGetPCIBusId, lower case): NVML's order is
      // the PCI bus's, CUDA's may differ (CUDA_DEVICE_ORDER), and this is how lib/ matches the two.
      nvmlPciInfo_t pci{};
      if (nvml.pci_info != nullptr && nvml.pci_info(dev, &pci) == kSuccess) {
        char bus_id[32] = {0};
        snprintf(bus_id, sizeof(bus_id), "%04x:%02x:%02x.0", pci.domain, pci.bus, pci.device);
        d.Set("pciBusId", bus_id);
      } else {
        d.Set("pciBusId", env.Null());
      }
      devices.Set(devices.Length(), d);
    }
  }
  result.Set("devices", devices);
  return result;
}

}  // namespace cuda_llama
