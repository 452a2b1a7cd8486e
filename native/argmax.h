// Greedy decoding's pick, the id of the largest logit, for one sequence or for several at once.
// The generation loop takes it directly for a greedy sampler (Sampler::argmax_only) instead of
// llama_sampler_sample, which builds an n_vocab-entry candidate array per token and sequence.
#pragma once

#include <cstdint>

#include "ggml-backend.h"
#include "llama.h"

struct ggml_context;
struct ggml_cgraph;
struct ggml_tensor;

namespace cuda_llama {

// The first id that holds the largest logit, so ties go to the lowest id as in llama.cpp's greedy
// sampler; a NaN logit never wins. 0 when every logit is NaN.
llama_token ArgmaxRow(const float* logits, int32_t n_vocab);

// The argmax of several rows (one per sequence of a step) at once, spread over the context's
// ggml threadpool. On a GPU those threads sit idle between steps while the host picks the tokens,
// and one row after another on the context thread is a large share of a many-sequence step's
// host time (docs/benchmarks.md).
// The rows are one ggml graph of a single custom op, run through a CPU backend that shares the
// threadpool llama.cpp computes on, so no thread of our own competes with ggml's for the cores.
// Context thread only; one job at a time.
class RowsArgmax {
 public:
  // host_backend: a CPU backend on the context's threadpool (ContextParts::host_backend), or null,
  // then the rows are done one after another on the calling thread. Not owned. With a backend,
  // builds the one-node graph here (ggml_init aborts on allocation failure, as everywhere in ggml).
  RowsArgmax(ggml_backend_t host_backend, int32_t n_vocab);
  ~RowsArgmax();
  RowsArgmax(const RowsArgmax&) = delete;
  RowsArgmax& operator=(const RowsArgmax&) = delete;

  // tokens[i] = ArgmaxRow(rows[i], n_vocab) for each i < n_rows. The rows must stay readable
  // until this returns (llama_get_logits_ith's pointers do until the next decode). Anything but
  // GGML_STATUS_SUCCESS is the pool's graph computation failing; the tokens are then not set.
  ggml_status Run(const float* const* rows, int32_t n_rows, llama_token* tokens);

 private:
  // ggml's custom-op callback: task `ith` of `nth` takes rows ith, ith + nth, ...
  static void Task(ggml_tensor* dst, int ith, int nth, void* self);

  ggml_backend_t host_backend_;
  const int32_t n_vocab_;
  ggml_context* graph_ctx_ = nullptr;  // holds the op's tensor and the graph; no data
  ggml_cgraph* graph_ = nullptr;
  // The current Run's arguments, read by Task on ggml's threads. ggml_graph_compute's kick-off
  // and its closing barrier order these writes and the tokens' writes with the threads.
  const float* const* rows_ = nullptr;
  int32_t n_rows_ = 0;
  llama_token* tokens_ = nullptr;
};

}  // namespace cuda_llama
