// Context: owns one llama_context, the ggml threadpool attached to it, and its ContextThread.
// Creation is a PromiseWorker (it allocates the KV cache and compute buffers, maybe on a GPU);
// generation runs in its Engine (native/engine.h), whose loop is the ContextThread's one job.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

#include "context_thread.h"
#include "ggml-backend.h"
#include "llama.h"

struct ggml_threadpool;

namespace cuda_llama {

class Engine;
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
  size_t park_budget = 0;  // bytes for parked session states (Engine), from lib's parkedSessionBytes
  // An embeddings context (llama_context_params.embeddings): embed jobs run on its thread, and it
  // has no engine.
  bool embeddings = false;
  void Free();
};

class Context : public Napi::ObjectWrap<Context> {
 public:
  static Napi::Function Define(Napi::Env env);
  // Not for users: info[0] External<ContextParts>, info[1] the owning Model object.
  explicit Context(const Napi::CallbackInfo& info);
  ~Context() override;

  // Stops the engine (every request ends as aborted), waits for it, frees everything. Idempotent
  // (JS thread).
  void Free();

  llama_context* Get(Napi::Env env) const;
  llama_context* raw() const { return parts_.ctx; }

 private:
  // JS: Context.create(model, params) -> Promise<Context>
  static Napi::Value Create(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  // JS: submit(prompt: Int32Array, sampler: Sampler, maxTokens, cancel: CancelFlag, everyToken,
  //            reusePrefix, onToken(token, bytes, atMs), session?: number)
  //     -> Promise<{ stopReason, cachedTokens, cacheMiss, admittedAtMs, promptDoneAtMs, preemptions }>
  // Queues one request on the engine, which runs it beside the others; see native/engine.h.
  Napi::Value Submit(const Napi::CallbackInfo& info);
  // JS: endSession(id): the session's sequence is no longer kept for it.
  Napi::Value EndSession(const Napi::CallbackInfo& info);
  // JS: forkSession(parent, child): the child session starts from a copy of the parent's sequence.
  Napi::Value ForkSession(const Napi::CallbackInfo& info);
  // JS: engineStats() -> { usedCells, totalCells, parkedSessions, parkedBytes, steps, decodeMs, hostMs }
  // Atomic reads of what the engine published after its last step; never waits for it.
  Napi::Value EngineStats(const Napi::CallbackInfo& info);
  // Test hook, not public API (reached only from lib/internal/fault.ts): the engine's next decode
  // returns `rc` without calling llama_decode.
  Napi::Value InjectDecodeFault(const Napi::CallbackInfo& info);
  // JS: embed(tokens: Int32Array, lengths: Uint32Array) -> Promise<{ vectors: Float32Array,
  //     width, decodes }>: the texts (lengths[i] tokens each, end to end in `tokens`) through an
  //     embeddings context, packed into batches (native/embedding.h). One call at a time: lib/
  //     queues them (ERR_BUSY otherwise).
  Napi::Value Embed(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  // ERR_EMBEDDINGS_ONLY for the generation methods of an embeddings context.
  void RequireEngine(Napi::Env env) const;
  // ggml abort callback of an embeddings context: true once Free() has begun.
  static bool EmbedAbortCallback(void* stop);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);

  ContextParts parts_;
  Model* owner_ = nullptr;
  Napi::ObjectReference owner_ref_;  // keeps the model alive as long as this context
  // Owned by its own thread-safe function's finalizer (Engine::Release); null once freed.
  Engine* engine_ = nullptr;
  std::atomic<bool> stop_embedding_{false};
  std::unique_ptr<ContextThread> thread_;  // runs engine_->Run(), or an embeddings context's embed jobs
};

}  // namespace cuda_llama
