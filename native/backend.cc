#include "backend.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "ggml-backend.h"

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
    ggml_backend_dev_get_props(dev, &props);
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

}  // namespace cuda_llama
