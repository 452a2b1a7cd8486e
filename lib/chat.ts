/**
 * Chat prompts as each model's own template renders them: option validation, the native call into
 * llama.cpp's chat templates (common_chat_templates_apply: its Jinja engine, or its built-in C++
 * rendering for a built-in name) and the split of a reply into reasoning and answer (common's
 * chat parser). The rendered prompt is tokenized once, by generate(), with BOS added as the model
 * wants and special tokens parsed; common already drops a BOS the template writes itself when
 * the tokenizer adds one, so the prompt starts with exactly one BOS either way.
 */
import { CudaLlamaError, ErrorCode } from './errors.js';
import type { GenerateResult } from './generation.js';
import type { GenerateOptions } from './options.js';
import type { NativeChatOptions, NativeChatPrompt, NativeModel } from './binding/native.js';
import { expectObject, expectString, optionalBoolean, rangeError, rejectUnknownKeys, typeError } from './validate.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}

export interface ChatTemplateOptions {
  /**
   * Jinja template text, rendered by llama.cpp's Jinja engine, or the name of one of llama.cpp's
   * built-in templates ('chatml', 'llama3', 'gemma', ...: llama_chat_builtin_templates), rendered
   * by its C++ implementation of that family. Default: the model's own `tokenizer.chat_template`
   * (its `tool_use` variant when that is all it has), through the Jinja engine.
   */
  template?: string;
  /** End with the opening of the assistant's turn, ready for generation (the template's `add_generation_prompt`). Default true. */
  addGenerationPrompt?: boolean;
  /**
   * The template's `enable_thinking`: false asks a reasoning model for an answer without a thinking
   * block; templates that do not read it ignore it. Default true (llama.cpp's default).
   */
  enableThinking?: boolean;
  /**
   * More variables for the template, as llama-server's `chat_template_kwargs`: any JSON value, e.g.
   * `{ reasoning_effort: 'low' }` for gpt-oss. The variables llama.cpp sets itself cannot be replaced.
   */
  templateVariables?: Record<string, unknown>;
}

/** chat() and chatStream() options: generation options plus the template's. */
export interface ChatOptions extends GenerateOptions, ChatTemplateOptions {}

/** What chat() returns: a GenerateResult whose `text` is the answer, with the reasoning apart. */
export interface ChatResult extends GenerateResult {
  /** The reasoning (thinking) block the model wrote before its answer, without its tags; '' if none. */
  reasoning: string;
  /** The generated text as it came, reasoning and tags included (GenerateResult.text of the same generation). */
  rawText: string;
  /** The rendered prompt that was tokenized (what applyChatTemplate() returns for the same messages). */
  prompt: string;
  /**
   * Set when common's chat parser could not split the reply (a reply that does not follow the
   * template's format): then `text` is `rawText` and `reasoning` is ''.
   */
  parseError?: string;
}

/** chatStream(): the raw text pieces (reasoning included, as generated); `result` is the parsed ChatResult. */
export interface ChatStream extends AsyncIterable<string> {
  result: Promise<ChatResult>;
}

const templateKeys = ['template', 'addGenerationPrompt', 'enableThinking', 'templateVariables'] as const;
const templateHints = { addAssistant: 'use addGenerationPrompt', chatTemplateKwargs: 'use templateVariables' };

/** Variables common sets itself; replacing them would render something other than the conversation. */
const reservedVariables: Record<string, string> = {
  messages: 'pass the conversation as messages',
  add_generation_prompt: 'use options.addGenerationPrompt',
  enable_thinking: 'use options.enableThinking',
  bos_token: "it is the model's own BOS token",
  eos_token: "it is the model's own EOS token",
  tools: 'tools are not supported yet',
};

export interface ValidChatTemplateOptions {
  template: string | null;
  native: NativeChatOptions;
}

export function validateMessages(messages: unknown): ChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw typeError('messages', 'a non-empty array of { role, content }', messages);
  return messages.map((m: unknown, i) => {
    if (!m || typeof m !== 'object') throw typeError(`messages[${i}]`, 'an object { role, content }', m);
    const { role, content } = m as Record<string, unknown>;
    return {
      role: expectString(`messages[${i}].role`, role, { allowEmpty: false }),
      content: expectString(`messages[${i}].content`, content),
    };
  });
}

function validateVariables(input: unknown): Record<string, string> | undefined {
  if (input === undefined) return undefined;
  const variables = expectObject('options.templateVariables', input);
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(variables)) {
    const name = `options.templateVariables.${key}`;
    if (reservedVariables[key]) throw rangeError(name, 'a variable llama.cpp does not set itself', value, reservedVariables[key]);
    let json: string | undefined;
    try {
      json = JSON.stringify(value);
    } catch {
      json = undefined; // a BigInt or a cycle: reported below like any value JSON cannot hold
    }
    if (json === undefined) throw typeError(name, 'a JSON value (string, number, boolean, null, array or plain object)', value);
    out[key] = json;
  }
  return out;
}

/** Validates the template options among `options`, which may hold other (generation) options too. */
export function validateChatTemplateOptions(options: Record<string, unknown>): ValidChatTemplateOptions {
  const template = options.template === undefined ? null : expectString('options.template', options.template, { allowEmpty: false });
  const native: NativeChatOptions = {};
  const addGenerationPrompt = optionalBoolean('options.addGenerationPrompt', options.addGenerationPrompt);
  if (addGenerationPrompt !== undefined) native.addGenerationPrompt = addGenerationPrompt;
  const enableThinking = optionalBoolean('options.enableThinking', options.enableThinking);
  if (enableThinking !== undefined) native.enableThinking = enableThinking;
  const variables = validateVariables(options.templateVariables);
  if (variables !== undefined) native.variables = variables;
  return { template, native };
}

/** applyChatTemplate()'s options: only the template's. */
export function validateTemplateOnlyOptions(input: unknown): ValidChatTemplateOptions {
  const options = expectObject('options', input);
  rejectUnknownKeys('options', options, templateKeys, templateHints);
  return validateChatTemplateOptions(options);
}

/** chat()'s options: the template's, and the rest for generate() (which validates those). */
export function splitChatOptions(input: unknown): { template: ValidChatTemplateOptions; generate: GenerateOptions } {
  const options = expectObject('options', input);
  for (const [key, hint] of Object.entries(templateHints)) {
    if (key in options) rejectUnknownKeys('options', { [key]: options[key] }, templateKeys, { [key]: hint });
  }
  const generate: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(options)) if (!(templateKeys as readonly string[]).includes(key)) generate[key] = value;
  return { template: validateChatTemplateOptions(options), generate: generate as GenerateOptions };
}

/** Renders through llama.cpp (native/chat_templates.cc); `path` names the model in errors. */
export function renderChat(
  native: NativeModel,
  messages: ChatMessage[],
  options: ValidChatTemplateOptions,
  path: string,
): NativeChatPrompt {
  const rendered = native.applyChatTemplate(options.template, messages, options.native);
  if (rendered === null) {
    throw new CudaLlamaError(ErrorCode.NO_CHAT_TEMPLATE, `${path} has no chat template (tokenizer.chat_template)`, {
      remedy:
        "pass options.template: Jinja template text, or a llama.cpp built-in name such as 'chatml' or 'llama3'; or format the prompt yourself and call generate()",
    });
  }
  return rendered;
}

/** The template's own stop strings (common's additional_stops) after the caller's. */
export function withTemplateStops(options: GenerateOptions, rendered: NativeChatPrompt): GenerateOptions {
  if (rendered.additionalStops.length === 0) return options;
  const { stop } = options;
  if (stop === undefined) return { ...options, stop: rendered.additionalStops };
  if (typeof stop === 'string') return { ...options, stop: [stop, ...rendered.additionalStops] };
  // Anything else is left for generate()'s validation to name.
  return Array.isArray(stop) ? { ...options, stop: [...stop, ...rendered.additionalStops] } : options;
}

/** Splits a finished generation into answer and reasoning with the parser the template came with. */
export function chatResult(native: NativeModel, rendered: NativeChatPrompt, result: GenerateResult): ChatResult {
  // A reply cut short (maxTokens, abort, a full context) may stop inside its thinking block.
  const partial = result.stopReason !== 'eos' && result.stopReason !== 'stop';
  try {
    const { content, reasoning } = native.parseChatOutput(result.text, rendered, partial);
    return { ...result, text: content, reasoning, rawText: result.text, prompt: rendered.prompt };
  } catch (error) {
    const parseError = error instanceof Error ? error.message : String(error);
    return { ...result, reasoning: '', rawText: result.text, prompt: rendered.prompt, parseError };
  }
}
