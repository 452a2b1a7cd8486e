#include "log.h"

#include <algorithm>
#include <climits>
#include <vector>

#include "addon.h"
#include "ggml.h"
#include "llama.h"

namespace cuda_llama {
namespace {

// While a sink has no logger its minimum is above every level, so Post drops lines unlocked.
constexpr int kNoLogger = INT_MAX;

// The sinks of the live environments, for lines no env owns. Process-wide because llama_log_set
// is; allocated once and never destroyed, so a line logged from a static destructor at exit
// (ggml's backend registry) still finds a valid registry.
struct SinkRegistry {
  std::mutex mutex;  // guards sinks; taken before any sink's own mutex, never after
  std::vector<LogSink*> sinks;
};

SinkRegistry& Registry() {
  static SinkRegistry* registry = new SinkRegistry();
  return *registry;
}

std::once_flag install_once;

// Per thread: where its lines go (LogRoute), the line llama.cpp may log in pieces
// (GGML_LOG_LEVEL_CONT), and the errors of the load or decode running on it.
thread_local LogSink* route = nullptr;
thread_local std::string pending_text;
thread_local int pending_level = GGML_LOG_LEVEL_INFO;
thread_local std::string thread_errors;

void Deliver(int level, const std::string& text) {
  if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) {
    if (thread_errors.size() < 4096) thread_errors += text;
  }
  if (route != nullptr) {
    route->Post(level, text);
    return;
  }
  // Holding the registry lock keeps every listed sink registered (so alive and not yet closed:
  // Close unregisters under this lock) while the line is posted.
  SinkRegistry& registry = Registry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  for (LogSink* sink : registry.sinks) sink->Post(level, text);
}

// Any thread: llama.cpp's and ggml's log callback.
void OnLog(ggml_log_level level, const char* text, void*) {
  if (text == nullptr) return;
  if (level == GGML_LOG_LEVEL_CONT) {
    pending_text += text;
  } else {
    pending_text = text;
    pending_level = level;
  }
  if (!pending_text.empty() && pending_text.back() == '\n') {
    Deliver(pending_level, pending_text);
    pending_text.clear();
  }
}

}  // namespace

void CallLogger(Napi::Env env, Napi::Function fn, void*, LogLine* line) {
  std::unique_ptr<LogLine> owned(line);
  if (env == nullptr || fn.IsEmpty()) return;
  try {
    fn.Call({Napi::Number::New(env, line->level), Napi::String::New(env, line->text)});
  } catch (const Napi::Error&) {
    // lib/log.ts already guards user loggers; what fails here is an env that can no longer run
    // JS (a terminated worker draining its queue). Letting it escape would abort the process.
  }
}

void InstallLogCallback() {
  std::call_once(install_once, [] { llama_log_set(OnLog, nullptr); });
}

std::shared_ptr<LogSink> LogSink::Open() {
  std::shared_ptr<LogSink> sink(new LogSink());
  sink->min_level_.store(kNoLogger);
  SinkRegistry& registry = Registry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  registry.sinks.push_back(sink.get());
  return sink;
}

namespace {
void Unregister(LogSink* sink) {
  SinkRegistry& registry = Registry();
  std::lock_guard<std::mutex> lock(registry.mutex);
  registry.sinks.erase(std::remove(registry.sinks.begin(), registry.sinks.end(), sink), registry.sinks.end());
}
}  // namespace

LogSink::~LogSink() { Unregister(this); }

void LogSink::ReleaseLocked() {
  if (!has_fn_) return;
  fn_.Release();
  has_fn_ = false;
}

void LogSink::Set(Napi::Env env, Napi::Function fn, int min_level) {
  std::lock_guard<std::mutex> lock(mutex_);
  min_level_.store(kNoLogger);
  ReleaseLocked();
  if (closed_ || fn.IsEmpty()) return;
  fn_ = Function::New(env, fn, "cuda-llama-log", 0, 1);
  fn_.Unref(env);  // logging must never keep the event loop alive
  has_fn_ = true;
  min_level_.store(min_level);
}

void LogSink::Close() {
  Unregister(this);  // first: from here on no unowned line reaches this sink
  std::lock_guard<std::mutex> lock(mutex_);
  min_level_.store(kNoLogger);
  ReleaseLocked();
  closed_ = true;
}

void LogSink::Post(int level, const std::string& text) {
  if (level < min_level_.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (!has_fn_) return;
  auto* line = new LogLine{level, text};
  // napi_closing once the env's teardown has begun: the line is ours to free.
  if (fn_.NonBlockingCall(line) != napi_ok) delete line;
}

LogRoute::LogRoute(LogSink* sink) : previous_(route) { route = sink; }

LogRoute::~LogRoute() { route = previous_; }

Napi::Value SetLogger(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Function fn;
  if (info.Length() > 0 && info[0].IsFunction()) fn = info[0].As<Napi::Function>();
  int min_level = GGML_LOG_LEVEL_INFO;
  if (info.Length() > 1 && info[1].IsNumber()) min_level = info[1].As<Napi::Number>().Int32Value();
  env.GetInstanceData<Addon>()->log_sink->Set(env, fn, min_level);
  return env.Undefined();
}

void ClearThreadErrors() { thread_errors.clear(); }

std::string TakeThreadErrors() {
  std::string errors;
  errors.swap(thread_errors);
  while (!errors.empty() && (errors.back() == '\n' || errors.back() == ' ')) errors.pop_back();
  return errors;
}

}  // namespace cuda_llama
