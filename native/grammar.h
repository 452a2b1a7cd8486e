// Grammars from lib/ before any request uses them: llama.cpp's verdict on a GBNF text (its own
// parser, in the adapter) and common's JSON-schema conversion (common/json-schema-to-grammar.h).
// Both only read their inputs; neither touches a context. JS thread.
#pragma once

#include <napi.h>

#include <string>

namespace cuda_llama {

// JS: grammarProblem(model, text, root) -> string | null: what llama.cpp's GBNF parser refuses
// in `text` (a syntax error, an undefined rule, no `root` rule, left recursion), null when it
// accepts it.
Napi::Value GrammarProblemJs(const Napi::CallbackInfo& info);

// JS: jsonSchemaToGrammar(schemaJson) -> string: json_schema_to_grammar of the schema. Throws
// ERR_JSON_SCHEMA with common's reason (an unresolvable $ref, an invalid pattern, ...).
Napi::Value JsonSchemaToGrammar(const Napi::CallbackInfo& info);

// common's grammars, made to hold to JSON where they let invalid JSON or a value JSON Schema
// refuses through (llama.cpp at our pin):
//   - a number's exponent may have 16 digits, and 1e999 is Infinity to a JSON parser, which no
//     JSON Schema number matches: two digits at most (|x| < 1e116);
//   - a string character may be a \u escape of half a surrogate pair, which llama.cpp counts as
//     one character and a JSON Schema validator, once the pair is decoded, not: no surrogates, so
//     minLength/maxLength count as the validator does (characters above U+FFFF stay, written raw);
//   - the JSON strings of common's tool-call parser admit raw control characters and the escape
//     "\ " (a space in the escape class), neither of which is JSON.
// Any thread.
std::string RepairGrammar(std::string grammar);

}  // namespace cuda_llama
