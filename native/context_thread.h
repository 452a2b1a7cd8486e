// One dedicated thread per Context. Every decode of that context runs here, never on the libuv
// pool: a long generation must not starve fs/dns/crypto, and ggml's threadpool stays attached to
// one caller thread (changing caller threads is what makes per-token decode several times slower).
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "log.h"

namespace cuda_llama {

class ContextThread {
 public:
  // `log_sink`: the owning env's, where llama.cpp's lines logged on this thread go.
  explicit ContextThread(std::shared_ptr<LogSink> log_sink);
  // Waits for the running job (callers cancel it first), then joins.
  ~ContextThread();

  ContextThread(const ContextThread&) = delete;
  ContextThread& operator=(const ContextThread&) = delete;

  // Queues a job; false when one is already queued or running (one operation per context).
  // `done` runs on this thread after the context is marked idle again, so whatever it signals
  // (the JS promise) can never find the context still busy.
  bool Post(std::function<void()> job, std::function<void()> done);

 private:
  void Run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::function<void()> job_;   // guarded by mutex_
  std::function<void()> done_;  // guarded by mutex_
  bool busy_ = false;           // guarded by mutex_: a job is queued or running
  bool quit_ = false;           // guarded by mutex_
  std::shared_ptr<LogSink> log_sink_;
  std::thread thread_;  // last: starts after the fields above exist
};

}  // namespace cuda_llama
