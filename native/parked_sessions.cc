#include "parked_sessions.h"

namespace cuda_llama {

bool ParkedSessions::Park(llama_context* ctx, llama_seq_id seq, uint32_t session,
                          const std::vector<llama_token>& tokens, uint64_t last_used) {
  Drop(session);
  if (budget_ == 0 || tokens.empty()) return false;
  const size_t size = llama_state_seq_get_size(ctx, seq);
  if (size == 0 || size > budget_) return false;
  while (bytes_ + size > budget_ && !states_.empty()) EvictOldest();
  State state;
  state.data.resize(size);
  const size_t written = llama_state_seq_get_data(ctx, state.data.data(), size, seq);
  if (written == 0) return false;
  state.data.resize(written);
  state.tokens = tokens;
  state.last_used = last_used;
  bytes_ += state.data.size();
  states_.emplace(session, std::move(state));
  return true;
}

std::optional<ParkedSessions::State> ParkedSessions::Take(uint32_t session) {
  auto it = states_.find(session);
  if (it == states_.end()) return std::nullopt;
  State state = std::move(it->second);
  bytes_ -= state.data.size();
  states_.erase(it);
  return state;
}

const ParkedSessions::State* ParkedSessions::Find(uint32_t session) const {
  auto it = states_.find(session);
  return it == states_.end() ? nullptr : &it->second;
}

void ParkedSessions::Drop(uint32_t session) { Take(session); }

bool ParkedSessions::Restore(llama_context* ctx, llama_seq_id seq, const State& state) {
  llama_memory_seq_rm(llama_get_memory(ctx), seq, -1, -1);
  if (llama_state_seq_set_data(ctx, state.data.data(), state.data.size(), seq) != 0) return true;
  // A partial load may have left cells behind.
  llama_memory_seq_rm(llama_get_memory(ctx), seq, -1, -1);
  return false;
}

void ParkedSessions::EvictOldest() {
  auto oldest = states_.begin();
  for (auto it = states_.begin(); it != states_.end(); ++it) {
    if (it->second.last_used < oldest->second.last_used) oldest = it;
  }
  bytes_ -= oldest->second.data.size();
  states_.erase(oldest);
}

}  // namespace cuda_llama
