#include "chat_templates.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <log.h>   // common/log.h; the quoted "log.h" is native/log.h
#include "chat.h"  // llama.cpp's common library (linked as llama-common)
#include "common.h"

namespace cuda_llama {
namespace {

// common's LOG_* macros print from their own thread to stdout/stderr; a library must not print,
// and every failure we care about comes back as an exception, so common's log is switched off.
// Process-wide and read without a lock by common, hence once, before the first template.
void SilenceCommonLog() {
  static std::once_flag once;
  std::call_once(once, [] { common_log_set_verbosity_thold(-1); });
}

bool IsBuiltinName(const std::string& name) {
  std::vector<const char*> names(static_cast<size_t>(std::max(llama_chat_builtin_templates(nullptr, 0), 0)));
  llama_chat_builtin_templates(names.data(), names.size());
  return std::any_of(names.begin(), names.end(), [&](const char* n) { return name == n; });
}

std::string StringField(Napi::Object object, const char* key) {
  Napi::Value value = object.Get(key);
  return value.IsString() ? value.As<Napi::String>().Utf8Value() : std::string();
}

// Everything read from JS before common runs, so no N-API call happens inside the try blocks.
struct ChatRequest {
  std::string override_template;  // empty: the model's own
  bool builtin = false;
  common_chat_templates_inputs inputs;
};

ChatRequest ReadRequest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsObject()) {
    throw Napi::TypeError::New(env, "applyChatTemplate(template | null, messages, options)");
  }
  ChatRequest request;
  if (info[0].IsString()) {
    request.override_template = info[0].As<Napi::String>();
    // A built-in name is llama.cpp's C++ rendering of that family (llama_chat_apply_template),
    // as llama-server renders `--chat-template NAME` without --jinja; anything else is Jinja.
    request.builtin = IsBuiltinName(request.override_template);
  }
  Napi::Array list = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value item = list.Get(i);
    if (!item.IsObject()) throw Napi::TypeError::New(env, "messages must be objects { role, content }");
    common_chat_msg message;
    message.role = StringField(item.As<Napi::Object>(), "role");
    message.content = StringField(item.As<Napi::Object>(), "content");
    request.inputs.messages.push_back(std::move(message));
  }
  Napi::Object options = info[2].As<Napi::Object>();
  request.inputs.use_jinja = !request.builtin;
  if (auto v = OptionalBool(options, "addGenerationPrompt")) request.inputs.add_generation_prompt = *v;
  if (auto v = OptionalBool(options, "enableThinking")) request.inputs.enable_thinking = *v;
  // llama-server's default: reasoning is parsed out of the content, not left inline.
  request.inputs.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
  Napi::Value variables = options.Get("variables");
  if (variables.IsObject()) {
    Napi::Object object = variables.As<Napi::Object>();
    Napi::Array keys = object.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); i++) {
      std::string key = keys.Get(i).As<Napi::String>();
      request.inputs.chat_template_kwargs[key] = StringField(object, key.c_str());
    }
  }
  return request;
}

Napi::Array StringArray(Napi::Env env, const std::vector<std::string>& values) {
  Napi::Array array = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); i++) array.Set(static_cast<uint32_t>(i), values[i]);
  return array;
}

}  // namespace

Napi::Value ApplyChatTemplate(const Napi::CallbackInfo& info, const llama_model* model) {
  Napi::Env env = info.Env();
  ChatRequest request = ReadRequest(info);
  if (request.override_template.empty() && llama_model_chat_template(model, nullptr) == nullptr &&
      llama_model_chat_template(model, "tool_use") == nullptr) {
    // common would fall back to ChatML here; a silent guess is worse than saying so.
    return env.Null();
  }
  SilenceCommonLog();
  common_chat_params params;
  std::string problem;
  try {
    common_chat_templates_ptr templates = common_chat_templates_init(model, request.override_template);
    params = common_chat_templates_apply(templates.get(), request.inputs);
  } catch (const std::exception& e) {
    problem = e.what();
    if (problem.empty()) problem = "unknown error";
  } catch (...) {
    problem = "a non-standard exception";
  }
  if (!problem.empty()) {
    const char* which = request.override_template.empty() ? "the model's chat template" : "options.template";
    throw MakeError(env, code::kChatTemplate, std::string("llama.cpp could not render ") + which + ": " + problem);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("prompt", params.prompt);
  result.Set("format", static_cast<int>(params.format));
  result.Set("formatName", common_chat_format_name(params.format));
  result.Set("generationPrompt", params.generation_prompt);
  result.Set("parser", params.parser);
  result.Set("supportsThinking", params.supports_thinking);
  result.Set("thinkingStartTag", params.thinking_start_tag);
  result.Set("thinkingEndTags", StringArray(env, params.thinking_end_tags));
  result.Set("additionalStops", StringArray(env, params.additional_stops));
  result.Set("jinja", !request.builtin);
  return result;
}

Napi::Value ParseChatOutput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsObject()) {
    throw Napi::TypeError::New(env, "parseChatOutput(text, { format, generationPrompt, parser }, partial)");
  }
  const bool partial = info[2].ToBoolean();
  std::string text = info[0].As<Napi::String>();
  Napi::Object prompt = info[1].As<Napi::Object>();
  int format = static_cast<int>(OptionalNumber(prompt, "format").value_or(0));
  if (format < 0 || format >= COMMON_CHAT_FORMAT_COUNT) throw Napi::RangeError::New(env, "format out of range");
  std::string generation_prompt = StringField(prompt, "generationPrompt");
  std::string parser = StringField(prompt, "parser");
  SilenceCommonLog();
  common_chat_msg message;
  std::string problem;
  try {
    common_chat_parser_params params;
    params.format = static_cast<common_chat_format>(format);
    params.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
    params.generation_prompt = generation_prompt;
    params.parse_tool_calls = false;
    if (!parser.empty()) params.parser.load(parser);
    message = common_chat_parse(text, partial, params);
  } catch (const std::exception& e) {
    problem = e.what();
    if (problem.empty()) problem = "unknown error";
  } catch (...) {
    problem = "a non-standard exception";
  }
  if (!problem.empty())
    throw MakeError(env, code::kChatTemplate, "llama.cpp's chat parser refused the output: " + problem);
  Napi::Object result = Napi::Object::New(env);
  result.Set("content", message.content);
  result.Set("reasoning", message.reasoning_content);
  return result;
}

}  // namespace cuda_llama
