// llama.cpp/ggml logging, installed once per process. Log lines are data: they go to a JS
// function (lib/log.ts decides where: util.debuglog or the user's logger), never to stdout.
#pragma once

#include <napi.h>

#include <string>

namespace cuda_llama {

// Installs the process-wide llama_log_set callback (once; llama_log_set is not thread-safe).
void InstallLogCallback();

// JS: setLogger(fn | null, minLevel). fn(level: number, text: string). Levels are ggml_log_level.
Napi::Value SetLogger(const Napi::CallbackInfo& info);

// Releases the logger thread-safe function at env teardown.
void ReleaseLogger();

// The error and warning lines llama.cpp logged on the calling thread since the last
// ClearThreadErrors(). Used to put llama.cpp's own reason into an error message (as text for a
// human, never parsed for state).
void ClearThreadErrors();
std::string TakeThreadErrors();

}  // namespace cuda_llama
