// One generation request: a prompt, its own sampler chain, a limit and a stop flag, submitted to a
// context's Engine (native/engine.h), which runs it in a free sequence beside the others. This file
// holds what crosses threads: the request's copied inputs, its state on the context thread, and the
// events that carry tokens and results back to the JS thread.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "llama.h"

namespace cuda_llama {

struct GenerationRequest {
  explicit GenerationRequest(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}

  // Inputs, copied from JS before submission; read-only afterwards.
  std::vector<llama_token> prompt;
  llama_sampler* sampler = nullptr;           // owned by a JS Sampler, kept alive by sampler_ref
  bool argmax_only = false;                   // Sampler::argmax_only(): greedy, no penalties
  std::shared_ptr<std::atomic<bool>> cancel;  // abort, stream break, stop sequence, dispose
  int32_t max_tokens = 0;
  // Wake JS for every token (someone streams the text or looks for stop sequences). Otherwise only
  // the first token (where time to first token is measured) and the end wake it; the tokens in
  // between ride along with whatever wake-up comes next.
  bool every_token = true;
  // Reuse the longest cached prefix of an idle sequence (false: evaluate the whole prompt).
  bool reuse_prefix = true;
  // The session it belongs to (lib/session.ts), 0 for none: a session's requests go back to the
  // sequence its last one used while that is idle, and other requests take that sequence last.
  uint32_t session = 0;
  // Context shift (opt-in): when the window is full, keep the first `shift_keep` tokens, drop half
  // of the rest (the oldest) and go on. -1: off, the request ends with contextFull.
  int32_t shift_keep = -1;

  // Context thread only while the request is in the engine; read on the JS thread once it is done.
  // `input` is what the sequence must hold before the next sample: the prompt, or after a
  // preemption everything the sequence had decoded plus the token still to decode.
  std::vector<llama_token> input;
  size_t input_done = 0;  // tokens of `input` in the sequence's KV cache
  bool generating = false;
  llama_token next = 0;  // while generating: the last sampled token, decoded in the next step
  int32_t seq = -1;      // the sequence it runs in, -1 while waiting
  uint64_t admitted_order = 0;
  int32_t generated = 0;
  bool admitted_once = false;
  int32_t cached_tokens = 0;         // prompt tokens reused at the first admission
  const char* cache_miss = nullptr;  // why a matching prefix could not be reused, or null
  // Where the cached_tokens came from: "resident" (the sequence held them), "restored" (the
  // session's parked state, native/parked_sessions.h), "evaluated" (none were reused).
  const char* cache_source = "evaluated";
  double admitted_at_ms = -1;  // on the engine's clock (ms since it started)
  double prompt_done_at_ms = -1;
  int32_t preemptions = 0;
  int32_t dropped = 0;                // tokens the context shift dropped from the window
  const char* stop_reason = nullptr;  // set when the request is finished
  const char* error_code = nullptr;
  std::string error_message;
  std::optional<int> status;

  // JS thread only.
  Napi::Promise::Deferred deferred;
  Napi::FunctionReference on_token;   // (token, piece: Buffer, atMs)
  Napi::ObjectReference context_ref;  // alive until the promise settles
  Napi::ObjectReference sampler_ref;  // idem
};

// A token of one request, or (done) the end of it; the engine hands the request over with it.
struct EngineEvent {
  GenerationRequest* request;
  bool done;
  llama_token token;
  std::string piece;
  double at_ms;
};

// submit()'s arguments copied into a request (JS thread), or a thrown TypeError / RangeError /
// ERR_CONTEXT_FULL / ERR_DISPOSED before anything is queued.
std::unique_ptr<GenerationRequest> RequestFromJs(const Napi::CallbackInfo& info, llama_context* ctx);

// JS thread: settles the request's promise (env may be null at teardown: nobody waits any more).
void SettleRequest(Napi::Env env, GenerationRequest* request);

}  // namespace cuda_llama
