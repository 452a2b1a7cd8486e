// Sampler: owns one llama_sampler chain built from fully resolved options (lib/ applies the
// defaults; this class only maps them onto llama_sampler_init_* in llama.cpp's usual order).
#pragma once

#include <napi.h>

#include "llama.h"

namespace cuda_llama {

class Sampler : public Napi::ObjectWrap<Sampler> {
 public:
  static Napi::Function Define(Napi::Env env);
  // JS: new Sampler(model, { temperature, topK, topP, minP, repeatPenalty, repeatLastN,
  //                    frequencyPenalty, presencePenalty, seed })
  explicit Sampler(const Napi::CallbackInfo& info);
  ~Sampler() override;

  // Only the context thread uses it during a generation; lib/ never shares a sampler between
  // two generations at once.
  llama_sampler* get() const { return chain_; }
  // The chain is greedy alone (temperature 0, no penalties): the next token is the argmax of
  // the logits, which the generation loop takes directly instead of llama_sampler_sample
  // building and sorting through an n_vocab candidate array for every token.
  bool argmax_only() const { return argmax_only_; }

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  llama_sampler* chain_ = nullptr;
  bool argmax_only_ = false;
};

}  // namespace cuda_llama
