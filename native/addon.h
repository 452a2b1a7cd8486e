// Per-environment state of the addon (worker_threads each get their own): class constructors and
// the set of live models, freed at env teardown so that exiting with undisposed objects is clean.
#pragma once

#include <napi.h>

#include <memory>
#include <set>

namespace cuda_llama {

class Model;

// Shared with each Model so a late finalizer never touches a deleted Addon.
using ModelRegistry = std::set<Model*>;

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports);

  Napi::FunctionReference model_constructor;
  Napi::FunctionReference context_constructor;
  std::shared_ptr<ModelRegistry> live_models = std::make_shared<ModelRegistry>();

 private:
  Napi::Value BuildInfo(const Napi::CallbackInfo& info);
  Napi::Value SystemInfo(const Napi::CallbackInfo& info);
  static void Cleanup(Addon* self);
};

}  // namespace cuda_llama
