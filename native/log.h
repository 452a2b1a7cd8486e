// llama.cpp/ggml logging. Log lines are data: they go to a JS function (lib/log.ts decides where:
// util.debuglog or the user's logger), never to stdout.
//
// llama_log_set is process-global and not thread-safe, so one callback is installed once per
// process. Each environment (the main thread and every worker_threads Worker loads its own Addon)
// has its own LogSink: its logger function, as a thread-safe function, and its minimum level. A
// line goes to the sink of the environment whose work logged it, found through the calling
// thread's LogRoute: an env's JS thread, the libuv pool thread running one of its PromiseWorkers
// and each of its contexts' threads are routed to it. Lines logged on a thread no env owns (ggml's
// threadpool workers, llama.cpp's process-wide init) go to every sink that has a logger: they
// describe process-wide state that each logger may want, and sending them to one chosen env would
// lose them whenever that env has no logger or has gone.
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

namespace cuda_llama {

// Installs the process-wide llama_log_set callback (once; llama_log_set is not thread-safe).
void InstallLogCallback();

// One complete line on its way to a logger, owned by the thread-safe function's queue.
struct LogLine {
  int level;
  std::string text;
};

// JS thread: calls the logger with one line and frees it; with a null env (the env is being torn
// down with lines still queued) it only frees it.
void CallLogger(Napi::Env env, Napi::Function fn, void* unused, LogLine* line);

// One environment's logger. Owned by that env's Addon and, while they run for it, by its pool
// workers and context threads (shared_ptr), and listed in the process-wide sink registry from
// Open() to Close(). Every member function is safe from any thread except where noted.
class LogSink {
 public:
  // JS thread: a sink with no logger, registered.
  static std::shared_ptr<LogSink> Open();
  ~LogSink();  // unregisters, should Close() not have run

  // JS thread of the owning env: replaces the logger (an empty `fn` removes it). Lines below
  // `min_level` (a ggml_log_level) are dropped before they reach JS.
  void Set(Napi::Env env, Napi::Function fn, int min_level);

  // JS thread of the owning env, at its teardown: releases the logger and unregisters the sink.
  // Lines routed here afterwards are dropped; no thread calls the released function again.
  void Close();

  // Hands one complete line to the logger, if there is one and `level` reaches its minimum.
  void Post(int level, const std::string& text);

 private:
  using Function = Napi::TypedThreadSafeFunction<void, LogLine, CallLogger>;

  LogSink() = default;
  void ReleaseLocked();  // caller holds mutex_

  std::atomic<int> min_level_;  // read without the lock on every line, to drop filtered ones cheaply
  std::mutex mutex_;            // a Post never overlaps the Release of the function it calls
  Function fn_;                 // guarded by mutex_
  bool has_fn_ = false;         // guarded by mutex_
  bool closed_ = false;         // guarded by mutex_: a Set after Close would create a function nobody releases
};

// Routes the lines llama.cpp logs on the calling thread to `sink` (null: to every sink, as a
// thread no env owns) from construction to destruction, then restores the previous route. The
// creator keeps `sink` alive for that long. Construct and destroy on the same thread.
class LogRoute {
 public:
  explicit LogRoute(LogSink* sink);
  ~LogRoute();
  LogRoute(const LogRoute&) = delete;
  LogRoute& operator=(const LogRoute&) = delete;

 private:
  LogSink* previous_;
};

// JS: setLogger(fn | null, minLevel). fn(level: number, text: string). Levels are ggml_log_level.
// Sets the calling env's logger only.
Napi::Value SetLogger(const Napi::CallbackInfo& info);

// The error and warning lines llama.cpp logged on the calling thread since the last
// ClearThreadErrors(). Used to put llama.cpp's own reason into an error message (as text for a
// human, never parsed for state). Per thread, independent of the routes and sinks.
void ClearThreadErrors();
std::string TakeThreadErrors();

}  // namespace cuda_llama
