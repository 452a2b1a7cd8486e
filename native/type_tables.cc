#include "type_tables.h"

#include "ggml.h"
#include "llama.h"

namespace cuda_llama {

Napi::Value GgmlTypes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array result = Napi::Array::New(env);
  for (int id = 0; id < GGML_TYPE_COUNT; id++) {
    const auto type = static_cast<ggml_type>(id);
    const char* name = ggml_type_name(type);
    if (name == nullptr || ggml_blck_size(type) == 0) continue;
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("id", id);
    entry.Set("name", name);
    entry.Set("blockSize", Napi::Number::New(env, static_cast<double>(ggml_blck_size(type))));
    entry.Set("typeSize", Napi::Number::New(env, static_cast<double>(ggml_type_size(type))));
    entry.Set("quantized", ggml_is_quantized(type));
    result.Set(result.Length(), entry);
  }
  return result;
}

Napi::Value FileTypeName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "ftype must be a number");
  return Napi::String::New(env, llama_ftype_name(static_cast<llama_ftype>(info[0].As<Napi::Number>().Int32Value())));
}

}  // namespace cuda_llama
