#include "generation.h"

#include "cancel_flag.h"
#include "common.h"
#include "sampler.h"

namespace cuda_llama {

std::unique_ptr<GenerationRequest> RequestFromJs(const Napi::CallbackInfo& info, llama_context* ctx) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[0].IsTypedArray() || !info[2].IsNumber() || !info[4].IsBoolean() ||
      !info[5].IsBoolean() || !info[6].IsFunction()) {
    throw Napi::TypeError::New(env,
                               "submit(prompt: Int32Array, sampler: Sampler, maxTokens: number, cancel: CancelFlag, "
                               "everyToken: boolean, reusePrefix: boolean, onToken)");
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
  const int32_t n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(llama_get_model(ctx)));
  for (size_t i = 0; i < prompt.ElementLength(); i++) {
    if (prompt[i] < 0 || prompt[i] >= n_vocab) {
      throw Napi::RangeError::New(env, "prompt[" + std::to_string(i) + "] is not a token id of this model");
    }
  }
  Sampler* sampler = UnwrapTagged<Sampler>(info[1], kSamplerTag, "Sampler");
  if (sampler->get() == nullptr) throw MakeError(env, code::kDisposed, "sampler has been disposed");
  CancelFlag* cancel = UnwrapTagged<CancelFlag>(info[3], kCancelFlagTag, "CancelFlag");
  const double max_tokens = info[2].As<Napi::Number>().DoubleValue();
  if (!(max_tokens >= 1 && max_tokens <= 2147483647.0))
    throw Napi::RangeError::New(env, "maxTokens must be from 1 to 2^31-1");

  auto request = std::make_unique<GenerationRequest>(env);
  request->prompt.assign(prompt.Data(), prompt.Data() + prompt.ElementLength());
  request->input = request->prompt;
  request->sampler = sampler->get();
  request->argmax_only = sampler->argmax_only();
  request->cancel = cancel->flag();
  request->max_tokens = static_cast<int32_t>(max_tokens);
  request->every_token = info[4].As<Napi::Boolean>().Value();
  request->reuse_prefix = info[5].As<Napi::Boolean>().Value();
  request->on_token = Napi::Persistent(info[6].As<Napi::Function>());
  request->sampler_ref = Napi::Persistent(info[1].As<Napi::Object>());
  if (info.Length() > 7 && info[7].IsNumber()) request->session = info[7].As<Napi::Number>().Uint32Value();
  if (info.Length() > 8 && info[8].IsNumber()) request->shift_keep = info[8].As<Napi::Number>().Int32Value();
  return request;
}

void SettleRequest(Napi::Env env, GenerationRequest* request) {
  std::unique_ptr<GenerationRequest> owned(request);
  if (env == nullptr) return;
  try {
    if (request->error_code != nullptr) {
      request->deferred.Reject(MakeError(env, request->error_code, request->error_message, request->status).Value());
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
