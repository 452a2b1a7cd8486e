#include "argmax.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "ggml.h"

namespace cuda_llama {

// Two passes over 16 logits at a time: the largest logit, then the first id that holds it (a NaN
// never compares greater, so it is never picked). GNU vector types, so that the portable build gets
// SIMD without -march (SSE2 on x86-64): scalar code with the maximum carried in 16 named lanes is
// several times slower, since the compiler keeps those lanes on the stack (a store per logit).
llama_token ArgmaxRow(const float* logits, int32_t n_vocab) {
  using Floats4 = float __attribute__((vector_size(16)));
  using Mask4 = int32_t __attribute__((vector_size(16)));
  constexpr int32_t kBlock = 16;  // four vectors: independent maxima, so the loop is not one dependency chain
  const auto load = [logits](int32_t at) {
    Floats4 v;
    std::memcpy(&v, logits + at, sizeof v);  // unaligned load
    return v;
  };
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  Floats4 m0 = {kNegInf, kNegInf, kNegInf, kNegInf}, m1 = m0, m2 = m0, m3 = m0;
  int32_t id = 0;
  for (; id + kBlock <= n_vocab; id += kBlock) {
    const Floats4 x0 = load(id), x1 = load(id + 4), x2 = load(id + 8), x3 = load(id + 12);
    m0 = x0 > m0 ? x0 : m0;
    m1 = x1 > m1 ? x1 : m1;
    m2 = x2 > m2 ? x2 : m2;
    m3 = x3 > m3 ? x3 : m3;
  }
  float best = kNegInf;
  for (const Floats4& m : {m0, m1, m2, m3}) {
    for (int32_t lane = 0; lane < 4; lane++) best = std::max(best, m[lane]);
  }
  for (; id < n_vocab; id++) best = std::max(best, logits[id]);
  llama_token token = 0;
  for (; token + kBlock <= n_vocab; token += kBlock) {
    const Mask4 hit =
        (load(token) == best) | (load(token + 4) == best) | (load(token + 8) == best) | (load(token + 12) == best);
    uint64_t words[2];
    std::memcpy(words, &hit, sizeof words);
    if ((words[0] | words[1]) != 0) break;
  }
  for (; token < n_vocab; token++) {
    if (logits[token] == best) return token;
  }
  return 0;  // every logit NaN
}

RowsArgmax::RowsArgmax(ggml_backend_t host_backend, int32_t n_vocab) : host_backend_(host_backend), n_vocab_(n_vocab) {
  if (host_backend_ == nullptr) return;
  // The op's output tensor is a placeholder (Task writes into tokens_), so nothing is allocated.
  graph_ctx_ = ggml_init({ggml_tensor_overhead() + ggml_graph_overhead_custom(1, false), nullptr, true});
  ggml_tensor* op =
      ggml_custom_4d(graph_ctx_, GGML_TYPE_I32, 1, 1, 1, 1, nullptr, 0, &RowsArgmax::Task, GGML_N_TASKS_MAX, this);
  graph_ = ggml_new_graph_custom(graph_ctx_, 1, false);
  ggml_build_forward_expand(graph_, op);
}

RowsArgmax::~RowsArgmax() {
  if (graph_ctx_ != nullptr) ggml_free(graph_ctx_);
}

void RowsArgmax::Task(ggml_tensor* /*dst*/, int ith, int nth, void* self) {
  auto* argmax = static_cast<RowsArgmax*>(self);
  for (int32_t row = ith; row < argmax->n_rows_; row += nth) {
    argmax->tokens_[row] = ArgmaxRow(argmax->rows_[row], argmax->n_vocab_);
  }
}

ggml_status RowsArgmax::Run(const float* const* rows, int32_t n_rows, llama_token* tokens) {
  rows_ = rows;
  n_rows_ = n_rows;
  tokens_ = tokens;
  // One row is not worth waking the pool for: a few microseconds of work against a kick-off and a barrier.
  if (host_backend_ != nullptr && n_rows > 1) return ggml_backend_graph_compute(host_backend_, graph_);
  Task(nullptr, 0, 1, this);
  return GGML_STATUS_SUCCESS;
}

}  // namespace cuda_llama
