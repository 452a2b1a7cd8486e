#include "backend.h"

#include <dlfcn.h>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ggml-backend.h"
#include "llama_adapter.h"

namespace cuda_llama {

const char* DeviceTypeName(int type) {
  switch (type) {
    case GGML_BACKEND_DEVICE_TYPE_CPU:
      return "cpu";
    case GGML_BACKEND_DEVICE_TYPE_GPU:
      return "gpu";
    case GGML_BACKEND_DEVICE_TYPE_IGPU:
      return "igpu";
    case GGML_BACKEND_DEVICE_TYPE_ACCEL:
      return "accel";
    case GGML_BACKEND_DEVICE_TYPE_META:
      return "meta";
    default:
      return "unknown";
  }
}

Napi::Value LoadBackendsFromDir(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "dir must be a string");
  std::string dir = info[0].As<Napi::String>();
  // ggml's backend registry has no lock, and every environment (each worker_threads Worker loads
  // the addon anew) registers the backends next to the binary on its own JS thread.
  static std::mutex registry_mutex;
  std::lock_guard<std::mutex> lock(registry_mutex);
  ggml_backend_load_all_from_path(dir.c_str());
  return env.Undefined();
}

Napi::Value ProbeLibrary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "path must be a string");
  std::string path = info[0].As<Napi::String>();
  dlerror();
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = dlerror();
    return Napi::String::New(env, reason != nullptr ? reason : "dlopen failed");
  }
  dlclose(handle);
  return env.Null();
}

Napi::Value PreloadLibrary(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "path must be a string");
  std::string path = info[0].As<Napi::String>();
  dlerror();
  // Never closed: the backend module that needs it stays loaded for the life of the process.
  if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    const char* reason = dlerror();
    return Napi::String::New(env, reason != nullptr ? reason : "dlopen failed");
  }
  return env.Null();
}

Napi::Value ListBackends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array result = Napi::Array::New(env);
  for (size_t i = 0; i < ggml_backend_reg_count(); i++) {
    ggml_backend_reg_t reg = ggml_backend_reg_get(i);
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("name", ggml_backend_reg_name(reg));
    entry.Set("deviceCount", Napi::Number::New(env, static_cast<double>(ggml_backend_reg_dev_count(reg))));
    Napi::Object features = Napi::Object::New(env);
    // Backends publish build facts here (CUDA: ARCHS, the compiled architectures; CPU: AVX2, ...).
    auto get_features = reinterpret_cast<ggml_backend_get_features_t>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"));
    if (get_features != nullptr) {
      for (ggml_backend_feature* f = get_features(reg); f != nullptr && f->name != nullptr; f++) {
        features.Set(f->name, f->value != nullptr ? f->value : "");
      }
    }
    entry.Set("features", features);
    result.Set(static_cast<uint32_t>(i), entry);
  }
  return result;
}

Napi::Value ListDevices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array result = Napi::Array::New(env);
  for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
    ggml_backend_dev_t dev = ggml_backend_dev_get(i);
    ggml_backend_dev_props props{};
    if (IsRpcDevice(dev)) {
      // A remote device's props are a network round trip, and ggml aborts the process when its
      // server has gone away: listing devices must never do that. Memory is 0 here; lib/gpu/rpc.ts
      // fills it in from its own probe of the endpoint (the description).
      props.name = ggml_backend_dev_name(dev);
      props.description = ggml_backend_dev_description(dev);
      props.type = ggml_backend_dev_type(dev);
    } else {
      ggml_backend_dev_get_props(dev, &props);
    }
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("index", Napi::Number::New(env, static_cast<double>(i)));
    entry.Set("name", props.name != nullptr ? props.name : "");
    entry.Set("description", props.description != nullptr ? props.description : "");
    entry.Set("type", DeviceTypeName(props.type));
    entry.Set("backend", ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev)));
    entry.Set("memoryFree", Napi::Number::New(env, static_cast<double>(props.memory_free)));
    entry.Set("memoryTotal", Napi::Number::New(env, static_cast<double>(props.memory_total)));
    entry.Set("deviceId",
              props.device_id != nullptr ? Napi::Value(Napi::String::New(env, props.device_id)) : env.Null());
    result.Set(static_cast<uint32_t>(i), entry);
  }
  return result;
}

Napi::Value RpcAddServerJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "endpoint must be a string");
  std::string endpoint = info[0].As<Napi::String>();
  std::vector<std::string> names;
  std::string error;
  if (!RpcAddServer(endpoint, names, error)) throw Napi::Error::New(env, error);
  Napi::Array result = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); i++) result.Set(static_cast<uint32_t>(i), names[i]);
  return result;
}

Napi::Value RpcServe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString() || !info[3].IsNumber() ||
      !info[4].IsNumber()) {
    throw Napi::TypeError::New(env, "rpcServe(endpoint, device, cacheDir, threads, memoryCapBytes)");
  }
  std::string endpoint = info[0].As<Napi::String>();
  std::string device_name = info[1].As<Napi::String>();
  std::string cache_dir = info[2].As<Napi::String>();
  const double threads = info[3].As<Napi::Number>().DoubleValue();
  const double cap = info[4].As<Napi::Number>().DoubleValue();
  if (!(threads >= 1) || !(cap >= 0)) throw Napi::TypeError::New(env, "threads must be >= 1 and memoryCapBytes >= 0");
  std::string error;
  ggml_backend_dev_t device = RpcServeDevice(device_name, static_cast<uint64_t>(cap), error);
  if (device == nullptr) throw Napi::TypeError::New(env, error);

  // The server loop never returns while it serves, so it gets a thread of its own (never a libuv
  // pool thread); the thread-safe function keeps the event loop alive meanwhile and settles the
  // promise if the loop ends (it could not bind, or accept failed).
  auto deferred = std::make_shared<Napi::Promise::Deferred>(env);
  auto stopped = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                               "cuda-llama rpc-server", 0, 1);
  std::thread([stopped, deferred, endpoint, device, cache_dir, threads]() mutable {
    std::string why = RpcRunServer(endpoint, device, cache_dir, static_cast<size_t>(threads));
    stopped.BlockingCall(
        [deferred, why](Napi::Env env, Napi::Function) { deferred->Resolve(Napi::String::New(env, why)); });
    stopped.Release();
  }).detach();
  return deferred->Promise();
}

}  // namespace cuda_llama
