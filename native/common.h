// Shared helpers for the addon: errors that carry our code and llama.cpp's status, type-tagged
// unwrapping, and the one "not disposed" guard. Everything here runs on the JS thread.
#pragma once

#include <napi.h>

#include <optional>
#include <string>
#include <vector>

#include "llama.h"

#ifndef CUDA_LLAMA_LLAMA_CPP_COMMIT
#error \
    "CUDA_LLAMA_LLAMA_CPP_COMMIT is not defined: build through CMakeLists.txt (npm run build:native), which reads vendor/llama.cpp.pin.json"
#endif

namespace cuda_llama {

// Error codes the native layer reports; lib/errors.ts maps each to a class and a remedy.
namespace code {
inline constexpr const char* kModelLoad = "ERR_MODEL_LOAD";
inline constexpr const char* kContextCreate = "ERR_CONTEXT_CREATE";
inline constexpr const char* kDecode = "ERR_DECODE";
inline constexpr const char* kDisposed = "ERR_DISPOSED";
inline constexpr const char* kQuantize = "ERR_QUANTIZE";
inline constexpr const char* kContextFull = "ERR_CONTEXT_FULL";
inline constexpr const char* kBusy = "ERR_BUSY";
inline constexpr const char* kCudaUnavailable = "ERR_CUDA_UNAVAILABLE";
inline constexpr const char* kChatTemplate = "ERR_CHAT_TEMPLATE";
inline constexpr const char* kGrammar = "ERR_GRAMMAR";
inline constexpr const char* kJsonSchema = "ERR_JSON_SCHEMA";
inline constexpr const char* kEmbeddingsOnly = "ERR_EMBEDDINGS_ONLY";
inline constexpr const char* kContextFailed = "ERR_CONTEXT_FAILED";
}  // namespace code

// A token's text as UTF-8 bytes (possibly part of a character). Never truncated: a piece longer
// than the first buffer is fetched again at the size llama.cpp asks for. Any thread.
std::string TokenPiece(const llama_vocab* vocab, llama_token token, bool special);

// The one lookup of device names from lib/ (the GPU decision's CUDA devices) in ggml's registry:
// appends them to `devices`, NULL-terminated as llama_model_params.devices wants. Returns the
// message for a name the registry lacks, reported as code::kCudaUnavailable; nullopt when all
// resolve. Worker thread; no N-API.
std::optional<std::string> DevicesByName(const std::vector<std::string>& names,
                                         std::vector<ggml_backend_dev_t>& devices);

// An Error with `code` (ours) and, when llama.cpp returned one, `status` (theirs).
Napi::Error MakeError(Napi::Env env, const char* code, const std::string& message,
                      std::optional<int> status = std::nullopt);

// Type tags: a wrong object passed where a Model/Context/Sampler is expected is a TypeError,
// never a reinterpret_cast of someone else's pointer.
extern const napi_type_tag kModelTag;
extern const napi_type_tag kContextTag;
extern const napi_type_tag kSamplerTag;
extern const napi_type_tag kCancelFlagTag;

void TagObject(Napi::Object object, const napi_type_tag& tag);
bool HasTag(Napi::Value value, const napi_type_tag& tag);

template <typename T>
T* UnwrapTagged(Napi::Value value, const napi_type_tag& tag, const char* what) {
  if (!HasTag(value, tag)) {
    throw Napi::TypeError::New(value.Env(), std::string("expected a ") + what);
  }
  return T::Unwrap(value.As<Napi::Object>());
}

// Reads an optional number property; undefined means "let llama.cpp's default stand".
std::optional<double> OptionalNumber(Napi::Object object, const char* key);
std::optional<bool> OptionalBool(Napi::Object object, const char* key);
// An optional string property ('' when undefined); a TypeError naming `key` for any other type.
std::string OptionalString(Napi::Object object, const char* key);
// An optional array of strings (empty when undefined); a TypeError naming `key` otherwise.
std::vector<std::string> OptionalStrings(Napi::Object object, const char* key);

}  // namespace cuda_llama
