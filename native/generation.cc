#include "generation.h"

#include <algorithm>
#include <chrono>

#include "argmax.h"
#include "common.h"

namespace cuda_llama {
namespace {

using Clock = std::chrono::steady_clock;

// llama_batch_init / llama_batch_free, scoped.
class OwnedBatch {
 public:
  explicit OwnedBatch(int32_t capacity) : batch_(llama_batch_init(capacity, 0, 1)) {}
  ~OwnedBatch() { llama_batch_free(batch_); }
  OwnedBatch(const OwnedBatch&) = delete;
  OwnedBatch& operator=(const OwnedBatch&) = delete;

  // Returns the token's index in the batch (what llama_sampler_sample takes). The caller keeps
  // the count within the capacity.
  int32_t Add(llama_token token, llama_pos pos, llama_seq_id seq, bool wants_logits) {
    const int32_t i = batch_.n_tokens++;
    batch_.token[i] = token;
    batch_.pos[i] = pos;
    batch_.n_seq_id[i] = 1;
    batch_.seq_id[i][0] = seq;
    batch_.logits[i] = wants_logits;
    return i;
  }
  void Clear() { batch_.n_tokens = 0; }
  int32_t size() const { return batch_.n_tokens; }
  const llama_batch& get() const { return batch_; }

 private:
  llama_batch batch_;
};

// JS thread: hands every pending token to the JS callback, in order.
void DrainTokens(Napi::Env env, Napi::Function fn, GenerationJob* job) {
  std::vector<TokenEvent> events;
  {
    std::lock_guard<std::mutex> lock(job->pending_mutex);
    events.swap(job->pending);
    job->drain_scheduled = false;
  }
  if (env == nullptr || fn == nullptr) return;
  for (const TokenEvent& event : events) {
    // lib/ wraps the user's callback; a throw here would be our bug, not a user's.
    fn.Call({Napi::Number::New(env, event.sequence), Napi::Number::New(env, event.token),
             Napi::Buffer<char>::Copy(env, event.piece.data(), event.piece.size()), Napi::Number::New(env, event.at_ms)});
  }
}

// Context thread: schedules a drain of the pending tokens unless one is already on its way.
void WakeJs(GenerationJob* job) {
  {
    std::lock_guard<std::mutex> lock(job->pending_mutex);
    if (job->drain_scheduled || job->pending.empty()) return;
    job->drain_scheduled = true;
  }
  job->on_token.BlockingCall(job, DrainTokens);
}

// The decode loop's state; lives on the context thread for one job.
class Runner {
 public:
  Runner(llama_context* ctx, ggml_backend_t host_backend, GenerationJob* job)
      : ctx_(ctx),
        job_(job),
        vocab_(llama_model_get_vocab(llama_get_model(ctx))),
        n_vocab_(llama_vocab_n_tokens(vocab_)),
        n_ctx_seq_(static_cast<llama_pos>(llama_n_ctx_seq(ctx))),
        n_batch_(static_cast<int32_t>(llama_n_batch(ctx))),
        argmax_(host_backend, n_vocab_),
        next_(job->sequences.size()),
        n_past_(job->sequences.size(), 0) {}

  void Run() {
    // Each job starts from an empty KV cache: same prompt, same result. The cells are reset;
    // zeroing the buffer too (data = true) would cost milliseconds per call for nothing.
    llama_memory_clear(llama_get_memory(ctx_), false);
    for (GenerationSequence& seq : job_->sequences) llama_sampler_reset(seq.sampler);
    if (!DecodePrompts()) return;
    GenerateTokens();
  }

 private:
  double MsSinceStart() const { return std::chrono::duration<double, std::milli>(Clock::now() - start_).count(); }
  bool JobCancelled() const { return job_->cancel->load(); }

  // Every prompt, packed into batches of up to n_batch tokens across sequences; a sequence's first
  // token is sampled right after the batch that holds the end of its prompt (later batches would
  // overwrite those logits).
  bool DecodePrompts() {
    // No bigger than the prompts: llama_batch_init makes one allocation per token slot, 2048 of
    // them at the default n_batch, inside the prompt time, for a 16- or 128-token prompt.
    size_t total = 0;
    for (const GenerationSequence& seq : job_->sequences) total += seq.prompt.size();
    const int32_t capacity = static_cast<int32_t>(std::min<size_t>(static_cast<size_t>(n_batch_), total));
    OwnedBatch batch(capacity);
    std::vector<std::pair<int32_t, int32_t>> ended;  // (sequence, batch index) whose prompt ends in `batch`
    int32_t decoded = 0;
    auto flush = [&]() {
      if (batch.size() == 0) return true;
      if (!Decode(batch, decoded)) return false;
      decoded += batch.size();
      // The last flush leaves the time the last prompt token was decoded, before any sampling.
      // llama_decode only queues the work on a GPU backend: wait for it, or the prompt time would
      // stop at the launch and read several times faster than llama-bench's own figure.
      // Only a batch that ends a prompt waits (its logits are read next anyway, and the last batch
      // always ends one); the others stay queued, so building the next batch overlaps the GPU.
      if (!ended.empty()) llama_synchronize(ctx_);
      job_->prompt_ms = MsSinceStart();
      if (!AcceptOutputs(ended)) return false;
      ended.clear();
      batch.Clear();
      return true;
    };
    for (int32_t s = 0; s < static_cast<int32_t>(job_->sequences.size()); s++) {
      const std::vector<llama_token>& prompt = job_->sequences[s].prompt;
      const llama_pos n = static_cast<llama_pos>(prompt.size());
      for (llama_pos t = 0; t < n; t++) {
        if (batch.size() == capacity && !flush()) return false;
        const int32_t index = batch.Add(prompt[t], t, s, t == n - 1);
        if (t == n - 1) {
          n_past_[s] = n;
          ended.emplace_back(s, index);
        }
      }
    }
    return flush();
  }

  // One token per live sequence per decode, until none is left.
  void GenerateTokens() {
    OwnedBatch batch(static_cast<int32_t>(job_->sequences.size()));
    std::vector<std::pair<int32_t, int32_t>> stepped;  // (sequence, batch index) in this step
    for (;;) {
      batch.Clear();
      stepped.clear();
      for (int32_t s = 0; s < static_cast<int32_t>(job_->sequences.size()); s++) {
        if (job_->sequences[s].stop_reason != nullptr) continue;
        stepped.emplace_back(s, batch.Add(next_[s], n_past_[s], s, true));
      }
      if (stepped.empty()) return;
      if (!Decode(batch, kGenerating)) return;
      for (auto [seq, index] : stepped) n_past_[seq]++;
      if (!AcceptOutputs(stepped)) return;
    }
  }

  // llama_decode; on failure every live sequence stops (or the job fails) and false is returned.
  // `prompt_offset`: where the batch starts in the prompts, or kGenerating. The error text is
  // built only on failure: this runs once per generated token.
  static constexpr int32_t kGenerating = -1;
  bool Decode(const OwnedBatch& batch, int32_t prompt_offset) {
    if (JobCancelled()) {
      StopAll("aborted");
      return false;
    }
    const int32_t rc = llama_decode(ctx_, batch.get());
    if (rc == 0) return true;
    if (rc == 2 && JobCancelled()) {
      StopAll("aborted");
    } else if (rc == 1 && prompt_offset == kGenerating) {
      StopAll("contextFull");  // no KV slot left for the next tokens
    } else {
      job_->error_code = code::kDecode;
      job_->error_message = "llama_decode failed " +
                            (prompt_offset == kGenerating
                                 ? "after " + std::to_string(GeneratedSoFar()) + " generated tokens"
                                 : "on the prompts (tokens " + std::to_string(prompt_offset) + ".." +
                                       std::to_string(prompt_offset + batch.size()) + ")");
      job_->status = rc;
      StopAll("aborted");
    }
    return false;
  }

  // Picks the next token of each (sequence, batch index) in `outputs` from the last decode, then
  // streams it or stops the sequence. The greedy sequences' argmaxes are taken together, so that
  // a step of many sequences spreads them over the threadpool (RowsArgmax). False, with the job
  // failed and every sequence stopped, if that computation fails.
  bool AcceptOutputs(const std::vector<std::pair<int32_t, int32_t>>& outputs) {
    greedy_rows_.clear();
    for (auto [s, index] : outputs) {
      GenerationSequence& seq = job_->sequences[s];
      if (seq.cancel->load() || JobCancelled()) {
        seq.stop_reason = "aborted";
      } else if (seq.argmax_only) {
        greedy_rows_.push_back(llama_get_logits_ith(ctx_, index));
      }
    }
    greedy_tokens_.resize(greedy_rows_.size());
    const ggml_status status = argmax_.Run(greedy_rows_.data(), static_cast<int32_t>(greedy_rows_.size()), greedy_tokens_.data());
    if (status != GGML_STATUS_SUCCESS) {
      job_->error_code = code::kDecode;
      job_->error_message = "picking the next tokens of " + std::to_string(greedy_rows_.size()) +
                            " sequences on the ggml threadpool failed after " + std::to_string(GeneratedSoFar()) +
                            " generated tokens";
      job_->status = status;
      StopAll("aborted");
      return false;
    }
    size_t next_greedy = 0;
    for (auto [s, index] : outputs) {
      GenerationSequence& seq = job_->sequences[s];
      if (seq.stop_reason != nullptr) continue;
      Accept(s, seq.argmax_only ? greedy_tokens_[next_greedy++] : llama_sampler_sample(seq.sampler, ctx_, index));
    }
    return true;
  }

  // Streams sequence `s`'s sampled token, or stops the sequence.
  void Accept(int32_t s, llama_token token) {
    GenerationSequence& seq = job_->sequences[s];
    if (llama_vocab_is_eog(vocab_, token)) {
      seq.stop_reason = "eog";
      return;
    }
    Emit(s, token, MsSinceStart(), seq.generated == 0);
    seq.generated++;
    if (seq.generated >= seq.max_tokens) {
      seq.stop_reason = "maxTokens";
    } else if (n_past_[s] >= n_ctx_seq_) {
      seq.stop_reason = "contextFull";
    } else {
      next_[s] = token;
    }
  }

  void StopAll(const char* reason) {
    for (GenerationSequence& seq : job_->sequences) {
      if (seq.stop_reason == nullptr) seq.stop_reason = reason;
    }
  }

  int32_t GeneratedSoFar() const {
    int32_t total = 0;
    for (const GenerationSequence& seq : job_->sequences) total += seq.generated;
    return total;
  }

  // Queues a token and wakes the JS thread (see GenerationJob::every_token) unless a drain is
  // already on its way.
  void Emit(int32_t s, llama_token token, double at_ms, bool first_of_sequence) {
    std::string piece = TokenPiece(vocab_, token, false);
    {
      std::lock_guard<std::mutex> lock(job_->pending_mutex);
      job_->pending.push_back(TokenEvent{s, token, std::move(piece), at_ms});
    }
    if (job_->every_token || first_of_sequence) WakeJs(job_);
  }

  llama_context* ctx_;
  GenerationJob* job_;
  const llama_vocab* vocab_;
  const int32_t n_vocab_;
  const llama_pos n_ctx_seq_;
  const int32_t n_batch_;
  const Clock::time_point start_ = Clock::now();
  RowsArgmax argmax_;
  std::vector<const float*> greedy_rows_;  // AcceptOutputs' scratch, kept to avoid an allocation per step
  std::vector<llama_token> greedy_tokens_;
  std::vector<llama_token> next_;  // each live sequence's last sampled token, decoded in the next step
  std::vector<llama_pos> n_past_;  // tokens of each sequence in the KV cache
};

}  // namespace

void RunGeneration(llama_context* ctx, ggml_backend_t host_backend, GenerationJob* job) {
  Runner(ctx, host_backend, job).Run();
  WakeJs(job);  // the tokens a job without every_token kept back
}

void SettleGeneration(Napi::Env env, GenerationJob* job) {
  std::unique_ptr<GenerationJob> owned(job);
  if (env == nullptr) return;  // env teardown: nobody is waiting any more
  try {
    if (job->error_code != nullptr) {
      job->deferred.Reject(MakeError(env, job->error_code, job->error_message, job->status).Value());
      return;
    }
    Napi::Object result = Napi::Object::New(env);
    Napi::Array stop_reasons = Napi::Array::New(env, job->sequences.size());
    for (uint32_t i = 0; i < job->sequences.size(); i++) {
      const char* reason = job->sequences[i].stop_reason;
      stop_reasons.Set(i, reason == nullptr ? "aborted" : reason);
    }
    result.Set("promptMs", job->prompt_ms);
    result.Set("stopReasons", stop_reasons);
    job->deferred.Resolve(result);
  } catch (const Napi::Error& error) {
    // Building the result failed: reject with why, unless the env can no longer run JS at all (a
    // terminated worker), where nobody waits, and a throw out of a finalizer aborts the process.
    try {
      job->deferred.Reject(error.Value());
    } catch (const Napi::Error&) {
    }
  }
}

}  // namespace cuda_llama
