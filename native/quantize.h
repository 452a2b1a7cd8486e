#pragma once

#include <napi.h>

namespace cuda_llama {

// JS: quantize(input, output, ftype: llama_ftype, threads) -> Promise<void>
Napi::Value Quantize(const Napi::CallbackInfo& info);

}  // namespace cuda_llama
