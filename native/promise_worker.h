// Base class for one-shot blocking work (model load, context creation, quantization) on the libuv
// pool. Subclasses copy every JS input into plain C++ members in their constructor, do the work in
// Execute() (worker thread: no N-API there), and build JS values only in Resolve() (JS thread).
#pragma once

#include <napi.h>

#include <memory>
#include <optional>
#include <string>

#include "addon.h"
#include "common.h"
#include "log.h"

namespace cuda_llama {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  // `failure_code` (one of code::): what a failure not reported through Fail() is, such as a C++
  // exception out of Execute(), which AsyncWorker records with SetError().
  PromiseWorker(Napi::Env env, const char* name, const char* failure_code)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        code_(failure_code),
        log_sink_(env.GetInstanceData<Addon>()->log_sink) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  // Pool thread: llama.cpp's lines during Execute() go to the env that queued this worker.
  void OnExecute(Napi::Env env) override {
    LogRoute route(log_sink_.get());
    Napi::AsyncWorker::OnExecute(env);
  }

 protected:
  // Worker thread: record a failure with our code and, when there is one, llama.cpp's status.
  void Fail(const char* code, std::string message, std::optional<int> status = std::nullopt) {
    code_ = code;
    status_ = status;
    SetError(message);
  }

  // JS thread: the value the promise resolves to.
  virtual Napi::Value Resolve(Napi::Env env) = 0;

  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(Resolve(env));
    } catch (const Napi::Error& error) {
      deferred_.Reject(error.Value());
    }
  }

  void OnError(const Napi::Error& error) override {
    deferred_.Reject(MakeError(Env(), code_, error.Message(), status_).Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  const char* code_;
  std::optional<int> status_;
  std::shared_ptr<LogSink> log_sink_;
};

}  // namespace cuda_llama
