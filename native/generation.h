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

class Sampler;

struct GenerationRequest {
  explicit GenerationRequest(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}

  // Inputs, copied from JS before submission; read-only afterwards.
  std::vector<llama_token> prompt;
  Sampler* sampler = nullptr;                 // owned by a JS Sampler, kept alive by sampler_ref
  bool argmax_only = false;                   // Sampler::argmax_only(): greedy, nothing else
  std::shared_ptr<std::atomic<bool>> cancel;  // abort, stream break, stop sequence, dispose
  int32_t max_tokens = 0;
  // End-of-generation tokens are masked (logit -inf) while fewer than this many tokens are
  // generated: OpenAI-style clients' min_tokens, and ignore_eos (INT32_MAX) to generate exactly
  // max_tokens. A grammar that can only end is let end anyway (stop reason eog).
  int32_t min_tokens = 0;
  // Wake JS for every token (someone streams the text or looks for stop sequences). Otherwise only
  // the first token (where time to first token is measured) and the end wake it; the tokens in
  // between ride along with whatever wake-up comes next.
  bool every_token = true;
  // Reuse the longest cached prefix of an idle sequence (false: evaluate the whole prompt).
  bool reuse_prefix = true;
  // Token text: special (control) tokens are left out unless `render_special` holds them (sorted;
  // the chat template's preserved tokens, which its parser reads) or skip_special is false.
  bool skip_special = true;
  std::vector<llama_token> render_special;
  // The session it belongs to (lib/session.ts), 0 for none: a session's requests go back to the
  // sequence its last one used while that is idle, and other requests take that sequence last.
  uint32_t session = 0;
  // Context shift (opt-in): when the window is full, keep the first `shift_keep` tokens, drop half
  // of the rest (the oldest) and go on. -1: off, the request ends with contextFull.
  int32_t shift_keep = -1;
  // Several completions of one prompt (n): requests submitted with the same group id and size.
  // The first of them in the queue (the leader) evaluates the prompt; the others (followers) are
  // admitted with it, each to a sequence of its own, idle until the leader's last prompt token is
  // decoded; then the leader's sequence is copied into theirs (llama_memory_seq_cp) and each
  // samples its first token from the leader's logits with its own sampler. 0: no group.
  uint32_t group = 0;
  int32_t group_size = 1;

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
  // A follower waiting for its leader's prompt (no tokens of its own in a batch until then), and a
  // leader's followers still waiting. A leader that ends or is preempted first releases them: each
  // then evaluates the prompt itself.
  GenerationRequest* leader = nullptr;
  std::vector<GenerationRequest*> followers;
  int32_t awaiting = 0;              // a leader's followers not yet in the queue
  bool shared_prompt = false;        // a follower that got its leader's prompt evaluation
  int32_t cached_tokens = 0;         // prompt tokens reused at the first admission
  const char* cache_miss = nullptr;  // why a matching prefix could not be reused, or null
  // Where the cached_tokens came from: "resident" (the sequence held them), "restored" (the
  // session's parked state, native/parked_sessions.h), "shared" (a follower: its leader's prompt
  // evaluation, copied), "evaluated" (none were reused).
  const char* cache_source = "evaluated";
  double admitted_at_ms = -1;  // on the engine's clock (ms since it started)
  double prompt_done_at_ms = -1;
  int32_t preemptions = 0;
  int32_t dropped = 0;                // tokens the context shift dropped from the window
  const char* stop_reason = nullptr;  // set when the request is finished
  const char* error_code = nullptr;
  std::string error_message;
  std::optional<int> status;
  // Set when the context failed (code::kContextFailed): whether the request had been admitted to a
  // sequence before (true), or was refused before any of its work ran (false), which a router may
  // safely submit elsewhere.
  std::optional<bool> started;

  // JS thread only.
  Napi::Promise::Deferred deferred;
  Napi::FunctionReference on_token;   // (token, piece: Buffer, atMs[, logprob, topTokens, topLogprobs])
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
  // With log probabilities (the request's sampler asked for them): the token's and the best
  // alternatives', from native/sampler.h.
  bool has_logprobs = false;
  float logprob = 0;
  std::vector<llama_token> top_tokens;
  std::vector<float> top_logprobs;
};

// submit(prompt, sampler, cancel, onToken, options)'s arguments copied into a request (JS thread),
// or a thrown TypeError / RangeError / ERR_CONTEXT_FULL / ERR_DISPOSED before anything is queued.
std::unique_ptr<GenerationRequest> RequestFromJs(const Napi::CallbackInfo& info, llama_context* ctx);

// JS thread: settles the request's promise (env may be null at teardown: nobody waits any more).
void SettleRequest(Napi::Env env, GenerationRequest* request);

}  // namespace cuda_llama
