#include "common.h"

#include <algorithm>

namespace cuda_llama {

const napi_type_tag kModelTag = {0x6375646131a9aa01ULL, 0x6c6c616d61000001ULL};
const napi_type_tag kContextTag = {0x6375646131a9aa01ULL, 0x6c6c616d61000002ULL};
const napi_type_tag kSamplerTag = {0x6375646131a9aa01ULL, 0x6c6c616d61000003ULL};
const napi_type_tag kCancelFlagTag = {0x6375646131a9aa01ULL, 0x6c6c616d61000004ULL};

Napi::Error MakeError(Napi::Env env, const char* code, const std::string& message, std::optional<int> status) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  if (status) error.Set("status", Napi::Number::New(env, *status));
  return error;
}

std::optional<std::string> DevicesByName(const std::vector<std::string>& names,
                                         std::vector<ggml_backend_dev_t>& devices) {
  for (const std::string& name : names) {
    ggml_backend_dev_t dev = ggml_backend_dev_by_name(name.c_str());
    if (dev == nullptr) return "no device named " + name + " in ggml's registry";
    devices.push_back(dev);
  }
  devices.push_back(nullptr);
  return std::nullopt;
}

std::string TokenPiece(const llama_vocab* vocab, llama_token token, bool special) {
  char buf[256];
  int32_t n = llama_token_to_piece(vocab, token, buf, sizeof(buf), 0, special);
  if (n >= 0) return std::string(buf, static_cast<size_t>(n));
  std::string piece(static_cast<size_t>(-n), '\0');  // negative: the size it needs
  n = llama_token_to_piece(vocab, token, piece.data(), static_cast<int32_t>(piece.size()), 0, special);
  piece.resize(static_cast<size_t>(std::max(n, 0)));
  return piece;
}

void TagObject(Napi::Object object, const napi_type_tag& tag) {
  napi_status status = napi_type_tag_object(object.Env(), object, &tag);
  NAPI_THROW_IF_FAILED_VOID(object.Env(), status);
}

bool HasTag(Napi::Value value, const napi_type_tag& tag) {
  if (!value.IsObject()) return false;
  bool result = false;
  napi_status status = napi_check_object_type_tag(value.Env(), value, &tag, &result);
  return status == napi_ok && result;
}

std::optional<double> OptionalNumber(Napi::Object object, const char* key) {
  Napi::Value value = object.Get(key);
  if (value.IsUndefined()) return std::nullopt;
  if (!value.IsNumber()) throw Napi::TypeError::New(object.Env(), std::string(key) + " must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

std::optional<bool> OptionalBool(Napi::Object object, const char* key) {
  Napi::Value value = object.Get(key);
  if (value.IsUndefined()) return std::nullopt;
  if (!value.IsBoolean()) throw Napi::TypeError::New(object.Env(), std::string(key) + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

std::string OptionalString(Napi::Object object, const char* key) {
  Napi::Value value = object.Get(key);
  if (value.IsUndefined()) return std::string();
  if (!value.IsString()) throw Napi::TypeError::New(object.Env(), std::string(key) + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

std::vector<std::string> OptionalStrings(Napi::Object object, const char* key) {
  std::vector<std::string> out;
  Napi::Value value = object.Get(key);
  if (value.IsUndefined()) return out;
  const std::string expected = std::string(key) + " must be an array of strings";
  if (!value.IsArray()) throw Napi::TypeError::New(object.Env(), expected);
  Napi::Array array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value item = array.Get(i);
    if (!item.IsString()) throw Napi::TypeError::New(object.Env(), expected);
    out.push_back(item.As<Napi::String>().Utf8Value());
  }
  return out;
}

}  // namespace cuda_llama
