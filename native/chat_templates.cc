#include "chat_templates.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include <log.h>              // common/log.h; the quoted "log.h" is native/log.h
#include "chat-peg-parser.h"  // common_chat_peg_builder::CONTENT
#include "chat.h"             // llama.cpp's common library (linked as llama-common)
#include "common.h"
#include "grammar.h"
#include "json-schema-to-grammar.h"  // build_grammar
#include "json-schema.h"             // common_chat_schema_from_json

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

// Everything read from JS before common runs, so no N-API call happens inside the try blocks.
struct ChatRequest {
  std::string override_template;  // empty: the model's own
  bool builtin = false;
  common_chat_templates_inputs inputs;
  // A named tool_choice: the prompt lists every tool, the grammar and parser only this one.
  std::string only_tool;
};

common_chat_msg MessageFromJs(Napi::Env env, Napi::Value item) {
  if (!item.IsObject()) throw Napi::TypeError::New(env, "messages must be objects { role, content }");
  Napi::Object object = item.As<Napi::Object>();
  common_chat_msg message;
  message.role = OptionalString(object, "role");
  message.content = OptionalString(object, "content");
  message.reasoning_content = OptionalString(object, "reasoning");
  message.tool_call_id = OptionalString(object, "toolCallId");
  message.tool_name = OptionalString(object, "toolName");
  Napi::Value calls = object.Get("toolCalls");
  if (calls.IsArray()) {
    Napi::Array list = calls.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) {
      if (!list.Get(i).IsObject()) throw Napi::TypeError::New(env, "toolCalls must hold objects");
      Napi::Object call = list.Get(i).As<Napi::Object>();
      message.tool_calls.push_back(
          {OptionalString(call, "name"), OptionalString(call, "arguments"), OptionalString(call, "id")});
    }
  }
  return message;
}

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
  for (uint32_t i = 0; i < list.Length(); i++) request.inputs.messages.push_back(MessageFromJs(env, list.Get(i)));
  Napi::Object options = info[2].As<Napi::Object>();
  request.inputs.use_jinja = !request.builtin;
  if (auto v = OptionalBool(options, "addGenerationPrompt")) request.inputs.add_generation_prompt = *v;
  if (auto v = OptionalBool(options, "enableThinking")) request.inputs.enable_thinking = *v;
  if (auto v = OptionalBool(options, "parallelToolCalls")) request.inputs.parallel_tool_calls = *v;
  // llama-server's default: reasoning is parsed out of the content, not left inline.
  request.inputs.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
  Napi::Value variables = options.Get("variables");
  if (variables.IsObject()) {
    Napi::Object object = variables.As<Napi::Object>();
    Napi::Array keys = object.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); i++) {
      std::string key = keys.Get(i).As<Napi::String>();
      request.inputs.chat_template_kwargs[key] = OptionalString(object, key.c_str());
    }
  }
  Napi::Value tools = options.Get("tools");
  if (tools.IsArray()) {
    Napi::Array array = tools.As<Napi::Array>();
    for (uint32_t i = 0; i < array.Length(); i++) {
      if (!array.Get(i).IsObject()) throw Napi::TypeError::New(env, "tools must hold objects");
      Napi::Object tool = array.Get(i).As<Napi::Object>();
      request.inputs.tools.push_back(
          {OptionalString(tool, "name"), OptionalString(tool, "description"), OptionalString(tool, "parameters")});
    }
  }
  const std::string choice = OptionalString(options, "toolChoice");
  request.inputs.tool_choice = choice == "required" ? COMMON_CHAT_TOOL_CHOICE_REQUIRED
                               : choice == "none"   ? COMMON_CHAT_TOOL_CHOICE_NONE
                                                    : COMMON_CHAT_TOOL_CHOICE_AUTO;
  request.only_tool = OptionalString(options, "onlyTool");
  request.inputs.json_schema = OptionalString(options, "jsonSchema");
  return request;
}

Napi::Array StringArray(Napi::Env env, const std::vector<std::string>& values) {
  Napi::Array array = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); i++) array.Set(static_cast<uint32_t>(i), values[i]);
  return array;
}

// A GBNF expression that matches nothing: no character outside every value llama.cpp's UTF-8
// decoder can produce (it decodes invalid 4-byte sequences to values above U+10FFFF, which
// [^\x00-\U0010FFFF] would accept).
constexpr const char* kNothing = "[^\\x00-\\UFFFFFFFF]";

// The JSON schema a schema parser of common's reply parser was built from, by the name common gave
// it: "tool-NAME-schema" (a tool's parameters, as common_chat_tool_parameters reads them),
// "tool-NAME-arg-PARAM-schema" (one parameter, for formats that write arguments one by one), or
// "response-format-schema" (the response format's).
// Serializing the parser keeps the name only (common/peg-parser.cpp), so a loaded parser needs
// the schemas back before a grammar built from it holds arguments to them.
std::optional<common_json> SchemaByName(const std::string& name, const std::vector<common_chat_tool>& tools,
                                        const std::string& response_format) {
  static const std::string kSuffix = "-schema";
  if ((name == "response-format-schema" || name == "response-format") && !response_format.empty()) {
    return common_json::parse(response_format);
  }
  for (const common_chat_tool& tool : tools) {
    common_json function = {{"name", tool.name}};
    if (!tool.parameters.empty()) function["parameters"] = common_json::parse(tool.parameters);
    const common_json parameters = common_chat_tool_parameters(function);
    const std::string prefix = "tool-" + tool.name;
    if (name == prefix + kSuffix) return parameters;
    const std::string arg = prefix + "-arg-";
    if (name.size() > arg.size() + kSuffix.size() && name.compare(0, arg.size(), arg) == 0 &&
        name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0) {
      const std::string param = name.substr(arg.size(), name.size() - arg.size() - kSuffix.size());
      if (parameters.contains("properties") && parameters["properties"].contains(param)) {
        common_json schema = parameters["properties"][param];
        for (const char* defs : {"$defs", "definitions"}) {
          if (parameters.contains(defs) && schema.is_object()) schema[defs] = parameters[defs];
        }
        return schema;
      }
    }
  }
  return std::nullopt;
}

// The parsers a parser is made of (a reference: the rule it names).
std::vector<common_peg_parser_id> Children(const common_peg_arena& arena, const common_peg_parser_variant& parser) {
  return std::visit(
      [&](const auto& p) -> std::vector<common_peg_parser_id> {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, common_peg_sequence_parser> || std::is_same_v<T, common_peg_choice_parser>) {
          return p.children;
        } else if constexpr (std::is_same_v<T, common_peg_ref_parser>) {
          return {arena.get_rule(p.name)};
        } else if constexpr (std::is_same_v<T, common_peg_repetition_parser> ||
                             std::is_same_v<T, common_peg_and_parser> || std::is_same_v<T, common_peg_not_parser> ||
                             std::is_same_v<T, common_peg_schema_parser> || std::is_same_v<T, common_peg_rule_parser> ||
                             std::is_same_v<T, common_peg_atomic_parser> || std::is_same_v<T, common_peg_tag_parser> ||
                             std::is_same_v<T, common_peg_gbnf_parser> || std::is_same_v<T, common_peg_ac_parser>) {
          return {p.child};
        } else {
          return {};
        }
      },
      parser);
}

// Parsers that can match nothing once `dead` ones cannot (a fixed point over the arena, whose
// rules may be recursive): a sequence with a dead part, a choice of dead alternatives, a
// repetition that needs at least one dead item, a wrapper or reference of a dead parser.
std::vector<bool> DeadParsers(const common_peg_arena& arena, std::vector<bool> dead) {
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t id = 0; id < arena.size(); id++) {
      if (dead[id]) continue;
      const auto& parser = arena.get(static_cast<common_peg_parser_id>(id));
      const std::vector<common_peg_parser_id> children = Children(arena, parser);
      bool is_dead = false;
      if (std::holds_alternative<common_peg_sequence_parser>(parser)) {
        is_dead = std::any_of(children.begin(), children.end(), [&](common_peg_parser_id c) { return dead[c]; });
      } else if (std::holds_alternative<common_peg_choice_parser>(parser)) {
        is_dead = !children.empty() &&
                  std::all_of(children.begin(), children.end(), [&](common_peg_parser_id c) { return dead[c]; });
      } else if (const auto* rep = std::get_if<common_peg_repetition_parser>(&parser)) {
        is_dead = rep->min_count > 0 && dead[rep->child];
      } else if (!std::holds_alternative<common_peg_and_parser>(parser) &&
                 !std::holds_alternative<common_peg_not_parser>(parser)) {
        is_dead = children.size() == 1 && dead[children[0]];
      }
      if (is_dead) {
        dead[id] = true;
        changed = true;
      }
    }
  }
  return dead;
}

// Whether a tool call (a "tool"-tagged part) can be inside the parser.
bool HoldsToolCall(const common_peg_arena& arena, common_peg_parser_id id, std::vector<int8_t>& memo) {
  if (memo[id] >= 0) return memo[id] == 1;
  memo[id] = 0;  // a cycle back here adds nothing
  const auto& parser = arena.get(id);
  bool holds = false;
  if (const auto* tag = std::get_if<common_peg_tag_parser>(&parser)) holds = tag->tag == common_chat_peg_builder::TOOL;
  for (common_peg_parser_id child : Children(arena, parser)) holds = holds || HoldsToolCall(arena, child, memo);
  memo[id] = holds ? 1 : 0;
  return holds;
}

// How a reply grammar is rebuilt from common's own parser (RebuildGrammar).
struct GrammarRebuild {
  const std::vector<common_chat_tool>* tools = nullptr;
  std::string response_format;  // the response format's schema (JSON text), or empty
  // The template's thinking tags, each with the tokens it is written as when it is one token or
  // more of this vocabulary.
  std::vector<std::pair<std::string, std::vector<llama_token>>> tags;
  bool required = false;     // tool_choice 'required' (or a named tool): no content, and the bounds below
  bool single_call = false;  // parallel_tool_calls false
  bool lazy = false;
};

// The reply grammar rebuilt from common's own parser, holding the model to what common's grammar
// lets slip:
//   - tool_choice 'required' (and a named tool): llama.cpp lets the model write free content
//     before the call (an optional "until <tool-call start>" in the grammar's root), so a model
//     that never opens a call writes text until max_tokens and answers without one
//     (ggml-org/llama.cpp#27217). Here every content-tagged part can match nothing, and so can
//     every branch that needs one (a branch the model could enter and never leave is a dead end):
//     reasoning stays (bounded by the reasoning budget), and the only way through is tool calls.
//   - parallel_tool_calls false: several formats repeat the call regardless; here a repetition of
//     tool calls allows one.
//   - 'required' again: a format that lets the model write any number of messages before the call
//     (gpt-oss: reasoning and preambles) gets one, and a name of unbounded length in a call's
//     header (gpt-oss's content type after <|constrain|>) at most 64 characters, so that the call
//     comes after a bounded prefix.
//   - the reasoning budget: common's budget sampler finds the thinking tags as token sequences,
//     so a tag the model spells with other tokens is never seen and the budget never runs out.
//     Here each tag is the one spelling the budget sampler knows (GBNF token references).
// The parser (for reading the reply back) stays common's. nullopt when a schema of the parser
// cannot be found again (a format this adapter does not know) or, for tool calls, none is
// possible: lib/ then uses the generic tool format.
std::optional<std::string> RebuildGrammar(const std::string& serialized_parser, const GrammarRebuild& how) {
  common_peg_arena arena;
  arena.load(serialized_parser);
  std::vector<bool> dead(arena.size(), false);
  std::vector<int8_t> memo(arena.size(), -1);
  // Parts of a tool call (under a "tool" tag): their repetitions are the call's own (arguments).
  std::vector<bool> in_call(arena.size(), false);
  for (size_t id = 0; id < arena.size(); id++) {
    const auto* tag = std::get_if<common_peg_tag_parser>(&arena.get(static_cast<common_peg_parser_id>(id)));
    if (tag == nullptr || tag->tag != common_chat_peg_builder::TOOL) continue;
    std::vector<common_peg_parser_id> todo{tag->child};
    while (!todo.empty()) {
      const common_peg_parser_id at = todo.back();
      todo.pop_back();
      if (in_call[at]) continue;
      in_call[at] = true;
      for (common_peg_parser_id child : Children(arena, arena.get(at))) todo.push_back(child);
    }
  }
  // The GBNF wrapper keeps a child that build_grammar visits for the rules it reaches: a leaf,
  // so that a replaced part contributes no rules.
  common_peg_parser_id leaf = COMMON_PEG_INVALID_PARSER_ID;
  for (size_t id = 0; id < arena.size() && leaf == COMMON_PEG_INVALID_PARSER_ID; id++) {
    if (Children(arena, arena.get(static_cast<common_peg_parser_id>(id))).empty())
      leaf = static_cast<common_peg_parser_id>(id);
  }
  if (leaf == COMMON_PEG_INVALID_PARSER_ID) return std::nullopt;
  for (size_t id = 0; id < arena.size(); id++) {
    auto& parser = arena.get(static_cast<common_peg_parser_id>(id));
    if (const auto* tag = std::get_if<common_peg_tag_parser>(&parser)) {
      dead[id] = how.required && tag->tag == common_chat_peg_builder::CONTENT;
    } else if (auto* schema = std::get_if<common_peg_schema_parser>(&parser)) {
      std::optional<common_json> json = SchemaByName(schema->name, *how.tools, how.response_format);
      if (!json) return std::nullopt;
      auto doc = std::make_shared<const common_chat_schema_document>(common_chat_schema_from_json(*json));
      schema->node = doc->root.get();
      schema->doc = std::move(doc);
    } else if (auto* rep = std::get_if<common_peg_repetition_parser>(&parser)) {
      const bool many = rep->max_count < 0 || rep->max_count > 1;
      const bool holds_call = HoldsToolCall(arena, rep->child, memo);
      if (many && ((how.single_call && holds_call) || (how.required && !holds_call && !in_call[id])))
        rep->max_count = 1;
    } else if (auto* chars = std::get_if<common_peg_chars_parser>(&parser)) {
      if (how.required && in_call[id] && chars->max_count < 0) chars->max_count = std::max(chars->min_count, 64);
    } else if (const auto* literal = std::get_if<common_peg_literal_parser>(&parser)) {
      for (const auto& [text, tokens] : how.tags) {
        if (literal->literal != text || tokens.empty()) continue;
        std::string refs;
        for (llama_token t : tokens) refs += (refs.empty() ? "<[" : " <[") + std::to_string(t) + "]>";
        parser = common_peg_gbnf_parser{leaf, tokens.size() > 1 ? "(" + refs + ")" : refs};
        break;
      }
    }
  }
  dead = DeadParsers(arena, std::move(dead));
  if (!how.lazy && dead[arena.root()]) return std::nullopt;
  for (size_t id = 0; id < arena.size(); id++) {
    auto& parser = arena.get(static_cast<common_peg_parser_id>(id));
    // A rule stays a rule (its name is referenced); its body is dead too and is replaced.
    if (dead[id] && !std::holds_alternative<common_peg_rule_parser>(parser) &&
        !std::holds_alternative<common_peg_ref_parser>(parser)) {
      parser = common_peg_gbnf_parser{leaf, kNothing};
    }
  }
  return build_grammar([&](const common_grammar_builder& builder) { arena.build_grammar(builder, how.lazy); });
}

// The template's thinking tags, each with the tokens this vocabulary writes it as.
std::vector<std::pair<std::string, std::vector<llama_token>>> ThinkingTags(const llama_model* model,
                                                                           const common_chat_params& params) {
  std::vector<std::pair<std::string, std::vector<llama_token>>> tags;
  std::vector<std::string> texts = params.thinking_end_tags;
  if (!params.thinking_start_tag.empty()) texts.push_back(params.thinking_start_tag);
  for (const std::string& text : texts) {
    const size_t begin = text.find_first_not_of(" \t\r\n");
    const size_t end = text.find_last_not_of(" \t\r\n");
    const std::string trimmed = begin == std::string::npos ? std::string() : text.substr(begin, end - begin + 1);
    if (!trimmed.empty())
      tags.emplace_back(trimmed, common_tokenize(llama_model_get_vocab(model), trimmed, false, true));
  }
  return tags;
}

const char* TriggerType(common_grammar_trigger_type type) {
  switch (type) {
    case COMMON_GRAMMAR_TRIGGER_TYPE_TOKEN:
      return "token";
    case COMMON_GRAMMAR_TRIGGER_TYPE_WORD:
      return "word";
    case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN:
      return "pattern";
    case COMMON_GRAMMAR_TRIGGER_TYPE_PATTERN_FULL:
      return "patternFull";
  }
  return "word";
}

// common_sampler_init feeds a non-lazy reply grammar the generation prompt's tokens, but skips a
// first token whose piece starts with a space the text lacks (meant for tokenizers that put a lone
// space before a special token). In a SentencePiece vocabulary without the template's markers as
// tokens (TinyLlama's `<|assistant|>`, ChatML on a Llama 2 vocabulary) that first piece is " <":
// the "<" never reaches the grammar, which then refuses the rest, and the sampler cannot be made
// (llama-server answers such a response_format with a 400). The grammar's leading literal is made
// to start where common's prefill starts.
void AlignWithPrefill(const llama_vocab* vocab, const std::string& generation_prompt, std::string& grammar) {
  if (generation_prompt.empty() || grammar.empty()) return;
  const std::vector<llama_token> tokens = common_tokenize(vocab, generation_prompt, false, true);
  if (tokens.empty()) return;
  const std::string first = common_token_to_piece(vocab, tokens[0], true);
  if (first.empty() || !std::isspace(static_cast<unsigned char>(first[0])) ||
      std::isspace(static_cast<unsigned char>(generation_prompt[0]))) {
    return;  // common feeds every token
  }
  size_t text = 0;
  while (text < first.size() && std::isspace(static_cast<unsigned char>(first[text]))) text++;
  const std::string skipped = first.substr(text);
  if (skipped.empty() || generation_prompt.compare(0, skipped.size(), skipped) != 0) return;
  // The literal is the generation prompt up to the reasoning start tag (common_chat_peg_builder::prefix);
  // the longest prefix of it that the grammar holds as one literal is the one at the start of root.
  const std::string root = "root ::= ";
  for (size_t length = generation_prompt.size(); length > skipped.size(); length--) {
    const std::string literal = gbnf_format_literal(generation_prompt.substr(0, length));
    const size_t at = grammar.find(root + literal);
    if (at == std::string::npos) continue;
    const std::string rest = gbnf_format_literal(generation_prompt.substr(skipped.size(), length - skipped.size()));
    grammar.replace(at + root.size(), literal.size(), rest);
    return;
  }
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
  bool tool_format = false;
  std::string problem;
  try {
    common_chat_templates_ptr templates = common_chat_templates_init(model, request.override_template);
    const bool tools = !request.inputs.tools.empty() && request.inputs.tool_choice != COMMON_CHAT_TOOL_CHOICE_NONE;
    params = common_chat_templates_apply(templates.get(), request.inputs);
    if (tools) {
      // Whether the template has a tool-call format common can constrain: forced, it has a grammar.
      common_chat_templates_inputs required = request.inputs;
      required.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
      if (!request.only_tool.empty()) {
        // Named: the prompt above lists every tool; the grammar and parser know this one only.
        required.tools.erase(std::remove_if(required.tools.begin(), required.tools.end(),
                                            [&](const common_chat_tool& t) { return t.name != request.only_tool; }),
                             required.tools.end());
      }
      common_chat_params forced =
          request.inputs.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED && request.only_tool.empty()
              ? params
              : common_chat_templates_apply(templates.get(), required);
      GrammarRebuild how;
      how.tools = &required.tools;
      how.tags = ThinkingTags(model, forced);
      how.required = true;
      how.single_call = !request.inputs.parallel_tool_calls;
      std::optional<std::string> forced_grammar;
      if (!forced.grammar.empty() && !forced.parser.empty()) forced_grammar = RebuildGrammar(forced.parser, how);
      tool_format = forced_grammar.has_value();
      if (tool_format && request.inputs.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED) {
        params.grammar = *forced_grammar;
        params.grammar_lazy = false;
        params.grammar_triggers.clear();
        params.parser = forced.parser;
        params.generation_prompt = forced.generation_prompt;
      } else if (tool_format && params.grammar_lazy && !params.parser.empty()) {
        // 'auto': common's lazy grammar, with the arguments' schemas and the single call held.
        how.tools = &request.inputs.tools;
        how.required = false;
        how.lazy = true;
        if (std::optional<std::string> lazy = RebuildGrammar(params.parser, how)) params.grammar = *lazy;
      }
    } else if (!params.grammar.empty() && !params.parser.empty() && !request.inputs.json_schema.empty()) {
      // A response format: common's grammar, with the thinking tags as the budget sampler knows them.
      GrammarRebuild how;
      const std::vector<common_chat_tool> none;
      how.tools = &none;
      how.response_format = request.inputs.json_schema;
      how.tags = ThinkingTags(model, params);
      if (std::optional<std::string> rebuilt = RebuildGrammar(params.parser, how)) params.grammar = *rebuilt;
    }
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
  if (!params.grammar.empty()) params.grammar = RepairGrammar(params.grammar);
  if (!params.grammar_lazy) AlignWithPrefill(llama_model_get_vocab(model), params.generation_prompt, params.grammar);
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
  result.Set("grammar", params.grammar);
  result.Set("grammarLazy", params.grammar_lazy);
  Napi::Array triggers = Napi::Array::New(env, params.grammar_triggers.size());
  for (size_t i = 0; i < params.grammar_triggers.size(); i++) {
    Napi::Object trigger = Napi::Object::New(env);
    trigger.Set("type", TriggerType(params.grammar_triggers[i].type));
    trigger.Set("value", params.grammar_triggers[i].value);
    trigger.Set("token", params.grammar_triggers[i].token);
    triggers.Set(static_cast<uint32_t>(i), trigger);
  }
  result.Set("grammarTriggers", triggers);
  result.Set("preservedTokens", StringArray(env, params.preserved_tokens));
  result.Set("toolFormat", tool_format);
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
  std::string generation_prompt = OptionalString(prompt, "generationPrompt");
  std::string parser = OptionalString(prompt, "parser");
  const bool tool_calls = info.Length() > 3 && info[3].ToBoolean();
  SilenceCommonLog();
  common_chat_msg message;
  std::string problem;
  try {
    common_chat_parser_params params;
    params.format = static_cast<common_chat_format>(format);
    params.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;
    params.generation_prompt = generation_prompt;
    params.parse_tool_calls = tool_calls;
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
  Napi::Array calls = Napi::Array::New(env, message.tool_calls.size());
  for (size_t i = 0; i < message.tool_calls.size(); i++) {
    Napi::Object call = Napi::Object::New(env);
    call.Set("name", message.tool_calls[i].name);
    call.Set("arguments", message.tool_calls[i].arguments);
    call.Set("id", message.tool_calls[i].id);
    calls.Set(static_cast<uint32_t>(i), call);
  }
  result.Set("toolCalls", calls);
  return result;
}

}  // namespace cuda_llama
