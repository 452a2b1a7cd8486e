// Context: owns one llama_context, the ggml threadpool attached to it, and its ContextThread.
// Creation is a PromiseWorker (it allocates the KV cache and compute buffers, maybe on a GPU);
// generation runs on the ContextThread and streams tokens to JS through a thread-safe function.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

#include "context_thread.h"
#include "ggml-backend.h"
#include "llama.h"

struct ggml_threadpool;

namespace cuda_llama {

class Model;

// lib/'s NativeContextParams -> llama_context_params: llama.cpp's defaults, overridden only where
// a value was passed. Shared by context creation and the fitter (JS thread).
llama_context_params ContextParamsFromJs(Napi::Object options);

// What context creation produces on the worker thread, handed to the JS object.
struct ContextParts {
  llama_context* ctx = nullptr;
  ggml_threadpool* threadpool = nullptr;
  ggml_threadpool* threadpool_batch = nullptr;  // null when batch and generation share one pool
  void (*threadpool_free)(ggml_threadpool*) = nullptr;
  // A CPU backend of our own on the pool llama.cpp decodes batches on (threadpool_batch, else
  // threadpool), for host work between decodes that is worth spreading over the pool's threads
  // (the argmax of a many-sequence step, native/argmax.h).
  // Null without a threadpool or with a one-thread pool; freed before the pool.
  ggml_backend_t host_backend = nullptr;
  void Free();
};

class Context : public Napi::ObjectWrap<Context> {
 public:
  static Napi::Function Define(Napi::Env env);
  // Not for users: info[0] External<ContextParts>, info[1] the owning Model object.
  explicit Context(const Napi::CallbackInfo& info);
  ~Context() override;

  // Cancels a running generation, waits for it, frees everything. Idempotent (JS thread).
  void Free();

  llama_context* Get(Napi::Env env) const;
  llama_context* raw() const { return parts_.ctx; }

 private:
  // JS: Context.create(model, params) -> Promise<Context>
  static Napi::Value Create(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  // JS: generate(prompts: Int32Array[], samplers: Sampler[], maxTokens: Int32Array, cancel: CancelFlag,
  //              sequenceCancels: CancelFlag[], onToken(sequence, token, bytes, atMs), everyToken: boolean)
  //     -> Promise<{ promptMs, stopReasons: string[] (one per sequence) }>
  // One prompt per sequence (seq_id = index), decoded together; see native/generation.h.
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);

  // ggml abort callback: lets a cancelled generation stop inside a long CPU prompt decode.
  static bool AbortCallback(void* self);

  ContextParts parts_;
  Model* owner_ = nullptr;
  Napi::ObjectReference owner_ref_;  // keeps the model alive as long as this context
  std::unique_ptr<ContextThread> thread_;
  // The running job's cancel flag (or null), read by AbortCallback on ggml threads.
  std::shared_ptr<std::atomic<bool>> running_cancel_;
  std::atomic<std::atomic<bool>*> abort_flag_{nullptr};
};

}  // namespace cuda_llama
