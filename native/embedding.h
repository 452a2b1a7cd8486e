// Embedding: many texts through one embeddings context (llama_context_params.embeddings), packed
// into as few llama_decode calls as the context allows. lib/ validates and tokenizes the texts,
// checks each against the batch size and normalizes; the packing, decoding and copying of the
// vectors is here, on the context's own thread.
//
// Aborts reachable through this path and what keeps each away (test/native/embedding.test.ts):
//   llama_context::encode  GGML_ASSERT(n_ubatch >= n_tokens)         a batch never holds more tokens
//   llama_context::decode  GGML_ASSERT(non-causal || n_ubatch >= n)    than n_ubatch, which lib/ makes
//   llama_context::decode  GGML_ASSERT(n_tokens_all <= n_batch)        equal to n_batch for embedding
//                                                                      contexts; a longer text is
//                                                                      refused before it gets here
//   llama_batch_allocr::init  seq_id >= n_seq_max (returns -1)         at most n_seq_max texts a batch
//   llm_graph_context::build_pooling  GGML_ABORT(unknown pooling)      lib/ passes only llama.h's types
//   pooled embeddings need every token output (returns -1)             every token is marked output
// A pooled mean over a sequence split across ubatches would be wrong, not an abort: n_ubatch ==
// n_batch keeps each text in one ubatch.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "llama.h"

namespace cuda_llama {

struct EmbedJob {
  // Inputs: the texts' tokens end to end, and each text's length (each at least 1).
  std::vector<llama_token> tokens;
  std::vector<uint32_t> lengths;
  // Set by Context::Free to stop between (and, on the CPU, inside) decodes.
  std::atomic<bool>* stop = nullptr;

  // Outputs: one row per text (pooled) or per token (pooling none), `width` floats each.
  std::vector<float> vectors;
  int32_t width = 0;
  int32_t decodes = 0;
  // Non-empty on failure, with its llama.cpp status.
  std::string error;
  const char* error_code = nullptr;
  int32_t status = 0;
};

// Context thread. Fills job.vectors, or job.error.
void RunEmbedJob(llama_context* ctx, EmbedJob& job);

}  // namespace cuda_llama
