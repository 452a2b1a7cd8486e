#include "embedding.h"

#include <algorithm>
#include <cstring>

#include "common.h"

namespace cuda_llama {
namespace {

// The rows one text's pooled output holds: a ranking head's scores, or the pooled hidden state.
int32_t PooledWidth(const llama_model* model, enum llama_pooling_type pooling) {
  if (pooling == LLAMA_POOLING_TYPE_RANK) return static_cast<int32_t>(llama_model_n_cls_out(model));
  return llama_model_n_embd_out(model);
}

}  // namespace

void RunEmbedJob(llama_context* ctx, EmbedJob& job) {
  const llama_model* model = llama_get_model(ctx);
  const enum llama_pooling_type pooling = llama_pooling_type(ctx);
  const bool per_token = pooling == LLAMA_POOLING_TYPE_NONE;
  const int32_t width = per_token ? llama_model_n_embd_out(model) : PooledWidth(model, pooling);
  const uint32_t n_batch = std::min(llama_n_batch(ctx), llama_n_ubatch(ctx));
  const uint32_t n_seq_max = llama_n_seq_max(ctx);
  job.width = width;
  const size_t rows = per_token ? job.tokens.size() : job.lengths.size();
  job.vectors.assign(rows * static_cast<size_t>(width), 0.0f);

  llama_batch batch = llama_batch_init(static_cast<int32_t>(n_batch), 0, 1);
  llama_memory_t memory = llama_get_memory(ctx);
  size_t next_text = 0;   // first text not yet decoded
  size_t next_token = 0;  // its first token in job.tokens
  size_t next_row = 0;    // first output row not yet written
  while (next_text < job.lengths.size()) {
    if (job.stop != nullptr && job.stop->load()) {
      job.error = "the model was disposed while embedding";
      job.error_code = code::kDisposed;
      break;
    }
    // Pack whole texts while they fit; lib/ has refused any single text longer than n_batch.
    batch.n_tokens = 0;
    size_t first_text = next_text;
    size_t token = next_token;
    while (next_text < job.lengths.size() && next_text - first_text < n_seq_max &&
           batch.n_tokens + job.lengths[next_text] <= n_batch) {
      const auto seq = static_cast<llama_seq_id>(next_text - first_text);
      for (uint32_t pos = 0; pos < job.lengths[next_text]; pos++) {
        const int32_t i = batch.n_tokens++;
        batch.token[i] = job.tokens[token++];
        batch.pos[i] = static_cast<llama_pos>(pos);
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = seq;
        batch.logits[i] = 1;  // pooling needs every token's output
      }
      next_text++;
    }
    if (next_text == first_text) {  // lib/ checks lengths; this only guards against a bad caller
      job.error = "a text of " + std::to_string(job.lengths[first_text]) + " tokens exceeds the batch size (" +
                  std::to_string(n_batch) + ")";
      job.error_code = code::kDecode;
      break;
    }
    if (memory != nullptr) llama_memory_clear(memory, true);
    const int32_t rc = llama_decode(ctx, batch);
    job.decodes++;
    if (rc != 0) {
      job.error = rc == 2 ? "the model was disposed while embedding" : "llama_decode failed while embedding";
      job.error_code = rc == 2 ? code::kDisposed : code::kDecode;
      job.status = rc;
      break;
    }
    if (per_token) {
      for (int32_t i = 0; i < batch.n_tokens; i++) {
        const float* row = llama_get_embeddings_ith(ctx, i);
        if (row == nullptr) {
          job.error = "llama.cpp returned no embedding for a token";
          job.error_code = code::kDecode;
          break;
        }
        std::memcpy(job.vectors.data() + (next_row++) * width, row, sizeof(float) * width);
      }
    } else {
      for (size_t t = first_text; t < next_text; t++) {
        const float* row = llama_get_embeddings_seq(ctx, static_cast<llama_seq_id>(t - first_text));
        if (row == nullptr) {
          job.error = "llama.cpp returned no pooled embedding for a text";
          job.error_code = code::kDecode;
          break;
        }
        std::memcpy(job.vectors.data() + (next_row++) * width, row, sizeof(float) * width);
      }
    }
    if (!job.error.empty()) break;
    next_token = token;
  }
  if (memory != nullptr) llama_memory_clear(memory, true);
  llama_batch_free(batch);
}

}  // namespace cuda_llama
