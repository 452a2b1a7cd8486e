// Addon entry point. Exports are listed in lib/binding/native.ts with the llama.cpp function each wraps;
// scripts/check-exports.mjs compares the two lists.
#include "addon.h"

#include <mutex>

#include "backend.h"
#include "cancel_flag.h"
#include "context.h"
#include "fit_params.h"
#include "grammar.h"
#include "llama.h"
#include "llama_adapter.h"
#include "log.h"
#include "model.h"
#include "nvml.h"
#include "quantize.h"
#include "sampler.h"
#include "type_tables.h"

namespace cuda_llama {
namespace {
std::once_flag backend_init_once;
}

Addon::Addon(Napi::Env env, Napi::Object exports) {
  // Process-wide llama.cpp state, shared by every environment of this process.
  std::call_once(backend_init_once, [] {
    InstallLogCallback();
    llama_backend_init();
  });

  Napi::Function model = Model::Define(env);
  Napi::Function context = Context::Define(env);
  model_constructor = Napi::Persistent(model);
  context_constructor = Napi::Persistent(context);

  DefineAddon(
      exports,
      {
          InstanceValue("Model", model, napi_enumerable),
          InstanceValue("Context", context, napi_enumerable),
          InstanceValue("Sampler", Sampler::Define(env), napi_enumerable),
          InstanceValue("CancelFlag", CancelFlag::Define(env), napi_enumerable),
          InstanceValue("loadBackendsFromDir", Napi::Function::New(env, LoadBackendsFromDir), napi_enumerable),
          InstanceValue("probeLibrary", Napi::Function::New(env, ProbeLibrary), napi_enumerable),
          InstanceValue("preloadLibrary", Napi::Function::New(env, PreloadLibrary), napi_enumerable),
          InstanceValue("listBackends", Napi::Function::New(env, ListBackends), napi_enumerable),
          InstanceValue("listDevices", Napi::Function::New(env, ListDevices), napi_enumerable),
          InstanceValue("rpcAddServer", Napi::Function::New(env, RpcAddServerJs), napi_enumerable),
          InstanceValue("rpcServe", Napi::Function::New(env, RpcServe), napi_enumerable),
          InstanceValue("setLogger", Napi::Function::New(env, SetLogger), napi_enumerable),
          InstanceValue("quantize", Napi::Function::New(env, Quantize), napi_enumerable),
          InstanceValue("architectureSupported", Napi::Function::New(env, ArchitectureSupported), napi_enumerable),
          InstanceValue("layerPlacement", Napi::Function::New(env, LayerPlacement), napi_enumerable),
          InstanceValue("embeddingTraits", Napi::Function::New(env, EmbeddingTraits), napi_enumerable),
          InstanceValue("memoryBreakdown", Napi::Function::New(env, MemoryBreakdown), napi_enumerable),
          InstanceValue("fitParams", Napi::Function::New(env, FitParams), napi_enumerable),
          InstanceValue("graphPlacement", Napi::Function::New(env, GraphPlacement), napi_enumerable),
          InstanceValue("nvmlSample", Napi::Function::New(env, NvmlSample), napi_enumerable),
          InstanceValue("ggmlTypes", Napi::Function::New(env, GgmlTypes), napi_enumerable),
          InstanceValue("fileTypeName", Napi::Function::New(env, FileTypeName), napi_enumerable),
          InstanceValue("grammarProblem", Napi::Function::New(env, GrammarProblemJs), napi_enumerable),
          InstanceValue("jsonSchemaToGrammar", Napi::Function::New(env, JsonSchemaToGrammar), napi_enumerable),
          InstanceMethod<&Addon::BuildInfo>("buildInfo", napi_enumerable),
          InstanceMethod<&Addon::SystemInfo>("systemInfo", napi_enumerable),
      });

  // Runs before N-API finalizers at env teardown: free contexts and models while their backends
  // still exist, so exiting with undisposed objects neither leaks nor crashes.
  env.AddCleanupHook(&Addon::Cleanup, this);
}

// A worker's teardown must leave the other environments alone: only this env's logger is released
// (the llama_log_set callback stays), and Model::Free -> Context::Free cancels and joins each
// context's thread before llama_free, so no generation of this env outlives its context.
void Addon::Cleanup(Addon* self) {
  self->log_sink->Close();
  ModelRegistry models = *self->live_models;  // Free() does not unregister; the destructor does
  for (Model* model : models) model->Free();
}

Napi::Value Addon::BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  result.Set("llamaCppCommit", CUDA_LLAMA_LLAMA_CPP_COMMIT);
  result.Set("napiVersion", NAPI_VERSION);
  result.Set("supportsGpuOffload", llama_supports_gpu_offload());
  result.Set("maxDevices", Napi::Number::New(env, static_cast<double>(llama_max_devices())));
  return result;
}

Napi::Value Addon::SystemInfo(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), llama_print_system_info());
}

}  // namespace cuda_llama

using cuda_llama::Addon;
NODE_API_ADDON(Addon)
