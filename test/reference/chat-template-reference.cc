// The reference for test/native/chat-templates.test.ts: renders conversations the way llama-server
// --jinja does (common_chat_templates_init on the model, common_chat_templates_apply, then
// common_tokenize with add_special and parse_special), in a separate program that shares none
// of the addon's code, so that the test compares the addon with llama.cpp and not with itself.
//
// With no enableThinking in a case, thinking is on where the template has the switch
// (common_chat_templates_support_enable_thinking), and chat_template_kwargs holds
// preserve_reasoning: true: llama-server's defaults (tools/server/server-context.cpp, common/arg.cpp).
//
// Usage: cuda-llama-chat-reference JOBS.json > RESULTS.json
//   JOBS.json: [{ "model": path, "cases": [{ "messages": [{ "role", "content" }],
//                 "addGenerationPrompt": bool, "enableThinking"?: bool }] }]
//   RESULTS.json: one array per job, one { "prompt", "tokens" } or { "error" } per case.
// Built by scripts/build-tools.mjs (target cuda-llama-chat-reference).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "chat.h"
#include "common.h"
#include "log.h"

static void quiet(ggml_log_level, const char*, void*) {}

static common_json render(const llama_model* model, const common_json& test) {
  common_chat_templates_inputs inputs;
  const common_json& messages = test.at("messages");
  for (size_t i = 0; i < messages.size(); i++) {
    common_chat_msg msg;
    msg.role = messages.at(i).at("role").get<std::string>();
    msg.content = messages.at(i).at("content").get<std::string>();
    inputs.messages.push_back(msg);
  }
  inputs.add_generation_prompt = test.at("addGenerationPrompt").get<bool>();
  inputs.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;  // llama-server's default
  inputs.chat_template_kwargs["preserve_reasoning"] = "true";  // llama-server's default
  common_json out = common_json::object();
  try {
    auto templates = common_chat_templates_init(model, "");
    inputs.enable_thinking = test.contains("enableThinking") ? test.at("enableThinking").get<bool>()
                                                              : common_chat_templates_support_enable_thinking(templates.get());
    common_chat_params params = common_chat_templates_apply(templates.get(), inputs);
    out["prompt"] = params.prompt;
    common_json tokens = common_json::array();
    for (llama_token t : common_tokenize(llama_model_get_vocab(model), params.prompt, true, true)) tokens.push_back(t);
    out["tokens"] = tokens;
  } catch (const std::exception& e) {
    out["error"] = std::string(e.what());
  }
  return out;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s JOBS.json\n", argv[0]);
    return 2;
  }
  llama_log_set(quiet, nullptr);
  common_log_set_verbosity_thold(-1);
  std::ifstream file(argv[1]);
  std::stringstream text;
  text << file.rdbuf();
  common_json jobs = common_json::parse(text.str());
  common_json results = common_json::array();
  for (size_t j = 0; j < jobs.size(); j++) {
    const common_json& job = jobs.at(j);
    llama_model_params mparams = llama_model_default_params();
    mparams.vocab_only = true;
    std::string path = job.at("model").get<std::string>();
    llama_model* model = llama_model_load_from_file(path.c_str(), mparams);
    if (model == nullptr) {
      std::fprintf(stderr, "cannot load %s\n", path.c_str());
      return 1;
    }
    common_json cases = common_json::array();
    const common_json& tests = job.at("cases");
    for (size_t i = 0; i < tests.size(); i++) cases.push_back(render(model, tests.at(i)));
    results.push_back(cases);
    llama_model_free(model);
  }
  std::cout << results.dump() << std::endl;
  return 0;
}
