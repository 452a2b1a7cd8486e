// Engine: continuous batching on one llama_context. Requests are submitted from the JS thread and
// join or leave the running batch between steps; the loop runs on the context's own thread
// (native/context_thread.h). One step:
//   1. drop cancelled requests (running or waiting), freeing their sequences;
//   2. admit waiting requests, first come first served, to free sequences: each gets the idle
//      sequence whose cached tokens share the longest prefix with its prompt, and only the rest of
//      the prompt is evaluated (llama_memory_seq_rm drops the divergent tail);
//   3. one token for every generating sequence, the rest of the batch filled with prompt chunks of
//      admitted requests (bounded to one ubatch while anyone generates, so a long new prompt does
//      not stall everyone else's tokens for its whole length);
//   4. one llama_decode; each finished row sampled with its request's own chain (greedy rows
//      together on the threadpool, native/argmax.h), detokenized, checked against its limits;
//   5. at most one wake-up of JavaScript, carrying every request's new tokens (none when nobody
//      listens for them).
// On KV exhaustion (llama_decode returns 1) the youngest running request is preempted: its cells
// are freed and it is requeued at the front with everything it had decoded, to be evaluated again
// when a sequence is free; a request alone in the batch ends with contextFull instead.
// Parking (native/parked_sessions.h): before a sequence that an idle live session keeps goes to
// another request, its KV state is copied to host memory, within a byte budget; that session's next
// request restores it into the sequence it gets and goes on with the usual prefix reuse. Models
// whose cached prefixes cannot be reused (recurrent, hybrid, sliding-window) park nothing.
#pragma once

#include <napi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "generation.h"
#include "ggml-backend.h"
#include "llama.h"
#include "parked_sessions.h"
#include "sampler.h"

namespace cuda_llama {

class OwnedBatch;
class RowsArgmax;

// What Engine::Stats() reads: each figure as the engine published it after its last step (they are
// not one snapshot).
struct EngineStats {
  uint64_t used_cells = 0;   // sum over sequences of the tokens their KV cache holds, busy or idle
  uint64_t total_cells = 0;  // llama_n_ctx
  uint64_t parked_sessions = 0;
  uint64_t parked_bytes = 0;
  uint64_t steps = 0;    // steps that ran a llama_decode
  double decode_ms = 0;  // in llama_decode and the llama_synchronize after it
  double host_ms = 0;    // the rest of those steps: admission, parking, batch, sampling, events
};

class Engine {
 public:
  // JS thread. The engine owns a thread-safe function that delivers its events; it frees itself in
  // that function's finalizer, after Release(), once every queued event has been delivered.
  // `park_budget`: bytes of host memory for parked session states (0: none are parked).
  static Engine* Create(Napi::Env env, llama_context* ctx, ggml_backend_t host_backend, size_t park_budget);

  // JS thread: queues a request (first come, first served) and wakes the loop.
  void Submit(Napi::Env env, std::unique_ptr<GenerationRequest> request);
  // JS thread: session `id` ended; its sequence is no longer kept for it and its parked state, if
  // any, is dropped (from the next step).
  void EndSession(uint32_t id);
  // JS thread: at the next step, copy the idle sequence of session `parent` into a free sequence
  // kept for `child` (llama_memory_seq_cp), so both continue from the shared tokens; a parked
  // parent's state is restored into it instead (and stays parked for the parent). Skipped when the
  // parent is busy, neither resident nor parked, or no sequence is free: the child then evaluates.
  void ForkSession(uint32_t parent, uint32_t child);
  // Any thread: makes Run() finish every request as aborted and return; a running CPU decode is
  // interrupted through the ggml abort callback.
  void Stop();
  // Test hook (lib/internal/fault.ts): the next llama_decode of this engine is not called and
  // `rc` stands for its result. JS thread; read once by the context thread.
  void InjectDecodeFault(int32_t rc);
  // JS thread, after Run() has returned: no more events will come; frees the engine once the
  // queued ones are delivered.
  void Release();

  // Any thread: cheap (atomic loads), for metrics.
  EngineStats Stats() const;

  // Context thread: the loop, until Stop().
  void Run();

  // ggml abort callback (llama_set_abort_callback): on ggml's threads during a decode.
  static bool AbortCallback(void* self);

 private:
  Engine(llama_context* ctx, ggml_backend_t host_backend, size_t park_budget);
  ~Engine();

  struct Sequence {
    std::vector<llama_token> cached;       // what its KV cache holds, positions 0..n-1
    GenerationRequest* request = nullptr;  // running in it, or null when idle
    uint64_t last_used = 0;
    uint32_t session = 0;  // the live session whose tokens it holds, 0 for none
  };

  // Context thread.
  // True when it ran a llama_decode.
  bool Step();
  void Park(int32_t seq);
  // Stores the KV-cache and parking figures Stats() reads.
  void Publish();
  void Fork(uint32_t parent, uint32_t child);
  void Sample();
  // Masks the end-of-generation logits of `row` (min_tokens, ignore_eos), keeping what they were.
  void MaskEog(int32_t index);
  // Gives `row`'s masked logits back; false when it was not masked.
  bool UnmaskEog(int32_t index);
  // Chooses `request`'s token for batch row `index` with its own sampler (not argmax_only).
  void SampleWithSampler(GenerationRequest* request, int32_t index);
  // A request leaves the queue for the engine: n-completion groups are formed here.
  void Arrive(GenerationRequest* request);
  // Admits waiting requests while sequences are free, first come, first served.
  void AdmitWaiting();
  // The request leaves its n-completion group (it ended, was preempted, or runs on its own): as a
  // leader, its followers become requests of their own; as a follower, its leader stops waiting.
  void LeaveGroup(GenerationRequest* request);
  // At the step a leader's last prompt token was decoded: its followers get a copy of its
  // sequence and sample from its logits row `index`.
  void ShareLeaderPrompt(GenerationRequest* leader, int32_t index);
  bool AnyRunning() const;
  void DropCancelled();
  void Admit(GenerationRequest* request, int32_t seq);
  int32_t PickSequence(const GenerationRequest& request) const;
  // The cached tokens of `cached` that `request` can keep: its common prefix with the prompt, less
  // at least the prompt's last token (whose logits give the first sample), or 0 where the memory
  // cannot drop the rest of `cached`.
  size_t ReusablePrefix(const std::vector<llama_token>& cached, const GenerationRequest& request) const;
  void Finish(GenerationRequest* request, const char* reason);
  void Preempt(GenerationRequest* request);
  void RollBack();
  void FailBatch(const std::vector<GenerationRequest*>& in_batch, int32_t rc);
  void FailContext(int32_t rc);
  void FailRequest(GenerationRequest* request, bool started);
  void RefuseWaiting();
  void Accept(GenerationRequest* request, SampledToken& sampled);
  bool Shift(GenerationRequest* request);
  void Emit(EngineEvent event, bool wake);
  void WakeJs();
  double NowMs() const;

  // JS thread: the thread-safe function's callback.
  static void Drain(Napi::Env env, Napi::Function, Engine* engine);
  void DeliverEvents(Napi::Env env);

  llama_context* ctx_;
  ggml_backend_t host_backend_;
  const llama_vocab* vocab_;
  uint32_t n_ctx_;  // llama_n_ctx, read once: Stats() runs on any thread
  uint32_t n_ctx_seq_;
  int32_t n_batch_;
  int32_t n_ubatch_;
  // Null when any cached prefix can be reused. Otherwise only a sequence whose whole cache is a
  // prefix of the prompt is (nothing is dropped): recurrent or hybrid memory cannot drop a partial
  // tail, and a sliding-window cache has already evicted what a shorter prefix would attend to.
  const char* no_reuse_reason_ = nullptr;
  bool can_shift_ = false;  // llama_memory_can_shift: positions can move (K is re-roped)
  std::chrono::steady_clock::time_point epoch_;

  Napi::ThreadSafeFunction tsfn_;
  size_t js_active_ = 0;   // JS thread: requests submitted and not yet settled (the TSFN is ref'd)
  bool released_ = false;  // JS thread

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::unique_ptr<GenerationRequest>> incoming_;  // guarded by mutex_
  std::vector<uint32_t> ended_sessions_;                      // guarded by mutex_
  std::vector<std::pair<uint32_t, uint32_t>> forks_;          // guarded by mutex_: (parent, child)
  std::atomic<bool> quit_{false};
  std::atomic<int32_t> injected_rc_{0};  // InjectDecodeFault's rc, 0 for none
  // Context thread only: set by a fatal llama_decode result (rc < -1, llama.h's "error while
  // decoding": the context's state is unknown). From then on nothing is decoded: every request,
  // running, waiting or arriving later, ends with code::kContextFailed.
  bool failed_ = false;
  int32_t failed_rc_ = 0;

  std::mutex events_mutex_;
  std::vector<EngineEvent> events_;  // guarded by events_mutex_
  bool drain_scheduled_ = false;     // guarded by events_mutex_
  bool wake_wanted_ = false;         // guarded by events_mutex_: an event someone waits for

  // Context thread only.
  std::deque<GenerationRequest*> waiting_;  // owned until finished
  std::vector<Sequence> sequences_;
  uint64_t admissions_ = 0;
  uint64_t uses_ = 0;
  // After a preemption, nobody is admitted until a request finishes: the preempted one would
  // otherwise take its cells back at once and starve the others.
  bool hold_admissions_ = false;
  ParkedSessions parked_;
  std::unique_ptr<RowsArgmax> argmax_;
  std::unique_ptr<OwnedBatch> batch_;
  // One step's scratch, kept to avoid allocations per step: rows to sample (request, batch
  // index), prompt chunks added (request, tokens), the greedy rows and their tokens.
  std::vector<std::pair<GenerationRequest*, int32_t>> outputs_;
  std::vector<std::pair<GenerationRequest*, int32_t>> chunks_;
  std::vector<int32_t> chunk_sizes_;  // prompt tokens this step, by sequence
  std::vector<const float*> greedy_rows_;
  std::vector<llama_token> greedy_tokens_;
  std::vector<char> cancelled_;  // each output row's cancel flag, as read once this step
  // n-completion groups whose members are still arriving: group id -> leader (null once the leader
  // ended; later members then run on their own) and how many members are still to come.
  struct FormingGroup {
    GenerationRequest* leader;
    int32_t to_arrive;
  };
  std::unordered_map<uint32_t, FormingGroup> forming_;
  std::vector<llama_token> eog_tokens_;  // llama_vocab_is_eog over the vocabulary, read once
  // This step's masked rows (batch indices; -1 once given back) and, eog_tokens_.size() per row in
  // the same order, their end-of-generation logits as they were.
  std::vector<int32_t> masked_rows_;
  std::vector<float> masked_logits_;
  SampledToken sampled_;  // one row's outcome, kept to reuse its vectors' capacity
  // Requests of the decode in flight, read by AbortCallback: a decode is interrupted only when
  // every request in it is cancelled, so one cancellation never costs the others their step.
  std::vector<GenerationRequest*> in_batch_;
  uint64_t step_decode_ns_ = 0;  // the last Step()'s llama_decode time, for Run's accounting

  // Written by the context thread after each step (Publish), read by Stats() on any thread.
  std::atomic<uint64_t> used_cells_{0};
  std::atomic<uint64_t> parked_sessions_{0};
  std::atomic<uint64_t> parked_bytes_{0};
  std::atomic<uint64_t> steps_{0};
  std::atomic<uint64_t> decode_ns_{0};
  std::atomic<uint64_t> host_ns_{0};
};

}  // namespace cuda_llama
