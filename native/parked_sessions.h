// ParkedSessions: the KV state of idle sessions whose sequence the engine gave to another request,
// copied to host memory (llama_state_seq_get_data) with the tokens it holds, so that the session's
// next request restores it (llama_state_seq_set_data) instead of evaluating its conversation again.
// Within a byte budget, least recently used evicted first. Owned by the Engine; context thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "llama.h"

namespace cuda_llama {

class ParkedSessions {
 public:
  struct State {
    std::vector<uint8_t> data;        // llama_state_seq_get_data of the sequence
    std::vector<llama_token> tokens;  // what it holds, positions 0..n-1
    uint64_t last_used = 0;           // the sequence's use count when parked: the LRU order
  };

  // 0 parks nothing.
  explicit ParkedSessions(size_t budget) : budget_(budget) {}

  // Copies sequence `seq` of `ctx` for `session`, evicting the least recently used states until it
  // fits. Returns false, parking nothing, when the state alone exceeds the budget or the copy fails.
  bool Park(llama_context* ctx, llama_seq_id seq, uint32_t session, const std::vector<llama_token>& tokens,
            uint64_t last_used);
  // The session's state, removed from the store; nullopt when none is parked.
  std::optional<State> Take(uint32_t session);
  // The session's state, left in the store (a fork restores its parent's); null when none.
  const State* Find(uint32_t session) const;
  void Drop(uint32_t session);

  // Clears sequence `seq` and loads `state` into it. False when llama.cpp refuses the data (the
  // sequence is then left cleared).
  static bool Restore(llama_context* ctx, llama_seq_id seq, const State& state);

  size_t bytes() const { return bytes_; }
  size_t count() const { return states_.size(); }

 private:
  void EvictOldest();

  size_t budget_;
  size_t bytes_ = 0;
  std::unordered_map<uint32_t, State> states_;
};

}  // namespace cuda_llama
