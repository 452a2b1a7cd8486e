// ggml's and llama.cpp's own enums, read at run time so that lib/'s hand-written mirrors of them
// (lib/gguf/ggml-types.ts, LlamaFileType in lib/binding/native.ts) can be tested against the
// vendored build (test/native/ggml-types.test.ts). Cheap and synchronous; any thread is fine for
// ggml, but these run on the JS thread.
#pragma once

#include <napi.h>

namespace cuda_llama {

// JS: ggmlTypes() -> [{ id, name, blockSize, typeSize, quantized }] for every ggml_type below
// GGML_TYPE_COUNT that ggml still has (ggml_type_name, ggml_blck_size, ggml_type_size,
// ggml_is_quantized). Removed ids keep a placeholder name and a block size of 0: left out.
Napi::Value GgmlTypes(const Napi::CallbackInfo& info);

// JS: fileTypeName(ftype: llama_ftype) -> string (llama_ftype_name: "Q8_0", "all F32", ...)
Napi::Value FileTypeName(const Napi::CallbackInfo& info);

}  // namespace cuda_llama
