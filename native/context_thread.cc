#include "context_thread.h"

namespace cuda_llama {

ContextThread::ContextThread(std::shared_ptr<LogSink> log_sink)
    : log_sink_(std::move(log_sink)), thread_([this] { Run(); }) {}

ContextThread::~ContextThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    quit_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

bool ContextThread::Post(std::function<void()> job, std::function<void()> done) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (busy_ || quit_) return false;
    busy_ = true;
    job_ = std::move(job);
    done_ = std::move(done);
  }
  wake_.notify_one();
  return true;
}

void ContextThread::Run() {
  LogRoute route(log_sink_.get());
  for (;;) {
    std::function<void()> job, done;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return quit_ || job_ != nullptr; });
      if (job_ == nullptr) return;  // quit with nothing left to run
      job = std::move(job_);
      done = std::move(done_);
      job_ = nullptr;
      done_ = nullptr;
    }
    job();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      busy_ = false;
    }
    if (done) done();
  }
}

}  // namespace cuda_llama
