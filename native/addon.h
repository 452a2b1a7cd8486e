// Per-environment state of the addon (worker_threads each get their own): class constructors, the
// logger, and the set of live models, freed at env teardown so that exiting with undisposed objects
// (or terminating a worker mid-generation) is clean and leaves the other environments alone.
#pragma once

#include <napi.h>

#include <memory>
#include <set>

#include "log.h"

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
  // This env's logger; PromiseWorkers and ContextThreads hold it while they work for this env.
  std::shared_ptr<LogSink> log_sink = LogSink::Open();

 private:
  Napi::Value BuildInfo(const Napi::CallbackInfo& info);
  Napi::Value SystemInfo(const Napi::CallbackInfo& info);
  static void Cleanup(Addon* self);

  // The env's JS thread logs to log_sink (synchronous calls: backend loading, tokenize, fitting)
  // from construction until the Addon is deleted at the end of the env's teardown, on that thread.
  LogRoute js_thread_route_{log_sink.get()};
};

}  // namespace cuda_llama
