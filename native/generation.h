// One generation job: one or more sequences decoded together on a context's own thread, their
// tokens streamed to JS through a thread-safe function. A single generate() is a job with one
// sequence, so there is one decode loop for both (lib/generation.ts is its JS half).
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "llama.h"

namespace cuda_llama {

// One sequence of a job: its own prompt, sampler, limit and stop flag; seq_id = its index.
struct GenerationSequence {
  std::vector<llama_token> prompt;
  llama_sampler* sampler = nullptr;           // owned by a JS Sampler, kept alive by the job
  bool argmax_only = false;                   // Sampler::argmax_only(): greedy, no penalties
  std::shared_ptr<std::atomic<bool>> cancel;  // this sequence only (a stop sequence was found)
  int32_t max_tokens = 0;

  // Context thread only, until the job is done; then the JS thread reads stop_reason. Timings and
  // counts are not reported from here: lib/ derives them from the token events (atMs) and its prompts.
  int32_t generated = 0;              // against max_tokens
  const char* stop_reason = nullptr;  // null while the sequence is still generating
};

struct TokenEvent {
  int32_t sequence;
  llama_token token;
  std::string piece;
  double at_ms;  // since the job started, on the context thread's clock
};

// Inputs are copied from JS before the job is posted; outputs are written on the context thread
// and read on the JS thread only in the thread-safe function's finalizer.
struct GenerationJob {
  explicit GenerationJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}

  std::vector<GenerationSequence> sequences;
  std::shared_ptr<std::atomic<bool>> cancel;  // the whole job (abort, dispose); also ggml's abort callback
  Napi::ThreadSafeFunction on_token;

  // Tokens waiting for the JS thread. The context thread wakes JS only when no drain is already
  // pending: every wake-up of the JS thread competes with the compute threads for the cores, so
  // a JS thread that falls behind takes several tokens per wake-up instead of one each. Without
  // `every_token` (nobody streams the text or looks for stop sequences), JS is woken only for each
  // sequence's first token, where time to first token is measured, and once at the end.
  bool every_token = true;
  std::mutex pending_mutex;
  std::vector<TokenEvent> pending;  // guarded by pending_mutex
  bool drain_scheduled = false;     // guarded by pending_mutex

  double prompt_ms = 0;
  const char* error_code = nullptr;
  std::string error_message;
  std::optional<int> status;

  Napi::Promise::Deferred deferred;
  Napi::ObjectReference context_ref;                 // alive until the promise settles
  std::vector<Napi::ObjectReference> sampler_refs;  // idem
};

// Context thread: decodes every prompt, then one token per live sequence per step, until each
// sequence stops. No N-API here except the thread-safe function. host_backend: see
// ContextParts::host_backend (may be null).
void RunGeneration(llama_context* ctx, ggml_backend_t host_backend, GenerationJob* job);

// JS thread (the thread-safe function's finalizer): settles the promise and frees the job.
void SettleGeneration(Napi::Env env, GenerationJob* job);

}  // namespace cuda_llama
