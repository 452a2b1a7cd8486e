// ggml backend registry: loading backend modules (GGML_BACKEND_DL) and describing devices.
// Mirrors ggml-backend.h; which backend a user gets is decided in lib/, not here.
#pragma once

#include <napi.h>

namespace cuda_llama {

// JS: loadBackendsFromDir(dir) -> undefined. ggml_backend_load_all_from_path: picks the best CPU
// variant for this machine and every other backend module found in dir.
Napi::Value LoadBackendsFromDir(const Napi::CallbackInfo& info);

// JS: probeLibrary(path) -> string | null. dlopen(path) and return dlerror() on failure, so a
// backend module that did not load can be explained ("libcudart.so.13: cannot open shared object
// file") without reading llama.cpp's logs. The handle is closed again.
Napi::Value ProbeLibrary(const Napi::CallbackInfo& info);

// JS: preloadLibrary(path) -> string | null. dlopen(path, RTLD_GLOBAL) and keep it loaded, so a
// backend module's DT_NEEDED entry with the same soname (libcudart.so.13 from a PyPI wheel folder,
// say) is satisfied without LD_LIBRARY_PATH. Returns dlerror() on failure.
Napi::Value PreloadLibrary(const Napi::CallbackInfo& info);

// JS: listBackends() -> [{ name, deviceCount, features: { [name]: value } }]
Napi::Value ListBackends(const Napi::CallbackInfo& info);

// JS: listDevices() -> [{ index, name, description, type, backend, memoryFree, memoryTotal, deviceId }]
Napi::Value ListDevices(const Napi::CallbackInfo& info);

// JS: rpcAddServer(endpoint) -> string[]. Registers the devices of the rpc-server at endpoint
// (ggml_backend_rpc_add_server + ggml_backend_device_register, in llama_adapter.cc) and returns their
// names. Blocks for one connection and handshake; ggml aborts if the server cannot be reached, so lib/
// probes the endpoint first.
Napi::Value RpcAddServerJs(const Napi::CallbackInfo& info);

// JS: rpcServe(endpoint, device, cacheDir, threads, memoryCapBytes) -> Promise<string>.
// ggml_backend_rpc_start_server on a thread of its own, serving `device` ('' for the CPU), with
// memory reports capped at memoryCapBytes (0: no cap). The promise settles only if the server stops
// (with why); the process ends it otherwise.
Napi::Value RpcServe(const Napi::CallbackInfo& info);

// Device type as the string lib/ uses ("cpu", "gpu", "igpu", "accel", "meta").
const char* DeviceTypeName(int type);

}  // namespace cuda_llama
