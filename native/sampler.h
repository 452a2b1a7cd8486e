// Sampler: one request's token choice, from fully resolved options (lib/ applies the defaults and
// validates; this class maps them onto llama.cpp). Two shapes:
//   - greedy alone (temperature 0, nothing that reshapes the logits, no log probabilities): the
//     engine takes the argmax of the row itself (native/argmax.h), several rows at once;
//   - everything else: llama-common's common_sampler (common/sampling.h), as llama-server builds it
//     per request: logit bias, penalties, DRY, top-n-sigma, top-k, typical, top-p, min-p, XTC,
//     temperature and dist (or mirostat), a GBNF grammar (lazy with its triggers, or from the
//     start, fed the generation prompt the template already wrote), and the reasoning budget.
// On top of common this class adds what a server must not lack: a grammar that leaves no token to
// choose (a dead end) or refuses a token ends the request with ERR_GRAMMAR instead of reaching
// llama.cpp's asserts on an empty grammar stack (see lib/structured/grammar-guards.ts), and the
// log probabilities of the chosen token and the best alternatives.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "llama.h"

struct common_sampler;

namespace cuda_llama {

// What Sampler::Sample decided for one output row.
struct SampledToken {
  llama_token token = LLAMA_TOKEN_NULL;
  // Set when no token can be chosen (the grammar or the logit bias leaves none, or common threw):
  // the request ends with this error and the sampler is not used again.
  const char* error_code = nullptr;
  std::string error_message;
  // With log probabilities asked for: the chosen token's, and the best `top` alternatives'.
  float logprob = 0;
  std::vector<llama_token> top_tokens;
  std::vector<float> top_logprobs;

  // Back to "nothing decided", keeping the vectors' capacity (one is reused for every row).
  void Reset() {
    token = LLAMA_TOKEN_NULL;
    error_code = nullptr;
    error_message.clear();
    logprob = 0;
    top_tokens.clear();
    top_logprobs.clear();
  }
};

class Sampler : public Napi::ObjectWrap<Sampler> {
 public:
  static Napi::Function Define(Napi::Env env);
  // JS: new Sampler(model, NativeSamplerParams) (lib/binding/native.ts lists the fields). Throws
  // ERR_GRAMMAR when llama.cpp refuses the grammar, a TypeError for a malformed field.
  explicit Sampler(const Napi::CallbackInfo& info);
  ~Sampler() override;

  // Greedy alone: the next token is the argmax of the logits, which the engine takes directly
  // (several rows in one graph) instead of building an n_vocab candidate array for every token.
  bool argmax_only() const { return argmax_only_; }
  // Whether the request asked for log probabilities (-1: no; else the alternatives wanted, 0-20).
  int32_t logprobs() const { return logprobs_; }
  bool disposed() const { return disposed_; }

  // Context thread, while the request runs (lib/ never shares a sampler between two requests).
  // Chooses the token for batch row `index` of the last decode. Not for argmax_only samplers.
  void Sample(llama_context* ctx, int32_t index, SampledToken& out);
  // Context thread: the chosen token is part of the output (penalties, grammar and reasoning
  // budget advance). False, with `out`'s error set, when the grammar refused it.
  bool Accept(llama_token token, SampledToken& out);

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  // Log probabilities into `out`: a greedy row's from the full-vocabulary softmax of its logits, a
  // sampled row's from the candidates it was drawn from.
  void LogprobsFromLogits(const float* logits, SampledToken& out);
  void LogprobsFromCandidates(SampledToken& out);

  common_sampler* common_ = nullptr;
  int32_t n_vocab_ = 0;
  bool argmax_only_ = false;
  bool disposed_ = false;
  bool greedy_ = false;
  bool grammar_first_ = false;
  int32_t logprobs_ = -1;
  std::vector<int32_t> order_;  // scratch for the top alternatives
};

}  // namespace cuda_llama
