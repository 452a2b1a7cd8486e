#include "sampler.h"

#include "common.h"
#include "model.h"

namespace cuda_llama {

Napi::Function Sampler::Define(Napi::Env env) {
  return DefineClass(env, "Sampler", {InstanceMethod<&Sampler::Dispose>("dispose")});
}

Sampler::Sampler(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Sampler>(info) {
  Napi::Env env = info.Env();
  Model* model = UnwrapTagged<Model>(info[0], kModelTag, "Model");
  const int32_t n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model->Get(env)));
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object options = info[1].As<Napi::Object>();
  auto number = [&](const char* key) {
    auto value = OptionalNumber(options, key);
    if (!value) throw Napi::TypeError::New(env, std::string(key) + " is required");
    return *value;
  };
  const float temperature = static_cast<float>(number("temperature"));
  const int32_t top_k = static_cast<int32_t>(number("topK"));
  const float top_p = static_cast<float>(number("topP"));
  const float min_p = static_cast<float>(number("minP"));
  const float repeat_penalty = static_cast<float>(number("repeatPenalty"));
  const int32_t repeat_last_n = static_cast<int32_t>(number("repeatLastN"));
  const float frequency_penalty = static_cast<float>(number("frequencyPenalty"));
  const float presence_penalty = static_cast<float>(number("presencePenalty"));
  const uint32_t seed = static_cast<uint32_t>(number("seed"));

  llama_sampler_chain_params params = llama_sampler_chain_default_params();
  params.no_perf = true;
  chain_ = llama_sampler_chain_init(params);
  const bool penalties = repeat_penalty != 1.0f || frequency_penalty != 0.0f || presence_penalty != 0.0f;
  argmax_only_ = temperature <= 0.0f && !penalties;
  if (penalties) {
    llama_sampler_chain_add(chain_, llama_sampler_init_penalties(n_vocab, repeat_last_n, repeat_penalty,
                                                                 frequency_penalty, presence_penalty));
  }
  if (temperature <= 0.0f) {
    llama_sampler_chain_add(chain_, llama_sampler_init_greedy());
  } else {
    if (top_k > 0) llama_sampler_chain_add(chain_, llama_sampler_init_top_k(top_k));
    if (top_p < 1.0f) llama_sampler_chain_add(chain_, llama_sampler_init_top_p(top_p, 1));
    if (min_p > 0.0f) llama_sampler_chain_add(chain_, llama_sampler_init_min_p(min_p, 1));
    llama_sampler_chain_add(chain_, llama_sampler_init_temp(temperature));
    llama_sampler_chain_add(chain_, llama_sampler_init_dist(seed));
  }
  TagObject(info.This().As<Napi::Object>(), kSamplerTag);
}

Sampler::~Sampler() {
  if (chain_ != nullptr) llama_sampler_free(chain_);
}

Napi::Value Sampler::Dispose(const Napi::CallbackInfo& info) {
  if (chain_ != nullptr) {
    llama_sampler_free(chain_);
    chain_ = nullptr;
  }
  return info.Env().Undefined();
}

}  // namespace cuda_llama
