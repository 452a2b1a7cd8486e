#include "grammar.h"

#include <exception>
#include <string>

#include "common.h"
#include "json-schema-to-grammar.h"  // llama-common
#include "llama_adapter.h"
#include "model.h"

namespace cuda_llama {

Napi::Value GrammarProblemJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Model* model = UnwrapTagged<Model>(info[0], kModelTag, "Model");
  if (info.Length() < 3 || !info[1].IsString() || !info[2].IsString()) {
    throw Napi::TypeError::New(env, "grammarProblem(model, text: string, root: string)");
  }
  const std::string problem =
      GrammarProblem(llama_model_get_vocab(model->Get(env)), info[1].As<Napi::String>(), info[2].As<Napi::String>());
  if (problem.empty()) return env.Null();
  return Napi::String::New(env, problem);
}

namespace {

// Replaces `from` by `to` in the rule `name` of a GBNF text (its line), where it is.
void ReplaceInRule(std::string& grammar, const std::string& name, const std::string& from, const std::string& to) {
  const std::string head = name + " ::= ";
  size_t line = grammar.compare(0, head.size(), head) == 0 ? 0 : grammar.find("\n" + head);
  if (line == std::string::npos) return;
  const size_t end = grammar.find('\n', line + 1);
  const size_t at = grammar.find(from, line);
  if (at != std::string::npos && (end == std::string::npos || at < end)) grammar.replace(at, from.size(), to);
}

void ReplaceAll(std::string& grammar, const std::string& from, const std::string& to) {
  for (size_t at = grammar.find(from); at != std::string::npos; at = grammar.find(from, at + to.size())) {
    grammar.replace(at, from.size(), to);
  }
}

}  // namespace

std::string RepairGrammar(std::string grammar) {
  // common's texts at our pin (common/json-schema-to-grammar.cpp PRIMITIVE_RULES, and
  // common/peg-parser.cpp's string parser); test/native/grammar.test.ts checks each repair happens.
  ReplaceInRule(grammar, "number", "([eE] [-+]? integral-part)?", "([eE] [-+]? [0-9]{1,2})?");
  ReplaceInRule(grammar, "json-number", "((\"e\" | \"E\") [+-]? [0-9]+)?", "((\"e\" | \"E\") [+-]? [0-9]{1,2})?");
  ReplaceInRule(grammar, "char", "\"u\" [0-9a-fA-F]{4})",
                "\"u\" ([0-9a-cA-Ce-fE-F] [0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2}))");
  ReplaceAll(grammar, R"(( [^"\\] | "\\" ( ["\\/ bfnrt] | "u" [0-9a-fA-F]{4} ) )*)",
             R"(( [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )*)");
  return grammar;
}

Napi::Value JsonSchemaToGrammar(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString())
    throw Napi::TypeError::New(env, "jsonSchemaToGrammar(schemaJson: string)");
  const std::string text = info[0].As<Napi::String>();
  std::string grammar;
  std::string problem;
  try {
    grammar = RepairGrammar(json_schema_to_grammar(common_json::parse(text)));
  } catch (const std::exception& e) {
    problem = e.what();
  } catch (...) {
    problem = "a non-standard exception";
  }
  if (!problem.empty()) throw MakeError(env, code::kJsonSchema, problem);
  return Napi::String::New(env, grammar);
}

}  // namespace cuda_llama
