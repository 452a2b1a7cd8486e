#include "engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "argmax.h"
#include "common.h"

namespace cuda_llama {

// llama_batch_init / llama_batch_free, scoped; one per engine, n_batch slots.
class OwnedBatch {
 public:
  explicit OwnedBatch(int32_t capacity) : batch_(llama_batch_init(capacity, 0, 1)) {}
  ~OwnedBatch() { llama_batch_free(batch_); }
  OwnedBatch(const OwnedBatch&) = delete;
  OwnedBatch& operator=(const OwnedBatch&) = delete;

  // Returns the token's index in the batch (what llama_get_logits_ith takes). The caller keeps
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

namespace {

size_t CommonPrefix(const std::vector<llama_token>& a, const std::vector<llama_token>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) i++;
  return i;
}

}  // namespace

Engine* Engine::Create(Napi::Env env, llama_context* ctx, ggml_backend_t host_backend, size_t park_budget) {
  auto* engine = new Engine(ctx, host_backend, park_budget);
  // The JS function is unused: Drain dispatches each event to its own request's callback.
  engine->tsfn_ =
      Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                    "cuda-llama-engine", 0, 1, engine, [](Napi::Env, Engine* self) { delete self; });
  // An idle context must not keep the process alive; Submit refs it while requests are out.
  engine->tsfn_.Unref(env);
  return engine;
}

Engine::Engine(llama_context* ctx, ggml_backend_t host_backend, size_t park_budget)
    : ctx_(ctx),
      host_backend_(host_backend),
      vocab_(llama_model_get_vocab(llama_get_model(ctx))),
      n_ctx_(llama_n_ctx(ctx)),
      n_ctx_seq_(llama_n_ctx_seq(ctx)),
      n_batch_(static_cast<int32_t>(llama_n_batch(ctx))),
      n_ubatch_(static_cast<int32_t>(llama_n_ubatch(ctx))),
      epoch_(std::chrono::steady_clock::now()),
      sequences_(llama_n_seq_max(ctx)),
      parked_(park_budget) {
  can_shift_ = llama_memory_can_shift(llama_get_memory(ctx));
  for (llama_token t = 0; t < llama_vocab_n_tokens(vocab_); t++) {
    if (llama_vocab_is_eog(vocab_, t)) eog_tokens_.push_back(t);
  }
  const llama_model* model = llama_get_model(ctx);
  if (llama_model_is_recurrent(model) || llama_model_is_hybrid(model)) {
    no_reuse_reason_ = "recurrentMemory";
  } else if (llama_model_n_swa(model) > 0) {
    no_reuse_reason_ = "slidingWindow";
  }
}

Engine::~Engine() {
  // Requests whose end was never delivered (env teardown); each done event owns its request.
  for (const EngineEvent& event : events_) {
    if (event.done) SettleRequest(nullptr, event.request);
  }
}

void Engine::Submit(Napi::Env env, std::unique_ptr<GenerationRequest> request) {
  if (js_active_++ == 0) tsfn_.Ref(env);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    incoming_.push_back(std::move(request));
  }
  wake_.notify_one();
}

void Engine::EndSession(uint32_t id) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ended_sessions_.push_back(id);
  }
  wake_.notify_one();  // its parked state's memory goes now, not at the next request
}

void Engine::ForkSession(uint32_t parent, uint32_t child) {
  std::lock_guard<std::mutex> lock(mutex_);
  forks_.emplace_back(parent, child);
}

void Engine::Fork(uint32_t parent, uint32_t child) {
  int32_t src = -1;
  int32_t dst = -1;
  for (int32_t i = 0; i < static_cast<int32_t>(sequences_.size()); i++) {
    const Sequence& seq = sequences_[i];
    if (seq.session == parent && parent != 0) src = i;
    if (seq.request == nullptr && seq.session == 0 && (dst < 0 || seq.last_used < sequences_[dst].last_used)) dst = i;
  }
  if (dst < 0 || parent == 0) return;
  if (src < 0) {
    const ParkedSessions::State* parked = parked_.Find(parent);
    if (parked == nullptr) return;
    sequences_[dst].cached.clear();
    if (!ParkedSessions::Restore(ctx_, dst, *parked)) return;  // Restore left it cleared
    sequences_[dst].cached = parked->tokens;
    sequences_[dst].session = child;
    sequences_[dst].last_used = ++uses_;
    return;
  }
  if (sequences_[src].request != nullptr) return;
  llama_memory_t memory = llama_get_memory(ctx_);
  llama_memory_seq_rm(memory, dst, -1, -1);
  // The whole sequence (-1, -1): across streams llama.cpp copies only whole buffers.
  llama_memory_seq_cp(memory, src, dst, -1, -1);
  sequences_[dst].cached = sequences_[src].cached;
  sequences_[dst].session = child;
  sequences_[dst].last_used = ++uses_;
}

void Engine::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_.store(true);
  }
  wake_.notify_one();
}

EngineStats Engine::Stats() const {
  EngineStats stats;
  stats.used_cells = used_cells_.load(std::memory_order_relaxed);
  stats.total_cells = n_ctx_;
  stats.parked_sessions = parked_sessions_.load(std::memory_order_relaxed);
  stats.parked_bytes = parked_bytes_.load(std::memory_order_relaxed);
  stats.steps = steps_.load(std::memory_order_relaxed);
  stats.decode_ms = static_cast<double>(decode_ns_.load(std::memory_order_relaxed)) / 1e6;
  stats.host_ms = static_cast<double>(host_ns_.load(std::memory_order_relaxed)) / 1e6;
  return stats;
}

void Engine::Publish() {
  uint64_t used = 0;
  for (const Sequence& seq : sequences_) used += seq.cached.size();
  used_cells_.store(used, std::memory_order_relaxed);
  parked_sessions_.store(parked_.count(), std::memory_order_relaxed);
  parked_bytes_.store(parked_.bytes(), std::memory_order_relaxed);
}

void Engine::Release() {
  released_ = true;
  tsfn_.Release();
}

bool Engine::AbortCallback(void* self) {
  auto* engine = static_cast<Engine*>(self);
  if (engine->quit_.load()) return true;
  if (engine->in_batch_.empty()) return false;
  for (const GenerationRequest* request : engine->in_batch_) {
    if (!request->cancel->load()) return false;
  }
  return true;
}

double Engine::NowMs() const {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - epoch_).count();
}

bool Engine::AnyRunning() const {
  for (const Sequence& seq : sequences_) {
    if (seq.request != nullptr) return true;
  }
  return false;
}

void Engine::Run() {
  argmax_ = std::make_unique<RowsArgmax>(host_backend_, llama_vocab_n_tokens(vocab_));
  batch_ = std::make_unique<OwnedBatch>(n_batch_);
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] {
        return quit_.load() || !incoming_.empty() || !ended_sessions_.empty() || !waiting_.empty() || AnyRunning();
      });
      if (quit_.load()) break;
      for (std::unique_ptr<GenerationRequest>& request : incoming_) Arrive(request.release());
      incoming_.clear();
      for (uint32_t id : ended_sessions_) {
        for (Sequence& seq : sequences_) {
          if (seq.session == id) seq.session = 0;
        }
        parked_.Drop(id);
      }
      ended_sessions_.clear();
      // Before this step's admissions, so that the parent's next request finds its sequence as
      // the fork saw it.
      for (auto [parent, child] : forks_) Fork(parent, child);
      forks_.clear();
    }
    const auto started = std::chrono::steady_clock::now();
    if (Step()) {
      const auto ns = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started).count());
      steps_.fetch_add(1, std::memory_order_relaxed);
      decode_ns_.fetch_add(step_decode_ns_, std::memory_order_relaxed);
      host_ns_.fetch_add(ns > step_decode_ns_ ? ns - step_decode_ns_ : 0, std::memory_order_relaxed);
    }
    // Before the wake-up, so that a caller whose request just ended reads this step's figures.
    Publish();
    WakeJs();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (std::unique_ptr<GenerationRequest>& request : incoming_) Arrive(request.release());
    incoming_.clear();
  }
  for (Sequence& seq : sequences_) {
    if (seq.request != nullptr) Finish(seq.request, "aborted");
  }
  while (!waiting_.empty()) {
    GenerationRequest* request = waiting_.front();
    waiting_.pop_front();
    Finish(request, "aborted");
  }
  WakeJs();
  batch_.reset();
  argmax_.reset();
}

void Engine::DropCancelled() {
  for (Sequence& seq : sequences_) {
    if (seq.request != nullptr && seq.request->cancel->load()) Finish(seq.request, "aborted");
  }
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    GenerationRequest* request = *it;
    if (request->cancel->load()) {
      it = waiting_.erase(it);
      Finish(request, "aborted");
    } else {
      ++it;
    }
  }
}

size_t Engine::ReusablePrefix(const std::vector<llama_token>& cached, const GenerationRequest& request) const {
  if (!request.reuse_prefix) return 0;
  const size_t reuse = std::min(CommonPrefix(cached, request.input), request.input.size() - 1);
  // A recurrent state or a sliding window is correct for exactly the tokens it has seen, so it can
  // only be continued: everything it holds must be kept.
  if (no_reuse_reason_ != nullptr && reuse < cached.size()) return 0;
  return reuse;
}

int32_t Engine::PickSequence(const GenerationRequest& request) const {
  if (hold_admissions_ && AnyRunning()) return -1;
  if (request.session != 0) {
    for (int32_t i = 0; i < static_cast<int32_t>(sequences_.size()); i++) {
      if (sequences_[i].session == request.session) {
        if (sequences_[i].request == nullptr) return i;
        break;  // its sequence is busy (a concurrent call of the same session): take another
      }
    }
  }
  int32_t best = -1;
  size_t best_prefix = 0;
  bool best_kept = true;
  for (int32_t i = 0; i < static_cast<int32_t>(sequences_.size()); i++) {
    const Sequence& seq = sequences_[i];
    if (seq.request != nullptr) continue;
    const size_t prefix = ReusablePrefix(seq.cached, request);
    // A sequence kept for another live session is taken last, and only for nothing in common.
    const bool kept = seq.session != 0 && seq.session != request.session;
    const size_t useful = kept ? 0 : prefix;
    // Longest prefix first; then one nobody keeps; then the least recently used, whose cache is
    // the least likely to be wanted again.
    const bool better = best < 0 || useful > best_prefix ||
                        (useful == best_prefix &&
                         ((best_kept && !kept) || (best_kept == kept && seq.last_used < sequences_[best].last_used)));
    if (better) {
      best = i;
      best_prefix = useful;
      best_kept = kept;
    }
  }
  return best;
}

void Engine::Park(int32_t seq_id) {
  Sequence& seq = sequences_[seq_id];
  if (no_reuse_reason_ == nullptr) parked_.Park(ctx_, seq_id, seq.session, seq.cached, seq.last_used);
  seq.session = 0;
}

void Engine::Admit(GenerationRequest* request, int32_t seq_id) {
  Sequence& seq = sequences_[seq_id];
  // Taken out first, so that parking the sequence's keeper cannot evict it. Once the session runs
  // in a sequence its parked copy is stale, restored or not.
  std::optional<ParkedSessions::State> parked;
  if (request->session != 0) parked = parked_.Take(request->session);
  if (seq.session != 0 && seq.session != request->session) Park(seq_id);
  const char* miss = nullptr;
  bool restored = false;
  if (parked && request->reuse_prefix && no_reuse_reason_ == nullptr &&
      CommonPrefix(parked->tokens, request->input) > CommonPrefix(seq.cached, request->input)) {
    seq.cached.clear();
    if (ParkedSessions::Restore(ctx_, seq_id, *parked)) {
      seq.cached = std::move(parked->tokens);
      restored = true;
    } else {
      miss = "restoreFailed";  // the sequence is cleared: everything is evaluated
    }
  }
  size_t reuse = ReusablePrefix(seq.cached, *request);
  if (reuse == 0 && no_reuse_reason_ != nullptr && request->reuse_prefix &&
      CommonPrefix(seq.cached, request->input) > 0) {
    miss = no_reuse_reason_;  // a prefix in common, but not all of what the sequence holds
  }
  llama_memory_t memory = llama_get_memory(ctx_);
  if (reuse < seq.cached.size()) {
    if (reuse == 0 || !llama_memory_seq_rm(memory, seq_id, static_cast<llama_pos>(reuse), -1)) {
      if (reuse > 0) miss = "trimFailed";
      llama_memory_seq_rm(memory, seq_id, -1, -1);  // a whole sequence can always go
      reuse = 0;
    }
    seq.cached.resize(reuse);
  }
  seq.request = request;
  seq.session = request->session;
  request->seq = seq_id;
  request->input_done = reuse;
  request->admitted_order = ++admissions_;
  if (!request->admitted_once) {
    request->admitted_once = true;
    request->cached_tokens = static_cast<int32_t>(reuse);
    request->cache_miss = miss;
    request->cache_source = reuse == 0 ? "evaluated" : restored ? "restored" : "resident";
    request->admitted_at_ms = NowMs();
  }
}

void Engine::Arrive(GenerationRequest* request) {
  if (request->group != 0 && request->group_size > 1) {
    auto it = forming_.find(request->group);
    if (it == forming_.end()) {
      request->awaiting = request->group_size - 1;
      forming_.emplace(request->group, FormingGroup{request, request->group_size - 1});
    } else {
      FormingGroup& group = it->second;
      if (group.leader != nullptr) {
        request->leader = group.leader;
        group.leader->followers.push_back(request);
        group.leader->awaiting--;
      }
      if (--group.to_arrive == 0) forming_.erase(it);
    }
  }
  waiting_.push_back(request);
}

void Engine::AdmitWaiting() {
  while (!waiting_.empty()) {
    GenerationRequest* request = waiting_.front();
    // Never ahead of its leader in the queue; should it be, it runs on its own.
    if (request->leader != nullptr) LeaveGroup(request);
    if (request->awaiting > 0) break;  // its group's other members are still on their way
    if (!request->followers.empty()) {
      // A group is admitted whole: the leader and a sequence for each follower.
      const size_t idle = static_cast<size_t>(
          std::count_if(sequences_.begin(), sequences_.end(), [](const Sequence& s) { return s.request == nullptr; }));
      if (idle < request->followers.size() + 1) break;
    }
    const int32_t seq = PickSequence(*request);
    if (seq < 0) break;
    waiting_.pop_front();
    Admit(request, seq);
    for (GenerationRequest* follower : request->followers) {
      waiting_.erase(std::find(waiting_.begin(), waiting_.end(), follower));
      Admit(follower, PickSequence(*follower));
    }
  }
}

void Engine::LeaveGroup(GenerationRequest* request) {
  // As a leader: its followers become requests of their own.
  for (GenerationRequest* follower : request->followers) follower->leader = nullptr;
  request->followers.clear();
  if (request->awaiting > 0) {
    auto it = forming_.find(request->group);
    if (it != forming_.end() && it->second.leader == request) it->second.leader = nullptr;
    request->awaiting = 0;
  }
  // As a follower: its leader no longer waits for it.
  if (request->leader != nullptr) {
    auto& followers = request->leader->followers;
    followers.erase(std::remove(followers.begin(), followers.end(), request), followers.end());
    request->leader = nullptr;
  }
}

void Engine::ShareLeaderPrompt(GenerationRequest* leader, int32_t index) {
  llama_memory_t memory = llama_get_memory(ctx_);
  const double now = NowMs();
  for (GenerationRequest* follower : leader->followers) {
    // The whole sequence (-1, -1): across streams llama.cpp copies only whole buffers.
    llama_memory_seq_rm(memory, follower->seq, -1, -1);
    llama_memory_seq_cp(memory, leader->seq, follower->seq, -1, -1);
    sequences_[follower->seq].cached = sequences_[leader->seq].cached;
    follower->input = leader->input;
    follower->input_done = follower->input.size();
    follower->leader = nullptr;
    follower->shared_prompt = true;
    follower->cached_tokens = leader->cached_tokens;
    follower->cache_miss = leader->cache_miss;
    follower->cache_source = "shared";
    follower->admitted_at_ms = leader->admitted_at_ms;
    follower->prompt_done_at_ms = now;
    outputs_.emplace_back(follower, index);
  }
  leader->followers.clear();
}

bool Engine::Step() {
  DropCancelled();
  if (failed_) {
    RefuseWaiting();
    return false;
  }
  AdmitWaiting();

  std::vector<GenerationRequest*> running;
  for (Sequence& seq : sequences_) {
    if (seq.request != nullptr) running.push_back(seq.request);
  }
  if (running.empty()) return false;
  std::sort(running.begin(), running.end(), [](const GenerationRequest* a, const GenerationRequest* b) {
    return a->admitted_order < b->admitted_order;
  });

  OwnedBatch& batch = *batch_;
  batch.Clear();
  in_batch_.clear();
  outputs_.clear();
  chunks_.clear();
  int32_t generating = 0;
  for (GenerationRequest* request : running) generating += request->generating ? 1 : 0;
  // Prompt chunks first come, first served, within what the generating rows leave of the batch.
  int32_t budget = n_batch_ - generating;
  if (generating > 0) budget = std::min(budget, std::max(1, n_ubatch_ - generating));
  chunk_sizes_.assign(sequences_.size(), 0);
  for (GenerationRequest* request : running) {
    // A follower waits for its leader's prompt: nothing of its own to decode yet.
    if (request->generating || request->leader != nullptr || budget <= 0) continue;
    const size_t left = request->input.size() - request->input_done;
    chunk_sizes_[request->seq] = static_cast<int32_t>(std::min<size_t>(left, static_cast<size_t>(budget)));
    budget -= chunk_sizes_[request->seq];
  }
  // A step of generating rows alone goes in sequence order: with a KV window per sequence (a
  // stream each) llama.cpp puts only consecutive sequence ids in one micro-batch, so rows in any
  // other order would split the step into several graph computations, each reading every weight.
  // A step with prompt chunks keeps the order of admission.
  const bool decode_only = std::all_of(chunk_sizes_.begin(), chunk_sizes_.end(), [](int32_t c) { return c == 0; });
  if (decode_only) {
    std::sort(running.begin(), running.end(),
              [](const GenerationRequest* a, const GenerationRequest* b) { return a->seq < b->seq; });
  }
  for (GenerationRequest* request : running) {
    if (!request->generating) continue;
    const Sequence& seq = sequences_[request->seq];
    outputs_.emplace_back(request,
                          batch.Add(request->next, static_cast<llama_pos>(seq.cached.size()), request->seq, true));
    in_batch_.push_back(request);
  }
  bool prompt_ends = false;
  for (GenerationRequest* request : running) {
    const int32_t seq_id = request->seq;
    const int32_t chunk = request->generating ? 0 : chunk_sizes_[seq_id];
    if (chunk == 0) continue;
    const bool ends = static_cast<size_t>(chunk) == request->input.size() - request->input_done;
    for (int32_t k = 0; k < chunk; k++) {
      const size_t at = request->input_done + k;
      const int32_t index = batch.Add(request->input[at], static_cast<llama_pos>(at), seq_id, ends && k == chunk - 1);
      if (ends && k == chunk - 1) outputs_.emplace_back(request, index);
    }
    chunks_.emplace_back(request, chunk);
    in_batch_.push_back(request);
    prompt_ends = prompt_ends || ends;
  }

  const auto decode_started = std::chrono::steady_clock::now();
  const int32_t injected = injected_rc_.exchange(0);
  const int32_t rc = injected != 0 ? injected : llama_decode(ctx_, batch.get());
  // llama_decode only queues the work on a GPU backend; sampling would wait for it anyway, and
  // waiting here keeps that wait out of the host time.
  if (rc == 0) llama_synchronize(ctx_);
  step_decode_ns_ = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - decode_started).count());
  if (rc < -1) {
    // Nothing of this context is touched again (no rollback): its state is unknown.
    in_batch_.clear();
    FailContext(rc);
    return true;
  }
  if (rc != 0) {
    RollBack();
    std::vector<GenerationRequest*> in_batch;
    in_batch.swap(in_batch_);
    if (rc == 2 && quit_.load()) return true;  // Run() finishes everyone
    if (rc == 2) {
      for (GenerationRequest* request : in_batch) Finish(request, "aborted");  // all of them were cancelled
    } else if (rc == 1 && running.size() > 1) {
      // No KV cells for this step: the youngest makes room.
      Preempt(
          *std::max_element(running.begin(), running.end(), [](const GenerationRequest* a, const GenerationRequest* b) {
            return a->admitted_order < b->admitted_order;
          }));
    } else if (rc == 1) {
      Finish(running.front(), "contextFull");
    } else {
      FailBatch(in_batch, rc);
    }
    return true;
  }
  in_batch_.clear();

  for (auto [request, index] : outputs_) {
    if (request->generating) sequences_[request->seq].cached.push_back(request->next);
  }
  for (auto [request, chunk] : chunks_) {
    Sequence& seq = sequences_[request->seq];
    seq.cached.insert(seq.cached.end(), request->input.begin() + request->input_done,
                      request->input.begin() + request->input_done + chunk);
    request->input_done += chunk;
  }
  if (prompt_ends) {
    const double now = NowMs();
    const size_t rows = outputs_.size();  // ShareLeaderPrompt appends the followers' rows
    for (size_t i = 0; i < rows; i++) {
      auto [request, index] = outputs_[i];
      if (request->generating) continue;
      if (request->prompt_done_at_ms < 0) request->prompt_done_at_ms = now;
      if (!request->followers.empty()) ShareLeaderPrompt(request, index);
    }
  }
  Sample();
  return true;
}

void Engine::Sample() {
  greedy_rows_.clear();
  masked_rows_.clear();
  masked_logits_.clear();
  // The JS thread may cancel a request at any moment: each row's flag is read once, so that the
  // rows picked together and the requests given their tokens are the same ones. Read twice, a
  // cancellation in between gave every later greedy request the token of the row before its own.
  cancelled_.clear();
  for (auto [request, index] : outputs_) {
    cancelled_.push_back(request->cancel->load() ? 1 : 0);
    if (cancelled_.back() != 0) continue;
    if (request->generated < request->min_tokens) MaskEog(index);
    if (request->argmax_only) greedy_rows_.push_back(llama_get_logits_ith(ctx_, index));
  }
  greedy_tokens_.resize(greedy_rows_.size());
  const ggml_status status =
      argmax_->Run(greedy_rows_.data(), static_cast<int32_t>(greedy_rows_.size()), greedy_tokens_.data());
  size_t next_greedy = 0;
  for (size_t i = 0; i < outputs_.size(); i++) {
    auto [request, index] = outputs_[i];
    if (cancelled_[i] != 0) {
      Finish(request, "aborted");
    } else if (request->argmax_only && status != GGML_STATUS_SUCCESS) {
      request->error_code = code::kDecode;
      request->error_message = "picking the next token of " + std::to_string(greedy_rows_.size()) +
                               " sequences on the ggml threadpool failed";
      request->status = status;
      Finish(request, "aborted");
    } else if (request->argmax_only) {
      sampled_.Reset();
      sampled_.token = greedy_tokens_[next_greedy++];
      Accept(request, sampled_);
    } else {
      SampleWithSampler(request, index);
    }
  }
}

void Engine::SampleWithSampler(GenerationRequest* request, int32_t index) {
  sampled_.Reset();
  request->sampler->Sample(ctx_, index, sampled_);
  if (sampled_.error_code != nullptr && UnmaskEog(index)) {
    // Nothing but an end is left (a grammar that is complete, with min_tokens or ignore_eos): the
    // masked ends are given back and the request ends the way its grammar does.
    sampled_.Reset();
    request->sampler->Sample(ctx_, index, sampled_);
  }
  if (sampled_.error_code != nullptr) {
    request->error_code = sampled_.error_code;
    request->error_message =
        sampled_.error_message + " (after " + std::to_string(request->generated) + " generated tokens)";
    Finish(request, "aborted");
    return;
  }
  Accept(request, sampled_);
}

void Engine::MaskEog(int32_t index) {
  if (eog_tokens_.empty()) return;
  // A leader's row its followers share is masked once.
  if (std::find(masked_rows_.begin(), masked_rows_.end(), index) != masked_rows_.end()) return;
  float* logits = llama_get_logits_ith(ctx_, index);
  masked_rows_.push_back(index);
  for (llama_token t : eog_tokens_) {
    masked_logits_.push_back(logits[t]);
    logits[t] = -INFINITY;
  }
}

bool Engine::UnmaskEog(int32_t index) {
  const auto row = std::find(masked_rows_.begin(), masked_rows_.end(), index);
  if (row == masked_rows_.end()) return false;
  const float* kept = masked_logits_.data() + (row - masked_rows_.begin()) * eog_tokens_.size();
  float* logits = llama_get_logits_ith(ctx_, index);
  for (size_t k = 0; k < eog_tokens_.size(); k++) logits[eog_tokens_[k]] = kept[k];
  *row = -1;  // given back; a second unmask of this row does nothing
  return true;
}

void Engine::Accept(GenerationRequest* request, SampledToken& sampled) {
  const llama_token token = sampled.token;
  if (llama_vocab_is_eog(vocab_, token)) {
    Finish(request, "eog");
    return;
  }
  if (!request->argmax_only && !request->sampler->Accept(token, sampled)) {
    request->error_code = sampled.error_code;
    request->error_message = sampled.error_message;
    Finish(request, "aborted");
    return;
  }
  const bool first = request->generated == 0;
  const bool special = !request->skip_special ||
                       std::binary_search(request->render_special.begin(), request->render_special.end(), token);
  EngineEvent event{request, false, token, TokenPiece(vocab_, token, special), NowMs()};
  if (request->sampler->logprobs() >= 0) {
    event.has_logprobs = true;
    event.logprob = sampled.logprob;
    event.top_tokens = sampled.top_tokens;
    event.top_logprobs = sampled.top_logprobs;
  }
  Emit(std::move(event), request->every_token || first);
  request->generated++;
  if (request->generated >= request->max_tokens) {
    Finish(request, "maxTokens");
  } else if (sequences_[request->seq].cached.size() >= n_ctx_seq_ && !Shift(request)) {
    Finish(request, "contextFull");  // no cell left in its window for the next token
  } else {
    request->next = token;
    request->generating = true;
  }
}

bool Engine::Shift(GenerationRequest* request) {
  if (request->shift_keep < 0 || !can_shift_) return false;
  Sequence& seq = sequences_[request->seq];
  const llama_pos n_past = static_cast<llama_pos>(seq.cached.size());
  const llama_pos keep = std::min<llama_pos>(request->shift_keep, n_past - 1);
  const llama_pos discard = (n_past - keep) / 2;  // as llama.cpp's own tools do
  if (discard <= 0) return false;
  llama_memory_t memory = llama_get_memory(ctx_);
  if (!llama_memory_seq_rm(memory, request->seq, keep, keep + discard)) return false;
  llama_memory_seq_add(memory, request->seq, keep + discard, n_past, -discard);
  seq.cached.erase(seq.cached.begin() + keep, seq.cached.begin() + keep + discard);
  request->dropped += discard;
  return true;
}

void Engine::RollBack() {
  // What a failed decode had stored of this step (earlier ubatches) goes, so that every sequence
  // holds exactly its `cached` tokens again.
  llama_memory_t memory = llama_get_memory(ctx_);
  for (GenerationRequest* request : in_batch_) {
    llama_memory_seq_rm(memory, request->seq, static_cast<llama_pos>(sequences_[request->seq].cached.size()), -1);
  }
}

void Engine::Preempt(GenerationRequest* request) {
  LeaveGroup(request);
  Sequence& seq = sequences_[request->seq];
  if (request->generating) {
    // Everything decoded so far plus the token still to decode; its logits give the next sample,
    // so the request goes on where it stopped, with nothing emitted twice.
    request->input = seq.cached;
    request->input.push_back(request->next);
    request->generating = false;
  }
  request->input_done = 0;
  llama_memory_seq_rm(llama_get_memory(ctx_), request->seq, -1, -1);
  seq.cached.clear();
  seq.request = nullptr;
  seq.last_used = ++uses_;
  request->seq = -1;
  request->preemptions++;
  waiting_.push_front(request);
  // Until someone finishes, the freed cells are for the requests still running.
  hold_admissions_ = true;
}

void Engine::FailBatch(const std::vector<GenerationRequest*>& in_batch, int32_t rc) {
  for (GenerationRequest* request : in_batch) {
    request->error_code = code::kDecode;
    request->error_message = "llama_decode failed (" + std::to_string(rc) + ") on a batch of " +
                             std::to_string(in_batch.size()) + " requests, after " +
                             std::to_string(request->generated) + " generated tokens of this one";
    request->status = rc;
    Sequence& seq = sequences_[request->seq];
    llama_memory_seq_rm(llama_get_memory(ctx_), request->seq, -1, -1);
    seq.cached.clear();
    Finish(request, "aborted");
  }
}

void Engine::FailContext(int32_t rc) {
  failed_ = true;
  failed_rc_ = rc;
  for (Sequence& seq : sequences_) {
    if (seq.request != nullptr) FailRequest(seq.request, true);
    seq.cached.clear();
    seq.session = 0;
  }
  RefuseWaiting();
}

void Engine::RefuseWaiting() {
  while (!waiting_.empty()) {
    GenerationRequest* request = waiting_.front();
    waiting_.pop_front();
    // A preempted request was admitted once: its tokens may have been streamed.
    FailRequest(request, request->admitted_once);
  }
}

void Engine::FailRequest(GenerationRequest* request, bool started) {
  request->error_code = code::kContextFailed;
  request->error_message =
      "the context failed: llama_decode returned " + std::to_string(failed_rc_) +
      (started ? ", after " + std::to_string(request->generated) + " generated tokens of this request"
               : "; this request had not started");
  request->status = failed_rc_;
  request->started = started;
  request->dropped = 0;  // Finish must not trim the failed context's memory
  Finish(request, "aborted");
}

void Engine::InjectDecodeFault(int32_t rc) {
  injected_rc_.store(rc);
  wake_.notify_one();
}

void Engine::Finish(GenerationRequest* request, const char* reason) {
  request->stop_reason = reason;
  LeaveGroup(request);
  if (request->seq >= 0) {
    Sequence& seq = sequences_[request->seq];
    if (request->dropped > 0) {
      // After a shift the cells past `keep` were computed beside tokens that are gone: no fresh
      // evaluation of the tokens they hold would give them, so no later request may reuse them.
      const size_t keep = std::min(seq.cached.size(), static_cast<size_t>(request->shift_keep));
      llama_memory_seq_rm(llama_get_memory(ctx_), request->seq, static_cast<llama_pos>(keep), -1);
      seq.cached.resize(keep);
    }
    seq.request = nullptr;
    seq.last_used = ++uses_;
    request->seq = -1;
  }
  hold_admissions_ = false;
  // From here the request belongs to the JS thread.
  Emit(EngineEvent{request, true, 0, std::string(), 0}, true);
}

void Engine::Emit(EngineEvent event, bool wake) {
  std::lock_guard<std::mutex> lock(events_mutex_);
  events_.push_back(std::move(event));
  wake_wanted_ = wake_wanted_ || wake;
}

void Engine::WakeJs() {
  {
    std::lock_guard<std::mutex> lock(events_mutex_);
    if (drain_scheduled_ || !wake_wanted_) return;
    drain_scheduled_ = true;
    wake_wanted_ = false;
  }
  tsfn_.BlockingCall(this, Drain);
}

void Engine::Drain(Napi::Env env, Napi::Function, Engine* engine) { engine->DeliverEvents(env); }

void Engine::DeliverEvents(Napi::Env env) {
  std::vector<EngineEvent> events;
  {
    std::lock_guard<std::mutex> lock(events_mutex_);
    events.swap(events_);
    drain_scheduled_ = false;
    wake_wanted_ = false;
  }
  // lib/ wraps every user callback, so a throw here is our bug: it is rethrown once every event,
  // every settlement above all, has been delivered.
  std::optional<Napi::Error> first_error;
  for (EngineEvent& event : events) {
    GenerationRequest* request = event.request;
    if (event.done) {
      SettleRequest(env, request);
      if (env != nullptr && --js_active_ == 0 && !released_) tsfn_.Unref(env);
      continue;
    }
    if (env == nullptr) continue;
    Napi::HandleScope scope(env);
    try {
      std::vector<napi_value> args{Napi::Number::New(env, event.token),
                                   Napi::Buffer<char>::Copy(env, event.piece.data(), event.piece.size()),
                                   Napi::Number::New(env, event.at_ms)};
      if (event.has_logprobs) {
        Napi::Int32Array top_tokens = Napi::Int32Array::New(env, event.top_tokens.size());
        Napi::Float32Array top_logprobs = Napi::Float32Array::New(env, event.top_logprobs.size());
        std::copy(event.top_tokens.begin(), event.top_tokens.end(), top_tokens.Data());
        std::copy(event.top_logprobs.begin(), event.top_logprobs.end(), top_logprobs.Data());
        args.insert(args.end(), {Napi::Number::New(env, event.logprob), top_tokens, top_logprobs});
      }
      request->on_token.Call(args);
    } catch (const Napi::Error& error) {
      if (!first_error) first_error = error;
    }
  }
  if (first_error) throw *first_error;
}

}  // namespace cuda_llama
