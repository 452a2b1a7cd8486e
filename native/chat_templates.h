// Chat prompts through llama.cpp's own chat templates (common/chat.h in llama-common): the Jinja
// engine renders the model's tokenizer.chat_template, or a template text or built-in name given
// by lib/, and common's chat parser splits generated text into reasoning and content.
//
// common's Jinja engine reports every problem (a syntax error, an undefined filter, a template
// that raises) as a C++ exception; nothing from it may cross into N-API, so each entry point
// catches everything and throws ERR_CHAT_TEMPLATE instead. JS thread only.
#pragma once

#include <napi.h>

#include "llama.h"

namespace cuda_llama {

// JS: applyChatTemplate(template | null, messages, options) -> NativeChatPrompt | null.
// null: no template was given and the model has none (lib/ reports ERR_NO_CHAT_TEMPLATE).
Napi::Value ApplyChatTemplate(const Napi::CallbackInfo& info, const llama_model* model);

// JS: parseChatOutput(text, { format, generationPrompt, parser }, partial) -> { content, reasoning }.
// partial: the reply was cut short, so an unclosed block is not an error.
Napi::Value ParseChatOutput(const Napi::CallbackInfo& info);

}  // namespace cuda_llama
