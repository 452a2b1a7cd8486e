#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <exception>

#include "common.h"
#include "model.h"
#include "sampling.h"  // llama-common (common/sampling.h)

namespace cuda_llama {
namespace {

// common_sampler_init aborts the process on this prefix when llama.cpp is built without
// llguidance (common/sampling.cpp, GGML_ABORT); lib/ refuses it first, this is the last guard.
constexpr const char* kLlguidancePrefix = "%llguidance";

// NativeSamplerParams.grammar -> common's grammar, lazy flag, triggers and generation prompt.
void ReadGrammar(Napi::Env env, Napi::Object grammar, const llama_vocab* vocab, common_params_sampling& params) {
  const std::string text = OptionalString(grammar, "text");
  if (text.compare(0, std::char_traits<char>::length(kLlguidancePrefix), kLlguidancePrefix) == 0) {
    throw MakeError(env, code::kGrammar,
                    "grammars starting with %llguidance need llama.cpp's llguidance backend, which this build lacks");
  }
  const std::string kind = OptionalString(grammar, "kind");
  common_grammar_type type = COMMON_GRAMMAR_TYPE_USER;
  if (kind == "output") {
    type = COMMON_GRAMMAR_TYPE_OUTPUT_FORMAT;
  } else if (kind == "toolCalls") {
    type = COMMON_GRAMMAR_TYPE_TOOL_CALLS;
  } else if (kind != "user") {
    throw Napi::TypeError::New(env, "grammar.kind must be 'user', 'output' or 'toolCalls'");
  }
  if (text.empty()) throw Napi::TypeError::New(env, "grammar.text must not be empty");
  params.grammar = common_grammar(type, text);
  params.grammar_lazy = OptionalBool(grammar, "lazy").value_or(false);
  params.generation_prompt = OptionalString(grammar, "generationPrompt");
  Napi::Value triggers = grammar.Get("triggers");
  if (triggers.IsArray()) {
    Napi::Array list = triggers.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) {
      if (!list.Get(i).IsObject()) throw Napi::TypeError::New(env, "grammar.triggers must hold objects");
      Napi::Object item = list.Get(i).As<Napi::Object>();
      const std::string type_name = OptionalString(item, "type");
      common_grammar_trigger trigger;
      if (type_name == "token") {
        const double token = OptionalNumber(item, "token").value_or(-1);
        if (!(token >= 0 && token < llama_vocab_n_tokens(vocab))) {
          throw Napi::RangeError::New(env, "grammar trigger token is not a token id of this model");
        }
        trigger.type = COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN;
        trigger.token = static_cast<llama_token>(token);
        trigger.value = OptionalString(item, "value");
      } else {
        trigger.type = type_name == "word"          ? COMMON_GRAMMAR_TRIGGER_TYPE_WORD
                       : type_name == "pattern"     ? COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN
                       : type_name == "patternFull" ? COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL
                                                    : static_cast<common_grammar_trigger_type>(-1);
        if (trigger.type == static_cast<common_grammar_trigger_type>(-1)) {
          throw Napi::TypeError::New(env, "grammar trigger type must be 'token', 'word', 'pattern' or 'patternFull'");
        }
        trigger.value = OptionalString(item, "value");
      }
      params.grammar_triggers.push_back(std::move(trigger));
    }
  }
  if (params.grammar_lazy && params.grammar_triggers.empty()) {
    throw Napi::TypeError::New(env, "a lazy grammar needs at least one trigger");
  }
}

// NativeSamplerParams.reasoningBudget -> common's reasoning budget sampler inputs (tags as tokens).
void ReadReasoningBudget(Napi::Object budget, const llama_vocab* vocab, common_params_sampling& params) {
  params.reasoning_budget_tokens = static_cast<int32_t>(OptionalNumber(budget, "tokens").value_or(-1));
  params.reasoning_budget_start = common_tokenize(vocab, OptionalString(budget, "startTag"), false, true);
  for (const std::string& tag : OptionalStrings(budget, "endTags")) {
    if (!tag.empty()) params.reasoning_budget_end.push_back(common_tokenize(vocab, tag, false, true));
  }
  if (!params.reasoning_budget_end.empty()) {
    // What is forced when the budget runs out: the message, then the first end tag.
    llama_tokens forced = params.reasoning_budget_end.front();
    const std::string message = OptionalString(budget, "message");
    if (!message.empty()) {
      llama_tokens words = common_tokenize(vocab, message, false, true);
      forced.insert(forced.begin(), words.begin(), words.end());
    }
    params.reasoning_budget_forced = std::move(forced);
  }
}

}  // namespace

Napi::Function Sampler::Define(Napi::Env env) {
  return DefineClass(env, "Sampler", {InstanceMethod<&Sampler::Dispose>("dispose")});
}

Sampler::Sampler(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Sampler>(info) {
  Napi::Env env = info.Env();
  Model* model = UnwrapTagged<Model>(info[0], kModelTag, "Model");
  const llama_model* llama = model->Get(env);
  const llama_vocab* vocab = llama_model_get_vocab(llama);
  n_vocab_ = llama_vocab_n_tokens(vocab);
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "options must be an object");
  Napi::Object options = info[1].As<Napi::Object>();
  auto number = [&](const char* key) {
    auto value = OptionalNumber(options, key);
    if (!value) throw Napi::TypeError::New(env, std::string(key) + " is required");
    return *value;
  };

  common_params_sampling params;
  params.no_perf = true;
  params.temp = static_cast<float>(number("temperature"));
  params.top_k = static_cast<int32_t>(number("topK"));
  params.top_p = static_cast<float>(number("topP"));
  params.min_p = static_cast<float>(number("minP"));
  params.typ_p = static_cast<float>(number("typicalP"));
  params.top_n_sigma = static_cast<float>(number("topNSigma"));
  params.xtc_probability = static_cast<float>(number("xtcProbability"));
  params.xtc_threshold = static_cast<float>(number("xtcThreshold"));
  params.penalty_repeat = static_cast<float>(number("repeatPenalty"));
  params.penalty_last_n = static_cast<int32_t>(number("repeatLastN"));
  params.penalty_freq = static_cast<float>(number("frequencyPenalty"));
  params.penalty_present = static_cast<float>(number("presencePenalty"));
  params.dry_multiplier = static_cast<float>(number("dryMultiplier"));
  params.dry_base = static_cast<float>(number("dryBase"));
  params.dry_allowed_length = static_cast<int32_t>(number("dryAllowedLength"));
  params.dry_penalty_last_n = static_cast<int32_t>(number("dryPenaltyLastN"));
  params.dry_sequence_breakers = OptionalStrings(options, "drySequenceBreakers");
  params.mirostat = static_cast<int32_t>(number("mirostat"));
  params.mirostat_tau = static_cast<float>(number("mirostatTau"));
  params.mirostat_eta = static_cast<float>(number("mirostatEta"));
  params.seed = static_cast<uint32_t>(number("seed"));
  logprobs_ = static_cast<int32_t>(number("logprobs"));
  if (params.mirostat != 0 && params.mirostat != 1 && params.mirostat != 2) {
    throw Napi::RangeError::New(env, "mirostat must be 0, 1 or 2");  // common asserts on anything else
  }
  if (logprobs_ < -1 || logprobs_ > 20) throw Napi::RangeError::New(env, "logprobs must be from -1 to 20");

  Napi::Value bias = options.Get("logitBias");
  if (!bias.IsUndefined()) {
    if (!bias.IsObject())
      throw Napi::TypeError::New(env, "logitBias must be { tokens: Int32Array, biases: Float32Array }");
    Napi::Value tokens = bias.As<Napi::Object>().Get("tokens");
    Napi::Value biases = bias.As<Napi::Object>().Get("biases");
    if (!tokens.IsTypedArray() || tokens.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        !biases.IsTypedArray() || biases.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array ||
        tokens.As<Napi::Int32Array>().ElementLength() != biases.As<Napi::Float32Array>().ElementLength()) {
      throw Napi::TypeError::New(env, "logitBias must be { tokens: Int32Array, biases: Float32Array } of one length");
    }
    Napi::Int32Array ids = tokens.As<Napi::Int32Array>();
    Napi::Float32Array values = biases.As<Napi::Float32Array>();
    for (size_t i = 0; i < ids.ElementLength(); i++) {
      if (ids[i] < 0 || ids[i] >= n_vocab_)
        throw Napi::RangeError::New(env, "logitBias holds a token id this model lacks");
      params.logit_bias.push_back({ids[i], values[i]});
    }
  }
  Napi::Value grammar = options.Get("grammar");
  if (!grammar.IsUndefined()) {
    if (!grammar.IsObject()) throw Napi::TypeError::New(env, "grammar must be an object");
    ReadGrammar(env, grammar.As<Napi::Object>(), vocab, params);
  }
  if (!params.grammar.empty()) {
    // Never part of UTF-8, and read by the grammar as characters that do not exist (model.h).
    for (llama_token t : model->NonUtf8Tokens(env)) params.logit_bias.push_back({t, -INFINITY});
  }
  Napi::Value budget = options.Get("reasoningBudget");
  if (!budget.IsUndefined()) {
    if (!budget.IsObject()) throw Napi::TypeError::New(env, "reasoningBudget must be an object");
    ReadReasoningBudget(budget.As<Napi::Object>(), vocab, params);
  }

  greedy_ = params.temp <= 0.0f;
  const bool reshapes =
      params.penalty_repeat != 1.0f || params.penalty_freq != 0.0f || params.penalty_present != 0.0f ||
      (params.dry_multiplier > 0.0f && params.dry_penalty_last_n != 0) || !params.logit_bias.empty() ||
      !params.grammar.empty() || params.reasoning_budget_tokens >= 0 || params.mirostat != 0;
  argmax_only_ = greedy_ && !reshapes && logprobs_ < 0;
  // With log probabilities the candidates must be the distribution the token was drawn from, so
  // the grammar masks them first instead of checking only the drawn token (common's rejection
  // sampling, which is faster but leaves the unconstrained distribution in the candidates).
  grammar_first_ = logprobs_ >= 0 && !params.grammar.empty();
  if (!argmax_only_) {
    std::string problem;
    try {
      common_ = common_sampler_init(llama, params);
    } catch (const std::exception& e) {
      problem = e.what();
    } catch (...) {
      problem = "a non-standard exception";
    }
    if (common_ == nullptr) {
      throw MakeError(env, code::kGrammar,
                      "llama.cpp refused the sampling settings: " + (problem.empty() ? "no sampler" : problem));
    }
  }
  TagObject(info.This().As<Napi::Object>(), kSamplerTag);
}

Sampler::~Sampler() {
  if (common_ != nullptr) common_sampler_free(common_);
}

Napi::Value Sampler::Dispose(const Napi::CallbackInfo& info) {
  disposed_ = true;
  if (common_ != nullptr) {
    common_sampler_free(common_);
    common_ = nullptr;
  }
  return info.Env().Undefined();
}

void Sampler::Sample(llama_context* ctx, int32_t index, SampledToken& out) {
  if (common_ == nullptr) {
    out.error_code = code::kDisposed;
    out.error_message = "the sampler was disposed while its request ran";
    return;
  }
  try {
    out.token = common_sampler_sample(common_, ctx, index, grammar_first_);
  } catch (const std::exception& e) {
    out.error_code = code::kGrammar;
    out.error_message = std::string("sampling failed: ") + e.what();
    return;
  }
  // A dead end: every candidate was masked (-inf) by the grammar or the logit bias, so dist fell
  // back to an arbitrary one. Accepting it would leave the grammar with no stack, and the next
  // step would assert in llama_grammar_reject_candidates; the request ends here instead.
  const llama_token_data_array* candidates = common_sampler_get_candidates(common_, false);
  const bool chosen = candidates->selected >= 0 && static_cast<size_t>(candidates->selected) < candidates->size;
  if (!chosen || !(candidates->data[candidates->selected].logit > -INFINITY)) {
    out.token = LLAMA_TOKEN_NULL;
    out.error_code = code::kGrammar;
    out.error_message =
        "no token can continue the output: the grammar (or a logit bias of -Infinity on every allowed token) leaves "
        "none";
    return;
  }
  if (logprobs_ >= 0) {
    if (greedy_) {
      LogprobsFromLogits(llama_get_logits_ith(ctx, index), out);
    } else {
      LogprobsFromCandidates(out);
    }
  }
}

bool Sampler::Accept(llama_token token, SampledToken& out) {
  if (common_ == nullptr) return true;
  try {
    common_sampler_accept(common_, token, true);
    return true;
  } catch (const std::exception& e) {
    // llama_grammar_accept_impl throws when the token leaves no grammar stack; the grammar is
    // unusable from here (its stacks are empty), so the request ends before anything samples again.
    out.error_code = code::kGrammar;
    out.error_message = std::string("the grammar refused the chosen token: ") + e.what();
    return false;
  }
}

void Sampler::LogprobsFromLogits(const float* logits, SampledToken& out) {
  // log softmax over the whole vocabulary: logit - max - log(sum(exp(logit - max))).
  float max = -INFINITY;
  for (int32_t i = 0; i < n_vocab_; i++) max = std::max(max, logits[i]);
  double sum = 0;
  for (int32_t i = 0; i < n_vocab_; i++) sum += std::exp(static_cast<double>(logits[i] - max));
  const float log_sum = static_cast<float>(std::log(sum));
  out.logprob = logits[out.token] - max - log_sum;
  const int32_t top = std::min(logprobs_, n_vocab_);
  if (top <= 0) return;
  order_.resize(static_cast<size_t>(n_vocab_));
  for (int32_t i = 0; i < n_vocab_; i++) order_[i] = i;
  std::partial_sort(order_.begin(), order_.begin() + top, order_.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  for (int32_t k = 0; k < top; k++) {
    out.top_tokens.push_back(order_[k]);
    out.top_logprobs.push_back(logits[order_[k]] - max - log_sum);
  }
}

void Sampler::LogprobsFromCandidates(SampledToken& out) {
  // After dist (or mirostat) the candidates hold the normalized probabilities the token was drawn
  // from; the ones a sampler removed or masked are not among them, or have probability 0.
  const llama_token_data_array* candidates = common_sampler_get_candidates(common_, false);
  out.logprob = std::log(candidates->data[candidates->selected].p);
  const int32_t top = std::min<int32_t>(logprobs_, static_cast<int32_t>(candidates->size));
  if (top <= 0) return;
  order_.resize(candidates->size);
  for (size_t i = 0; i < candidates->size; i++) order_[i] = static_cast<int32_t>(i);
  const llama_token_data* data = candidates->data;
  std::partial_sort(order_.begin(), order_.begin() + top, order_.end(), [&](int32_t a, int32_t b) {
    return data[a].p > data[b].p || (data[a].p == data[b].p && data[a].id < data[b].id);
  });
  for (int32_t k = 0; k < top && data[order_[k]].p > 0; k++) {
    out.top_tokens.push_back(data[order_[k]].id);
    out.top_logprobs.push_back(std::log(data[order_[k]].p));
  }
}

}  // namespace cuda_llama
