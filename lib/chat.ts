/**
 * Chat prompts as each model's own template renders them, and replies read back: option and
 * conversation validation, the native call into llama.cpp's chat layer (common_chat_templates_apply:
 * its Jinja engine, or its built-in C++ rendering for a built-in name), which also yields the
 * grammar for tool calls and response formats, and the split of a reply into reasoning, answer and
 * tool calls (common's chat parser). The rendered prompt is tokenized once, by generate(), with BOS
 * added as the model wants and special tokens parsed; common already drops a BOS the template
 * writes itself when the tokenizer adds one, so the prompt starts with exactly one BOS either way.
 *
 * Without options the rendering is llama-server's default: `enable_thinking` on where the template
 * has a thinking switch (common_chat_templates_support_enable_thinking), `preserve_reasoning` on.
 */
import { CudaLlamaError, ErrorCode } from './errors.js';
import type { GenerateResult, StopReason } from './generation.js';
import type { TokenLogprob } from './logprobs.js';
import type { GenerateOptions } from './options.js';
import type {
  NativeAddon,
  NativeChatMessage,
  NativeChatOptions,
  NativeChatPrompt,
  NativeGrammar,
  NativeModel,
  NativeSamplerParams,
} from './binding/native.js';
import { checkedGrammar, parseJsonOutput, schemaGrammar } from './structured/constrain.js';
import { checkJsonSchema, type JsonSchema } from './structured/json-schema.js';
import {
  checkToolCall,
  genericEnvelopeSchema,
  genericSystemPrompt,
  newToolCallId,
  parseGenericReply,
  validateToolChoice,
  validateTools,
  type ResultToolCall,
  type Tool,
  type ToolCall,
  type ToolChoice,
  type ValidTool,
} from './tools.js';
import { expectObject, expectString, optionalBoolean, optionalInteger, rangeError, rejectUnknownKeys, typeError } from './validate.js';

export type { ResultToolCall, Tool, ToolCall, ToolChoice, ToolDefinition } from './tools.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | (string & {});
  /** The text ('' for an assistant message that only calls tools). */
  content: string;
  /** assistant: the reasoning it wrote before its answer (templates that keep earlier reasoning render it). */
  reasoning?: string;
  /** assistant: the tools it called (a result's `toolCalls` as they are); the `tool` messages after it hold the results. */
  toolCalls?: (Omit<ToolCall, 'arguments'> & { arguments: string | Record<string, unknown>; parsed?: unknown })[];
  /** tool: the id of the call this message is the result of. */
  toolCallId?: string;
  /** tool: the function's name, for templates that render it. */
  name?: string;
}

/** The reply's format: free text (default), any JSON object, or JSON matching a schema. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object'; schema?: JsonSchema }
  | { type: 'json_schema'; schema: JsonSchema; name?: string; strict?: boolean };

/** Thinking of reasoning models, for templates with a thinking switch. */
export interface ReasoningOptions {
  /** The template's `enable_thinking`. Default: on where the template has the switch (llama-server's default). */
  enabled?: boolean;
  /** At most this many tokens of reasoning; then `budgetMessage` and the end tag are written for the model, which answers. Default: no limit. */
  budget?: number;
  /** Written before the end tag when the budget runs out. Default none. */
  budgetMessage?: string;
}

export interface ChatTemplateOptions {
  /**
   * Jinja template text, rendered by llama.cpp's Jinja engine, or the name of one of llama.cpp's
   * built-in templates ('chatml', 'llama3', 'gemma', ...: llama_chat_builtin_templates), rendered
   * by its C++ implementation of that family. Default: the model's own `tokenizer.chat_template`
   * (its `tool_use` variant when tools are given and it has one), through the Jinja engine.
   */
  template?: string;
  /** End with the opening of the assistant's turn, ready for generation (the template's `add_generation_prompt`). Default true. */
  addGenerationPrompt?: boolean;
  /** Thinking on or off and its token budget (`enable_thinking`; llama-server's reasoning budget). */
  reasoning?: ReasoningOptions;
  /**
   * More variables for the template, as llama-server's `chat_template_kwargs`: any JSON value, e.g.
   * `{ reasoning_effort: 'low' }` for gpt-oss. The variables llama.cpp sets itself cannot be
   * replaced. Default `{ preserve_reasoning: true }` (llama-server's).
   */
  chatTemplateKwargs?: Record<string, unknown>;
  /** Functions the model may call (OpenAI's function tools). */
  tools?: Tool[];
  /** Which calls the reply must make. Default 'auto' (with tools). */
  toolChoice?: ToolChoice;
  /** More than one call in a reply. Default true. */
  parallelToolCalls?: boolean;
  /** The reply's format; JSON formats are held to by a grammar and parsed into the result's `parsed`. */
  responseFormat?: ResponseFormat;
}

/** chat() and chatStream() options: generation options plus the template's (jsonSchema is responseFormat here). */
export interface ChatOptions extends Omit<GenerateOptions, 'jsonSchema'>, ChatTemplateOptions {}

/** What chat() returns: a GenerateResult whose `text` is the answer, with the reasoning and tool calls apart. */
export interface ChatResult extends Omit<GenerateResult, 'stopReason' | 'choices'> {
  /** 'toolCalls' when the reply calls tools; otherwise the generation's stop reason. */
  stopReason: StopReason | 'toolCalls';
  /** The reasoning (thinking) block the model wrote before its answer, without its tags; '' if none. */
  reasoning: string;
  /** The tool calls of the reply, in order ([] for none): their arguments parse and match the tool's parameters. */
  toolCalls: ResultToolCall[];
  /**
   * Calls the reply made that are not valid calls (arguments that are not JSON, or do not match the
   * parameters): possible only with 'auto' on a template whose calls have no start marker for the
   * grammar to trigger on, where nothing held the model to the parameters.
   */
  toolCallErrors?: string[];
  /** The generated text as it came, reasoning and tags included (GenerateResult.text of the same generation). */
  rawText: string;
  /** The rendered prompt that was tokenized (what applyChatTemplate() returns for the same messages). */
  prompt: string;
  /**
   * Set when the reply could not be read as the template's format (common's chat parser refused
   * it: then `text` is `rawText`), or with a JSON response format, when it is not a complete value
   * matching the schema (cut short by maxTokens).
   */
  parseError?: string;
  /** With `n` > 1: every completion, the first of which is this result. */
  choices?: ChatResult[];
}

/** One step of a chat stream: text to append to the answer or the reasoning, or part of a tool call. */
export interface ChatDelta {
  /** Which of the n completions (0 unless n > 1). */
  choice: number;
  /** Tokens generated since the previous delta of this completion. */
  tokens: number;
  /** The prompt's length in tokens (the result's promptTokens). */
  promptTokens: number;
  /** Answer text to append. */
  content?: string;
  /** Reasoning text to append. */
  reasoning?: string;
  /** A tool call's next part: first its index, id and name, then fragments of its arguments' JSON text. */
  toolCall?: { index: number; id?: string; name?: string; arguments?: string };
  /** With `logprobs`: the tokens generated since the previous delta of this completion. */
  logprobs?: TokenLogprob[];
}

/** chatStream(): deltas of the reply as it is generated; `result` is the parsed ChatResult. */
export interface ChatStream extends AsyncIterable<ChatDelta> {
  result: Promise<ChatResult>;
}

const templateKeys = [
  'template',
  'addGenerationPrompt',
  'reasoning',
  'chatTemplateKwargs',
  'tools',
  'toolChoice',
  'parallelToolCalls',
  'responseFormat',
] as const;
const templateHints: Record<string, string> = {
  addAssistant: 'use addGenerationPrompt',
  templateVariables: 'use chatTemplateKwargs (renamed in 0.2)',
  enableThinking: 'use reasoning: { enabled } (renamed in 0.2)',
  tool_choice: 'use toolChoice',
  response_format: 'use responseFormat',
  jsonSchema: "use responseFormat: { type: 'json_schema', schema }",
};

/** Variables common sets itself; replacing them would render something other than the conversation. */
const reservedVariables: Record<string, string> = {
  messages: 'pass the conversation as messages',
  add_generation_prompt: 'use options.addGenerationPrompt',
  enable_thinking: 'use options.reasoning.enabled',
  bos_token: "it is the model's own BOS token",
  eos_token: "it is the model's own EOS token",
  tools: 'use options.tools',
};

export interface ValidChatTemplateOptions {
  template: string | null;
  addGenerationPrompt?: boolean;
  reasoning: ReasoningOptions;
  /** chat_template_kwargs, each as JSON text; llama-server's default included. */
  variables: Record<string, string>;
  tools: ValidTool[];
  toolChoice: ToolChoice;
  parallelToolCalls: boolean;
  /** The JSON response format's schema. */
  schema?: JsonSchema;
}

/** The messages as common takes them; a tool result without its call, or arguments that are not JSON, is refused naming the field. */
export function validateMessages(messages: unknown): NativeChatMessage[] {
  if (!Array.isArray(messages) || messages.length === 0) throw typeError('messages', 'a non-empty array of { role, content }', messages);
  const calls = new Set<string>();
  return messages.map((m: unknown, i) => {
    const at = `messages[${i}]`;
    const message = expectObject(at, m);
    rejectUnknownKeys(at, message, ['role', 'content', 'reasoning', 'toolCalls', 'toolCallId', 'name'], {
      tool_calls: 'use toolCalls',
      tool_call_id: 'use toolCallId',
      reasoning_content: 'use reasoning',
    });
    const role = expectString(`${at}.role`, message.role, { allowEmpty: false });
    const out: NativeChatMessage = { role, content: expectString(`${at}.content`, message.content) };
    if (message.reasoning !== undefined) out.reasoning = expectString(`${at}.reasoning`, message.reasoning);
    if (message.toolCalls !== undefined) {
      if (role !== 'assistant') throw rangeError(`${at}.toolCalls`, "on an 'assistant' message only", role);
      if (!Array.isArray(message.toolCalls)) throw typeError(`${at}.toolCalls`, 'an array of { id, name, arguments }', message.toolCalls);
      out.toolCalls = message.toolCalls.map((c: unknown, j) => {
        const where = `${at}.toolCalls[${j}]`;
        const call = expectObject(where, c);
        // `parsed` too: a result's calls can be sent back as they are (it is derived from arguments).
        rejectUnknownKeys(where, call, ['id', 'name', 'arguments', 'parsed']);
        const id = expectString(`${where}.id`, call.id, { allowEmpty: false });
        const name = expectString(`${where}.name`, call.name, { allowEmpty: false });
        let args: string;
        if (typeof call.arguments === 'string') {
          try {
            JSON.parse(call.arguments);
          } catch (error) {
            throw rangeError(`${where}.arguments`, 'JSON text (an object)', call.arguments, (error as Error).message);
          }
          args = call.arguments;
        } else if (call.arguments !== null && typeof call.arguments === 'object' && !Array.isArray(call.arguments)) {
          args = JSON.stringify(call.arguments);
        } else {
          throw typeError(`${where}.arguments`, 'JSON text or an object', call.arguments);
        }
        calls.add(id);
        return { id, name, arguments: args };
      });
    }
    if (message.toolCallId !== undefined || role === 'tool') {
      if (role !== 'tool') throw rangeError(`${at}.toolCallId`, "on a 'tool' message only", role);
      const id = expectString(`${at}.toolCallId`, message.toolCallId, { allowEmpty: false });
      if (!calls.has(id)) throw rangeError(`${at}.toolCallId`, 'the id of a tool call made by an earlier assistant message', id);
      out.toolCallId = id;
    }
    if (message.name !== undefined) {
      // Chat templates render a name only for tool results; dropped elsewhere, it would change the conversation.
      if (role !== 'tool') throw rangeError(`${at}.name`, "on a 'tool' message only", role);
      out.toolName = expectString(`${at}.name`, message.name);
    }
    return out;
  });
}

function validateVariables(input: unknown): Record<string, string> {
  const out: Record<string, string> = { preserve_reasoning: 'true' }; // llama-server's default
  if (input === undefined) return out;
  const variables = expectObject('options.chatTemplateKwargs', input);
  for (const [key, value] of Object.entries(variables)) {
    const name = `options.chatTemplateKwargs.${key}`;
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

function validateReasoning(input: unknown): ReasoningOptions {
  if (input === undefined) return {};
  const reasoning = expectObject('options.reasoning', input);
  rejectUnknownKeys('options.reasoning', reasoning, ['enabled', 'budget', 'budgetMessage']);
  const out: ReasoningOptions = {};
  const enabled = optionalBoolean('options.reasoning.enabled', reasoning.enabled);
  if (enabled !== undefined) out.enabled = enabled;
  const budget = optionalInteger('options.reasoning.budget', reasoning.budget, 0, 2 ** 31 - 1);
  if (budget !== undefined) out.budget = budget;
  if (reasoning.budgetMessage !== undefined) out.budgetMessage = expectString('options.reasoning.budgetMessage', reasoning.budgetMessage);
  return out;
}

function validateResponseFormat(input: unknown): JsonSchema | undefined {
  if (input === undefined) return undefined;
  const format = expectObject('options.responseFormat', input);
  if (format.type === 'text') {
    rejectUnknownKeys('options.responseFormat', format, ['type']);
    return undefined;
  }
  if (format.type === 'json_object') {
    rejectUnknownKeys('options.responseFormat', format, ['type', 'schema']);
    return format.schema === undefined ? { type: 'object' } : checkJsonSchema(format.schema, 'options.responseFormat.schema');
  }
  if (format.type === 'json_schema') {
    rejectUnknownKeys('options.responseFormat', format, ['type', 'schema', 'name', 'strict'], { json_schema: 'put the schema in schema' });
    optionalBoolean('options.responseFormat.strict', format.strict); // always enforced
    if (format.name !== undefined) expectString('options.responseFormat.name', format.name);
    if (format.schema === undefined) throw typeError('options.responseFormat.schema', 'a JSON Schema object', undefined);
    return checkJsonSchema(format.schema, 'options.responseFormat.schema');
  }
  throw typeError('options.responseFormat.type', "'text', 'json_object' or 'json_schema'", format.type);
}

/** Validates the template options among `options`, which may hold other (generation) options too. */
export function validateChatTemplateOptions(options: Record<string, unknown>): ValidChatTemplateOptions {
  const template = options.template === undefined ? null : expectString('options.template', options.template, { allowEmpty: false });
  const tools = options.tools === undefined ? [] : validateTools(options.tools);
  const toolChoice = validateToolChoice(options.toolChoice, tools);
  if (options.toolChoice !== undefined && tools.length === 0 && toolChoice !== 'none' && toolChoice !== 'auto') {
    throw rangeError('options.toolChoice', "'auto' or 'none' without options.tools", toolChoice);
  }
  const schema = validateResponseFormat(options.responseFormat);
  if (schema !== undefined && tools.length > 0 && toolChoice !== 'none') {
    throw rangeError(
      'options.responseFormat',
      "text with tools (llama.cpp's grammar holds the reply to tool calls or to a format, not both)",
      'a JSON format',
      "use toolChoice: 'none', or a tool whose parameters are the format",
    );
  }
  if (options.grammar !== undefined && ((tools.length > 0 && toolChoice !== 'none') || schema !== undefined)) {
    throw rangeError('options.grammar', 'not set together with tools or a JSON responseFormat (one grammar holds the reply)', 'a grammar');
  }
  const out: ValidChatTemplateOptions = {
    template,
    reasoning: validateReasoning(options.reasoning),
    variables: validateVariables(options.chatTemplateKwargs),
    tools,
    toolChoice,
    parallelToolCalls: optionalBoolean('options.parallelToolCalls', options.parallelToolCalls) ?? true,
  };
  const addGenerationPrompt = optionalBoolean('options.addGenerationPrompt', options.addGenerationPrompt);
  if (addGenerationPrompt !== undefined) out.addGenerationPrompt = addGenerationPrompt;
  if (schema !== undefined) out.schema = schema;
  return out;
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

/** How a reply is read back and what held it while it was generated. */
export interface ChatPlan {
  rendered: NativeChatPrompt;
  tools: ValidTool[];
  toolChoice: ToolChoice;
  /** The template has no tool-call format: the generic JSON envelope (lib/tools.ts) is used. */
  generic: boolean;
  /** common's parser reads tool calls (tools given, not 'none', the template's own format). */
  parseToolCalls: boolean;
  /** The JSON response format's schema. */
  schema?: JsonSchema;
  /** For the sampler: the grammar and the reasoning budget. */
  grammar?: NativeGrammar;
  reasoningBudget?: NativeSamplerParams['reasoningBudget'];
  /** Special tokens the format relies on (preserved tokens), written out in the reply's text. */
  renderSpecial: Int32Array;
}

/** What rendering needs from the model. */
export interface ChatHost {
  addon: NativeAddon;
  native: NativeModel;
  /** The model file, named in errors. */
  path: string;
  /** llama-server's default for enable_thinking with this template: whether it has a thinking switch. */
  thinkingDefault(template: string | null): boolean;
}

function render(host: ChatHost, messages: NativeChatMessage[], template: string | null, options: NativeChatOptions): NativeChatPrompt {
  const rendered = host.native.applyChatTemplate(template, messages, options);
  if (rendered === null) {
    throw new CudaLlamaError(ErrorCode.NO_CHAT_TEMPLATE, `${host.path} has no chat template (tokenizer.chat_template)`, {
      remedy:
        "pass options.template: Jinja template text, or a llama.cpp built-in name such as 'chatml' or 'llama3'; or format the prompt yourself and call generate()",
    });
  }
  return rendered;
}

/** The generic format's conversation: the tools in the system message, calls and results as JSON text. */
function genericMessages(messages: NativeChatMessage[], tools: ValidTool[], choice: ToolChoice): NativeChatMessage[] {
  const instructions = genericSystemPrompt(tools, choice);
  const out = messages.map((m): NativeChatMessage => {
    if (m.toolCalls !== undefined && m.toolCalls.length > 0) {
      const calls = m.toolCalls.map((c) => ({ name: c.name, arguments: JSON.parse(c.arguments) as unknown }));
      return { role: 'assistant', content: JSON.stringify({ tool_calls: calls }) };
    }
    if (m.role === 'tool') {
      return { role: 'user', content: JSON.stringify({ tool_response: { id: m.toolCallId, name: m.toolName, content: m.content } }) };
    }
    return { role: m.role, content: m.content, ...(m.reasoning !== undefined ? { reasoning: m.reasoning } : {}) };
  });
  if (out[0]?.role === 'system') return [{ role: 'system', content: `${out[0].content}\n\n${instructions}` }, ...out.slice(1)];
  return [{ role: 'system', content: instructions }, ...out];
}

/** Single-token texts among `texts`, as token ids (what llama-server writes out as text). */
function singleTokens(native: NativeModel, texts: string[]): number[] {
  return texts.flatMap((t) => {
    const ids = native.tokenize(t, false, true);
    return ids.length === 1 ? [ids[0]!] : [];
  });
}

/**
 * Renders the conversation and decides how the reply is held and read: the template's own tool
 * format (through common, 'required' and named choices enforced by native/chat_templates.cc), the
 * generic envelope for templates without one, or a JSON response format.
 */
export function planChat(host: ChatHost, messages: NativeChatMessage[], options: ValidChatTemplateOptions): ChatPlan {
  const { tools, toolChoice, template } = options;
  const native: NativeChatOptions = {
    enableThinking: options.reasoning.enabled ?? host.thinkingDefault(template),
    variables: options.variables,
  };
  if (options.addGenerationPrompt !== undefined) native.addGenerationPrompt = options.addGenerationPrompt;
  if (options.schema !== undefined) native.jsonSchema = JSON.stringify(options.schema);
  if (tools.length > 0) {
    native.tools = tools.map((t) => ({ name: t.name, description: t.description, parameters: JSON.stringify(t.parameters) }));
    native.toolChoice = typeof toolChoice === 'object' ? 'required' : toolChoice;
    native.parallelToolCalls = options.parallelToolCalls;
    if (typeof toolChoice === 'object') native.onlyTool = toolChoice.name;
  }
  let rendered = render(host, messages, template, native);
  const callsWanted = tools.length > 0 && toolChoice !== 'none';
  const generic = callsWanted && !rendered.toolFormat;
  if (generic) {
    // No tool-call format of its own: the tools go into the system message and the reply is the
    // generic JSON envelope, held by a grammar from its schema. Thinking is off: the envelope is
    // the whole reply.
    rendered = render(host, genericMessages(messages, tools, toolChoice), template, {
      ...native,
      enableThinking: false,
      tools: [],
      toolChoice: 'none',
      onlyTool: '',
    });
  }
  const plan: ChatPlan = {
    rendered,
    tools,
    toolChoice,
    generic,
    parseToolCalls: callsWanted && !generic,
    renderSpecial: Int32Array.from(singleTokens(host.native, rendered.preservedTokens)),
  };
  if (options.schema !== undefined) plan.schema = options.schema;
  if (generic) {
    plan.grammar = schemaGrammar(
      host,
      genericEnvelopeSchema(tools, toolChoice, options.parallelToolCalls),
      'user',
      "the tool calls' grammar",
    );
  } else if (rendered.grammar !== '') {
    const kind = callsWanted ? 'toolCalls' : 'output';
    const checked = checkedGrammar(host, rendered.grammar, kind, callsWanted ? "the tool calls' grammar" : "the response format's grammar");
    const preserved = new Set(plan.renderSpecial);
    plan.grammar = {
      ...checked,
      lazy: rendered.grammarLazy,
      // A trigger word that is one preserved token triggers on the token, as llama-server does.
      triggers: rendered.grammarTriggers.map((t) => {
        const ids = t.type === 'word' ? host.native.tokenize(t.value, false, true) : new Int32Array();
        return ids.length === 1 && preserved.has(ids[0]!) ? { type: 'token', value: t.value, token: ids[0]! } : t;
      }),
      generationPrompt: rendered.generationPrompt,
    };
  }
  if (rendered.thinkingEndTags.length > 0) {
    // As llama-server: the budget sampler knows the tags whenever the template has them (a lazy
    // grammar waits while the model thinks), and counts only with a budget.
    plan.reasoningBudget = {
      tokens: options.reasoning.budget ?? -1,
      startTag: rendered.thinkingStartTag,
      endTags: rendered.thinkingEndTags,
      message: options.reasoning.budgetMessage ?? '',
    };
  }
  return plan;
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

/** A reply read with the plan's parser: answer, reasoning and tool calls (unchecked). */
export interface ParsedChat {
  content: string;
  reasoning: string;
  calls: { name: string; arguments: string; id: string }[];
}

/** Reads `text` as the plan's format; throws ERR_CHAT_TEMPLATE (common's parser) when it does not fit. */
export function parseReply(native: NativeModel, plan: ChatPlan, text: string, partial: boolean): ParsedChat {
  const reply = native.parseChatOutput(text, plan.rendered, partial, plan.parseToolCalls);
  if (!plan.generic) return { content: reply.content, reasoning: reply.reasoning, calls: reply.toolCalls };
  if (partial) return { content: '', reasoning: reply.reasoning, calls: [] }; // the envelope is read once whole
  const generic = parseGenericReply(reply.content.trim());
  if (generic === undefined) throw new Error(`the reply is not the tool-call envelope: ${reply.content.slice(0, 80)}`);
  return { content: generic.content, reasoning: reply.reasoning, calls: generic.calls.map((c) => ({ ...c, id: '' })) };
}

/** Splits a finished generation into answer, reasoning and tool calls. `ids` are the calls' ids a stream already gave out. */
export function chatResult(native: NativeModel, plan: ChatPlan, result: GenerateResult, ids: string[] = []): ChatResult {
  // A reply cut short (maxTokens, abort, a full context) may stop inside its thinking block or a call.
  const partial = result.stopReason !== 'eos' && result.stopReason !== 'stop';
  const { choices: _choices, ...base } = result;
  const raw = { ...base, rawText: result.text, prompt: plan.rendered.prompt };
  let parsed: ParsedChat;
  try {
    parsed = parseReply(native, plan, result.text, partial);
  } catch (error) {
    const parseError = error instanceof Error ? error.message : String(error);
    return { ...raw, reasoning: '', toolCalls: [], parseError };
  }
  const toolCalls: ResultToolCall[] = [];
  const toolCallErrors: string[] = [];
  parsed.calls.forEach((call, i) => {
    const checked = checkToolCall(plan.tools, call, ids[i] ?? (call.id !== '' ? call.id : newToolCallId()));
    if ('call' in checked) toolCalls.push(checked.call);
    else if (!partial) toolCallErrors.push(checked.error);
  });
  const out: ChatResult = { ...raw, text: parsed.content, reasoning: parsed.reasoning, toolCalls };
  if (toolCallErrors.length > 0) out.toolCallErrors = toolCallErrors;
  if (toolCalls.length > 0 && !partial) out.stopReason = 'toolCalls';
  if (plan.schema !== undefined) {
    Object.assign(
      out,
      parseJsonOutput(parsed.content.trim(), result.stopReason, plan.schema, 'options.responseFormat.schema', 'the reply'),
    );
  }
  return out;
}

/** chatResult for each of a generation's completions (n), the first carrying them all as `choices`. */
export function chatResults(native: NativeModel, plan: ChatPlan, raw: GenerateResult): ChatResult {
  const results = (raw.choices ?? [raw]).map((choice) => chatResult(native, plan, choice));
  return results.length > 1 ? { ...results[0]!, choices: results } : results[0]!;
}
