#include "generation.h"

#include <algorithm>

#include "cancel_flag.h"
#include "common.h"
#include "sampler.h"

namespace cuda_llama {

std::unique_ptr<GenerationRequest> RequestFromJs(const Napi::CallbackInfo& info, llama_context* ctx) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsTypedArray() || !info[3].IsFunction() || !info[4].IsObject()) {
    throw Napi::TypeError::New(env,
                               "submit(prompt: Int32Array, sampler: Sampler, cancel: CancelFlag, onToken, "
                               "{ maxTokens, everyToken, reusePrefix, ... })");
  }
  Napi::TypedArray typed = info[0].As<Napi::TypedArray>();
  if (typed.TypedArrayType() != napi_int32_array) throw Napi::TypeError::New(env, "prompt must be an Int32Array");
  Napi::Int32Array prompt = info[0].As<Napi::Int32Array>();
  if (prompt.ElementLength() == 0) throw Napi::RangeError::New(env, "prompt has no tokens");
  if (prompt.ElementLength() >= llama_n_ctx_seq(ctx)) {
    throw MakeError(env, code::kContextFull,
                    "prompt of " + std::to_string(prompt.ElementLength()) + " tokens does not fit a context of " +
                        std::to_string(llama_n_ctx_seq(ctx)));
  }
  const llama_vocab* vocab = llama_model_get_vocab(llama_get_model(ctx));
  const int32_t n_vocab = llama_vocab_n_tokens(vocab);
  for (size_t i = 0; i < prompt.ElementLength(); i++) {
    if (prompt[i] < 0 || prompt[i] >= n_vocab) {
      throw Napi::RangeError::New(env, "prompt[" + std::to_string(i) + "] is not a token id of this model");
    }
  }
  Sampler* sampler = UnwrapTagged<Sampler>(info[1], kSamplerTag, "Sampler");
  if (sampler->disposed()) throw MakeError(env, code::kDisposed, "sampler has been disposed");
  CancelFlag* cancel = UnwrapTagged<CancelFlag>(info[2], kCancelFlagTag, "CancelFlag");
  Napi::Object options = info[4].As<Napi::Object>();
  const double max_tokens = OptionalNumber(options, "maxTokens").value_or(0);
  if (!(max_tokens >= 1 && max_tokens <= 2147483647.0))
    throw Napi::RangeError::New(env, "maxTokens must be from 1 to 2^31-1");
  const double min_tokens = OptionalNumber(options, "minTokens").value_or(0);
  if (!(min_tokens >= 0 && min_tokens <= 2147483647.0))
    throw Napi::RangeError::New(env, "minTokens must be from 0 to 2^31-1");
  const double group_size = OptionalNumber(options, "groupSize").value_or(1);
  if (!(group_size >= 1 && group_size <= llama_n_seq_max(ctx)))
    throw Napi::RangeError::New(env, "groupSize must be from 1 to the context's sequences");

  auto request = std::make_unique<GenerationRequest>(env);
  request->prompt.assign(prompt.Data(), prompt.Data() + prompt.ElementLength());
  request->input = request->prompt;
  request->sampler = sampler;
  request->argmax_only = sampler->argmax_only();
  request->cancel = cancel->flag();
  request->max_tokens = static_cast<int32_t>(max_tokens);
  request->min_tokens = static_cast<int32_t>(min_tokens);
  request->every_token = OptionalBool(options, "everyToken").value_or(true);
  request->reuse_prefix = OptionalBool(options, "reusePrefix").value_or(true);
  request->skip_special = OptionalBool(options, "skipSpecial").value_or(true);
  request->session = static_cast<uint32_t>(OptionalNumber(options, "session").value_or(0));
  request->shift_keep = static_cast<int32_t>(OptionalNumber(options, "contextShiftKeep").value_or(-1));
  request->group = static_cast<uint32_t>(OptionalNumber(options, "group").value_or(0));
  request->group_size = request->group == 0 ? 1 : static_cast<int32_t>(group_size);
  Napi::Value render = options.Get("renderSpecial");
  if (!render.IsUndefined()) {
    if (!render.IsTypedArray() || render.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throw Napi::TypeError::New(env, "renderSpecial must be an Int32Array");
    }
    Napi::Int32Array ids = render.As<Napi::Int32Array>();
    request->render_special.assign(ids.Data(), ids.Data() + ids.ElementLength());
    std::sort(request->render_special.begin(), request->render_special.end());
  }
  request->on_token = Napi::Persistent(info[3].As<Napi::Function>());
  request->sampler_ref = Napi::Persistent(info[1].As<Napi::Object>());
  return request;
}

void SettleRequest(Napi::Env env, GenerationRequest* request) {
  std::unique_ptr<GenerationRequest> owned(request);
  if (env == nullptr) return;
  try {
    if (request->error_code != nullptr) {
      Napi::Error error = MakeError(env, request->error_code, request->error_message, request->status);
      if (request->started) error.Set("started", Napi::Boolean::New(env, *request->started));
      request->deferred.Reject(error.Value());
      return;
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("stopReason", request->stop_reason == nullptr ? "aborted" : request->stop_reason);
    result.Set("cachedTokens", request->cached_tokens);
    result.Set("cacheMiss", request->cache_miss == nullptr ? env.Null() : Napi::String::New(env, request->cache_miss));
    result.Set("cacheSource", request->cache_source);
    result.Set("admittedAtMs", request->admitted_at_ms);
    result.Set("promptDoneAtMs", request->prompt_done_at_ms);
    result.Set("preemptions", request->preemptions);
    result.Set("droppedTokens", request->dropped);
    result.Set("sharedPrompt", request->shared_prompt);
    request->deferred.Resolve(result);
  } catch (const Napi::Error& error) {
    // Building the result failed: reject with why, unless the env can no longer run JS at all (a
    // terminated worker), where nobody waits, and a throw out of a finalizer aborts the process.
    try {
      request->deferred.Reject(error.Value());
    } catch (const Napi::Error&) {
    }
  }
}

}  // namespace cuda_llama
