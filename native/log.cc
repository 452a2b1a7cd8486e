#include "log.h"

#include <atomic>
#include <mutex>

#include "ggml.h"
#include "llama.h"

namespace cuda_llama {
namespace {

struct LogLine {
  int level;
  std::string text;
};

std::once_flag install_once;
std::mutex logger_mutex;  // guards logger and logger_set
Napi::ThreadSafeFunction logger;
bool logger_set = false;
std::atomic<int> min_level{GGML_LOG_LEVEL_WARN};

// Per thread: llama.cpp may log a line in pieces (GGML_LOG_LEVEL_CONT), and the load worker
// wants the errors of its own load only.
thread_local std::string pending_text;
thread_local int pending_level = GGML_LOG_LEVEL_INFO;
thread_local std::string thread_errors;

void Deliver(int level, std::string text) {
  if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) {
    if (thread_errors.size() < 4096) thread_errors += text;
  }
  if (level < min_level.load(std::memory_order_relaxed)) return;
  std::lock_guard<std::mutex> lock(logger_mutex);
  if (!logger_set) return;
  auto* line = new LogLine{level, std::move(text)};
  napi_status status = logger.NonBlockingCall(line, [](Napi::Env env, Napi::Function fn, LogLine* data) {
    if (env != nullptr && fn != nullptr) {
      try {
        fn.Call({Napi::Number::New(env, data->level), Napi::String::New(env, data->text)});
      } catch (const Napi::Error&) {
        // A throwing logger must not take llama.cpp down; lib/log.ts already guards user loggers.
      }
    }
    delete data;
  });
  if (status != napi_ok) delete line;
}

void OnLog(ggml_log_level level, const char* text, void*) {
  if (text == nullptr) return;
  if (level == GGML_LOG_LEVEL_CONT) {
    pending_text += text;
  } else {
    pending_text = text;
    pending_level = level;
  }
  if (!pending_text.empty() && pending_text.back() == '\n') {
    Deliver(pending_level, std::move(pending_text));
    pending_text.clear();
  }
}

}  // namespace

void InstallLogCallback() {
  std::call_once(install_once, [] { llama_log_set(OnLog, nullptr); });
}

Napi::Value SetLogger(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::lock_guard<std::mutex> lock(logger_mutex);
  if (logger_set) {
    logger.Release();
    logger_set = false;
  }
  if (info.Length() > 1 && info[1].IsNumber()) min_level = info[1].As<Napi::Number>().Int32Value();
  if (info.Length() > 0 && info[0].IsFunction()) {
    logger = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "cuda-llama-log", 0, 1);
    logger.Unref(env);  // logging must never keep the process alive
    logger_set = true;
  }
  return env.Undefined();
}

void ReleaseLogger() {
  std::lock_guard<std::mutex> lock(logger_mutex);
  if (logger_set) {
    logger.Release();
    logger_set = false;
  }
}

void ClearThreadErrors() { thread_errors.clear(); }

std::string TakeThreadErrors() {
  std::string errors;
  errors.swap(thread_errors);
  while (!errors.empty() && (errors.back() == '\n' || errors.back() == ' ')) errors.pop_back();
  return errors;
}

}  // namespace cuda_llama
