/**
 * The OpenAI request bodies we accept, as JSON schemas (Fastify validates them with Ajv before a
 * handler runs, without coercion: a string where a number belongs is a 400), and their translation
 * into the library's options. Besides OpenAI's fields, the extensions clients written for
 * llama-server and vLLM send (extra samplers, ignore_eos, min_tokens, chat_template_kwargs, ...)
 * are implemented; fields that cannot change the output (`store`, `metadata`, `user`, ...) are
 * accepted and ignored; anything else is a 400 that names it.
 */
import type { ChatMessage, ChatOptions, ResponseFormat } from '../chat.js';
import type { GenerateOptions } from '../options.js';
import type { LogitBiasEntry } from '../sampling.js';
import type { Tool, ToolChoice } from '../tools.js';
import { HttpError } from './errors.js';

const stringOrStrings = { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }, { type: 'null' }] };
const nullableNumber = { type: ['number', 'null'] };
const nullableInteger = { type: ['integer', 'null'] };
const nullableBoolean = { type: ['boolean', 'null'] };
const nullableObject = { type: ['object', 'null'] };

/** Fields that shape sampling, shared by both endpoints. */
const samplingProperties = {
  model: { type: 'string' },
  max_tokens: { type: ['integer', 'null'], minimum: 1 },
  temperature: nullableNumber,
  top_p: nullableNumber,
  top_k: nullableInteger,
  min_p: nullableNumber,
  seed: nullableInteger,
  stop: stringOrStrings,
  presence_penalty: nullableNumber,
  frequency_penalty: nullableNumber,
  stream: nullableBoolean,
  stream_options: {
    type: ['object', 'null'],
    properties: { include_usage: { type: 'boolean' }, continuous_usage_stats: { type: 'boolean' } },
    additionalProperties: false,
  },
  n: { type: ['integer', 'null'], minimum: 1 },
  logit_bias: nullableObject,
  // llama-server's and vLLM's extensions.
  repeat_penalty: nullableNumber,
  repetition_penalty: nullableNumber,
  repeat_last_n: nullableInteger,
  typical_p: nullableNumber,
  top_n_sigma: nullableNumber,
  xtc_probability: nullableNumber,
  xtc_threshold: nullableNumber,
  dry_multiplier: nullableNumber,
  dry_base: nullableNumber,
  dry_allowed_length: nullableInteger,
  dry_penalty_last_n: nullableInteger,
  dry_sequence_breakers: { type: ['array', 'null'], items: { type: 'string' } },
  mirostat: nullableInteger,
  mirostat_tau: nullableNumber,
  mirostat_eta: nullableNumber,
  ignore_eos: nullableBoolean,
  min_tokens: nullableInteger,
  cache_prompt: nullableBoolean,
  include_stop_str_in_output: nullableBoolean,
  skip_special_tokens: nullableBoolean,
  grammar: { type: ['string', 'null'] },
  json_schema: nullableObject,
  // Accepted and without effect on generation: OpenAI's storage, routing and accounting.
  user: { type: ['string', 'null'] },
  store: nullableBoolean,
  metadata: nullableObject,
  service_tier: { type: ['string', 'null'] },
  prompt_cache_key: { type: ['string', 'null'] },
  safety_identifier: { type: ['string', 'null'] },
  // Refused unless "off" (rejectUnsupported names them).
  echo: {},
  best_of: {},
  suffix: {},
  functions: {},
  function_call: {},
  modalities: {},
  audio: {},
  prediction: {},
  web_search_options: {},
} as const;

const contentPart = {
  type: 'object',
  required: ['type'],
  properties: { type: { type: 'string' }, text: { type: 'string' } },
};

const toolCall = {
  type: 'object',
  required: ['id', 'function'],
  properties: {
    id: { type: 'string' },
    type: { type: 'string' },
    function: {
      type: 'object',
      required: ['name'],
      properties: { name: { type: 'string' }, arguments: { type: ['string', 'object'] } },
    },
  },
};

export const chatCompletionSchema = {
  type: 'object',
  required: ['model', 'messages'],
  additionalProperties: false,
  properties: {
    ...samplingProperties,
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
    logprobs: nullableBoolean,
    top_logprobs: nullableInteger,
    response_format: nullableObject,
    tools: { type: ['array', 'null'], items: { type: 'object' } },
    tool_choice: { anyOf: [{ type: 'string' }, { type: 'object' }, { type: 'null' }] },
    parallel_tool_calls: nullableBoolean,
    reasoning_effort: { type: ['string', 'null'] },
    chat_template_kwargs: nullableObject,
    reasoning_budget: nullableInteger,
    reasoning_budget_tokens: nullableInteger,
    thinking_budget_tokens: nullableInteger,
    reasoning_budget_message: { type: ['string', 'null'] },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role'],
        properties: {
          role: { type: 'string' },
          content: { anyOf: [{ type: 'string' }, { type: 'null' }, { type: 'array', items: contentPart }] },
          name: { type: 'string' },
          tool_calls: { type: ['array', 'null'], items: toolCall },
          tool_call_id: { type: 'string' },
          reasoning_content: { type: ['string', 'null'] },
        },
      },
    },
  },
} as const;

export const completionSchema = {
  type: 'object',
  required: ['model', 'prompt'],
  additionalProperties: false,
  properties: {
    ...samplingProperties,
    // The legacy API's logprobs: how many alternatives per token (0-5 at OpenAI, 20 here).
    logprobs: nullableInteger,
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', minItems: 1, maxItems: 1, items: { type: 'string' } },
        { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0 } },
      ],
    },
  },
} as const;

export const tokenizeSchema = {
  type: 'object',
  required: ['content'],
  additionalProperties: false,
  properties: { content: { type: 'string' }, add_special: { type: 'boolean' }, parse_special: { type: 'boolean' } },
} as const;

export const detokenizeSchema = {
  type: 'object',
  required: ['tokens'],
  additionalProperties: false,
  properties: { tokens: { type: 'array', items: { type: 'integer', minimum: 0 } }, special: { type: 'boolean' } },
} as const;

export interface SamplingBody {
  model: string;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean; continuous_usage_stats?: boolean } | null;
  n?: number | null;
  user?: string | null;
  [field: string]: unknown;
}

export interface ChatCompletionBody extends SamplingBody {
  messages: {
    role: string;
    content?: string | null | { type: string; text?: string }[];
    name?: string;
    tool_calls?: { id: string; type?: string; function: { name: string; arguments?: string | Record<string, unknown> } }[] | null;
    tool_call_id?: string;
    reasoning_content?: string | null;
  }[];
}

export interface CompletionBody extends SamplingBody {
  prompt: string | string[] | number[];
}

const isEmpty = (v: unknown) => v === undefined || v === null || v === false || (Array.isArray(v) && v.length === 0);

/** Each field we do not implement, with the values that mean it is not asked for. */
const unsupported: Record<string, { off: (value: unknown) => boolean; why: string }> = {
  functions: { off: isEmpty, why: 'the deprecated functions API is not implemented; use tools' },
  function_call: {
    off: (v) => v === undefined || v === null || v === 'none',
    why: 'the deprecated functions API is not implemented; use tool_choice',
  },
  echo: { off: isEmpty, why: 'echo is not implemented' },
  best_of: { off: (v) => v === undefined || v === null || v === 1, why: 'best_of is not implemented; use n' },
  suffix: { off: (v) => v === undefined || v === null || v === '', why: 'suffix (fill-in-the-middle) is not implemented' },
  modalities: { off: (v) => isEmpty(v) || (Array.isArray(v) && v.length === 1 && v[0] === 'text'), why: 'only text output is implemented' },
  audio: { off: isEmpty, why: 'audio output is not implemented' },
  prediction: { off: isEmpty, why: 'predicted outputs are not implemented' },
  web_search_options: { off: isEmpty, why: 'web search is not implemented' },
};

/** 400 naming every field of `body` that asks for something we do not do. */
export function rejectUnsupported(body: Record<string, unknown>): void {
  const fields = Object.keys(unsupported).filter((f) => f in body && !unsupported[f]!.off(body[f]));
  if (fields.length === 0) return;
  const reasons = fields.map((f) => `${f}: ${unsupported[f]!.why}`).join('; ');
  throw new HttpError(400, `unsupported field${fields.length > 1 ? 's' : ''} ${fields.join(', ')} (${reasons})`, {
    param: fields[0]!,
    code: 'unsupported_field',
  });
}

const invalid = (param: string, message: string) => new HttpError(400, message, { param, code: 'invalid_value' });

/** OpenAI's logit_bias (token id keys; llama-server also takes text keys, and false to ban). */
function logitBias(input: unknown): GenerateOptions['logitBias'] {
  if (input === undefined || input === null) return undefined;
  const entries: LogitBiasEntry[] = [];
  for (const [key, value] of Object.entries(input as Record<string, unknown>)) {
    const bias = value === false ? -Infinity : value;
    if (typeof bias !== 'number')
      throw invalid(`logit_bias.${key}`, `logit_bias.${key} must be a number from -100 to 100, or false to ban the token`);
    entries.push({ token: /^(0|[1-9][0-9]*)$/.test(key) ? Number(key) : key, bias });
  }
  return entries.length > 0 ? entries : undefined;
}

/** The library's options for a request's sampling fields (validated again, and named, by the library). */
export function generateOptions(body: SamplingBody): GenerateOptions {
  const options: GenerateOptions = {};
  const maxTokens = body.max_completion_tokens ?? body.max_tokens;
  if (body.max_completion_tokens != null && body.max_tokens != null && body.max_completion_tokens !== body.max_tokens) {
    throw new HttpError(
      400,
      `max_tokens (${body.max_tokens}) and max_completion_tokens (${body.max_completion_tokens}) differ; send one of them`,
      {
        param: 'max_tokens',
        code: 'invalid_value',
      },
    );
  }
  const b = body as Record<string, unknown>;
  const num = (field: string) => (b[field] === null || b[field] === undefined ? undefined : (b[field] as number));
  if (maxTokens != null) options.maxTokens = maxTokens;
  const set = <K extends keyof GenerateOptions>(key: K, value: GenerateOptions[K] | undefined) => {
    if (value !== undefined) options[key] = value;
  };
  set('temperature', num('temperature'));
  set('topP', num('top_p'));
  set('topK', num('top_k'));
  set('minP', num('min_p'));
  set('seed', num('seed'));
  set('presencePenalty', num('presence_penalty'));
  set('frequencyPenalty', num('frequency_penalty'));
  if (b.repeat_penalty != null && b.repetition_penalty != null && b.repeat_penalty !== b.repetition_penalty) {
    throw invalid('repeat_penalty', 'repeat_penalty and repetition_penalty differ; send one of them');
  }
  set('repeatPenalty', num('repeat_penalty') ?? num('repetition_penalty'));
  set('repeatLastN', num('repeat_last_n'));
  set('typicalP', num('typical_p'));
  const sigma = num('top_n_sigma');
  if (sigma !== undefined && sigma >= 0) options.topNSigma = sigma; // llama-server: negative is off
  if (num('xtc_probability') !== undefined)
    options.xtc = {
      probability: num('xtc_probability')!,
      ...(num('xtc_threshold') !== undefined ? { threshold: num('xtc_threshold')! } : {}),
    };
  if (num('dry_multiplier') !== undefined && num('dry_multiplier')! > 0) {
    const dry: NonNullable<GenerateOptions['dry']> = { multiplier: num('dry_multiplier')! };
    if (num('dry_base') !== undefined) dry.base = num('dry_base')!;
    if (num('dry_allowed_length') !== undefined) dry.allowedLength = num('dry_allowed_length')!;
    if (num('dry_penalty_last_n') !== undefined) dry.penaltyLastN = num('dry_penalty_last_n')!;
    if (Array.isArray(b.dry_sequence_breakers)) dry.sequenceBreakers = b.dry_sequence_breakers as string[];
    options.dry = dry;
  }
  const mirostat = num('mirostat');
  if (mirostat !== undefined && mirostat !== 0) {
    if (mirostat !== 1 && mirostat !== 2) throw invalid('mirostat', 'mirostat must be 0 (off), 1 or 2');
    options.mirostat = {
      version: mirostat,
      ...(num('mirostat_tau') !== undefined ? { tau: num('mirostat_tau')! } : {}),
      ...(num('mirostat_eta') !== undefined ? { eta: num('mirostat_eta')! } : {}),
    };
  }
  set('logitBias', logitBias(b.logit_bias));
  if (b.ignore_eos === true) options.ignoreEos = true;
  set('minTokens', num('min_tokens'));
  if (b.cache_prompt === false) options.cachePrompt = false;
  if (b.include_stop_str_in_output === true) options.includeStopString = true;
  if (b.skip_special_tokens === false) options.skipSpecialTokens = false;
  if (typeof b.grammar === 'string' && b.grammar !== '') options.grammar = b.grammar;
  if (b.n != null && b.n !== 1) options.n = b.n as number;
  if (body.stop != null && !(Array.isArray(body.stop) && body.stop.length === 0)) options.stop = body.stop;
  return options;
}

/** /v1/completions: its logprobs is a count of alternatives; json_schema is llama-server's extension. */
export function completionOptions(body: CompletionBody): GenerateOptions {
  const options = generateOptions(body);
  const b = body as Record<string, unknown>;
  if (typeof b.logprobs === 'number') {
    options.logprobs = true;
    options.topLogprobs = b.logprobs;
  }
  if (b.json_schema != null) options.jsonSchema = b.json_schema as Record<string, unknown>;
  return options;
}

const unsupportedKey = (param: string, message: string) => new HttpError(400, message, { param, code: 'unsupported_field' });

/** 400 naming the first key of `object` (at `at`) that is not `known`. */
function rejectKeys(at: string, object: Record<string, unknown>, known: readonly string[], context = ''): void {
  const extra = Object.keys(object).find((k) => !known.includes(k));
  if (extra !== undefined) {
    throw unsupportedKey(`${at}.${extra}`, `${at}.${extra} is not supported${context}; ${at} takes ${known.join(', ')}`);
  }
}

/**
 * OpenAI's response_format (and llama-server's json_object with a schema, and its top-level
 * json_schema). Every key is used or refused: a schema the client sent must not vanish. `description`
 * is accepted and unused: nothing renders it into the prompt.
 */
function responseFormat(body: Record<string, unknown>): ResponseFormat | undefined {
  const format = body.response_format as Record<string, unknown> | null | undefined;
  const topLevel = body.json_schema as Record<string, unknown> | null | undefined;
  // response_format text asks for no format, which leaves llama-server's json_schema in force, as there.
  if (format == null || format.type === 'text') {
    if (format != null) rejectKeys('response_format', format, ['type'], " with type 'text'");
    return topLevel != null ? { type: 'json_schema', schema: topLevel } : undefined;
  }
  if (topLevel != null && (format.type === 'json_object' || format.type === 'json_schema')) {
    throw invalid('json_schema', `json_schema and response_format ${String(format.type)} both give a format; send one of them`);
  }
  if (format.type === 'json_object') {
    rejectKeys('response_format', format, ['type', 'schema'], " with type 'json_object'");
    return format.schema !== undefined
      ? { type: 'json_object', schema: format.schema as Record<string, unknown> }
      : { type: 'json_object' };
  }
  if (format.type === 'json_schema') {
    rejectKeys('response_format', format, ['type', 'json_schema', 'schema'], " with type 'json_schema'");
    const wrapper = format.json_schema;
    if (wrapper === undefined || wrapper === null) {
      // llama-server's shorthand: the schema beside the type.
      if (format.schema === undefined || format.schema === null || typeof format.schema !== 'object') {
        throw invalid('response_format.json_schema.schema', 'response_format json_schema needs json_schema.schema, a JSON Schema object');
      }
      return { type: 'json_schema', schema: format.schema as Record<string, unknown> };
    }
    if (typeof wrapper !== 'object' || Array.isArray(wrapper)) {
      throw invalid('response_format.json_schema', 'response_format.json_schema must be an object: { name, schema, strict }');
    }
    const w = wrapper as Record<string, unknown>;
    rejectKeys('response_format.json_schema', w, ['name', 'schema', 'strict', 'description']);
    if (format.schema !== undefined) {
      throw invalid(
        'response_format.schema',
        'response_format.schema is set beside response_format.json_schema; send the schema once, in json_schema.schema',
      );
    }
    if (w.schema === undefined || w.schema === null || typeof w.schema !== 'object') {
      throw invalid('response_format.json_schema.schema', 'response_format json_schema needs json_schema.schema, a JSON Schema object');
    }
    // name and strict go to the library, which checks them (errors.ts names them json_schema.name and .strict).
    return {
      type: 'json_schema',
      schema: w.schema as Record<string, unknown>,
      ...(w.name != null ? { name: w.name as string } : {}),
      ...(w.strict != null ? { strict: w.strict as boolean } : {}),
    };
  }
  throw invalid(
    'response_format.type',
    `response_format.type must be 'text', 'json_object' or 'json_schema', got ${JSON.stringify(format.type)}`,
  );
}

/** OpenAI's tool_choice: a string, or { type: 'function', function: { name } }. */
function toolChoice(input: unknown): ToolChoice | undefined {
  if (input === undefined || input === null) return undefined;
  if (typeof input === 'string') {
    if (input === 'auto' || input === 'none' || input === 'required') return input;
    throw invalid(
      'tool_choice',
      `tool_choice must be 'auto', 'none', 'required' or { type: 'function', function: { name } }, got ${JSON.stringify(input)}`,
    );
  }
  const choice = input as { type?: unknown; function?: { name?: unknown } };
  if (choice.type !== 'function' || typeof choice.function?.name !== 'string') {
    throw invalid('tool_choice', "tool_choice as an object must be { type: 'function', function: { name } }");
  }
  return { name: choice.function.name };
}

/** The chat-only fields: tools, tool_choice, the response format and the reasoning controls. */
export function chatOptions(body: ChatCompletionBody): ChatOptions {
  const options: ChatOptions = { ...generateOptions(body) };
  const b = body as Record<string, unknown>;
  if (b.logprobs === true) {
    options.logprobs = true;
    if (typeof b.top_logprobs === 'number') options.topLogprobs = b.top_logprobs;
  } else if (b.top_logprobs != null && b.top_logprobs !== 0) {
    throw invalid('top_logprobs', 'top_logprobs needs logprobs: true');
  }
  const format = responseFormat(b);
  if (format !== undefined) options.responseFormat = format;
  if (Array.isArray(b.tools) && b.tools.length > 0) options.tools = b.tools as Tool[];
  const choice = toolChoice(b.tool_choice);
  if (choice !== undefined && (options.tools !== undefined || choice === 'none' || choice === 'auto')) options.toolChoice = choice;
  else if (choice !== undefined)
    throw invalid('tool_choice', `tool_choice ${JSON.stringify(b.tool_choice)} needs tools, but the request has none`);
  if (typeof b.parallel_tool_calls === 'boolean') options.parallelToolCalls = b.parallel_tool_calls;

  const kwargs = { ...((b.chat_template_kwargs as Record<string, unknown> | null) ?? {}) };
  const reasoning: NonNullable<ChatOptions['reasoning']> = {};
  // As llama-server: enable_thinking in chat_template_kwargs is the thinking switch.
  if ('enable_thinking' in kwargs) {
    if (typeof kwargs.enable_thinking !== 'boolean')
      throw invalid('chat_template_kwargs.enable_thinking', 'chat_template_kwargs.enable_thinking must be a boolean');
    reasoning.enabled = kwargs.enable_thinking;
    delete kwargs.enable_thinking;
  }
  const effort = b.reasoning_effort;
  if (typeof effort === 'string') {
    if (effort === 'none') reasoning.enabled = false;
    else kwargs.reasoning_effort = effort;
  }
  const budgets = (['reasoning_budget_tokens', 'reasoning_budget', 'thinking_budget_tokens'] as const).filter((k) => b[k] != null);
  if (budgets.length > 0) {
    const budget = b[budgets[0]!] as number;
    if (budgets.some((k) => b[k] !== budget)) throw invalid(budgets[0]!, `${budgets.join(' and ')} differ; send one of them`);
    if (budget >= 0) reasoning.budget = budget; // -1 is llama-server's "no budget"
  }
  if (typeof b.reasoning_budget_message === 'string') reasoning.budgetMessage = b.reasoning_budget_message;
  if (Object.keys(reasoning).length > 0) options.reasoning = reasoning;
  if (Object.keys(kwargs).length > 0) options.chatTemplateKwargs = kwargs;
  return options;
}

/** A message's content as text: a string, or text parts joined. */
function contentText(content: ChatCompletionBody['messages'][number]['content'], i: number): string {
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  return content
    .map((part, j) => {
      if (part.type !== 'text' || typeof part.text !== 'string') {
        throw new HttpError(400, `messages[${i}].content[${j}] of type '${part.type}': only text parts are supported`, {
          param: `messages[${i}].content[${j}].type`,
          code: 'unsupported_field',
        });
      }
      return part.text;
    })
    .join('');
}

/** OpenAI messages as the chat template takes them; the library checks the conversation (tool results after their calls). */
export function chatMessages(body: ChatCompletionBody): ChatMessage[] {
  return body.messages.map((message, i) => {
    // OpenAI's own replies carry `refusal: null`, and clients send them back as history.
    const extra = Object.keys(message).filter(
      (k) =>
        !['role', 'content', 'name', 'tool_calls', 'tool_call_id', 'reasoning_content'].includes(k) &&
        !(k === 'refusal' && (message as Record<string, unknown>).refusal === null),
    );
    if (extra.length > 0) {
      throw new HttpError(400, `messages[${i}] has unsupported field${extra.length > 1 ? 's' : ''} ${extra.join(', ')}`, {
        param: `messages[${i}].${extra[0]}`,
        code: 'unsupported_field',
      });
    }
    // OpenAI's newer name for the system role; chat templates know 'system'.
    const out: ChatMessage = { role: message.role === 'developer' ? 'system' : message.role, content: contentText(message.content, i) };
    if (typeof message.reasoning_content === 'string' && message.reasoning_content !== '') out.reasoning = message.reasoning_content;
    if (Array.isArray(message.tool_calls) && message.tool_calls.length > 0) {
      out.toolCalls = message.tool_calls.map((call, j) => {
        if (call.type !== undefined && call.type !== 'function') {
          throw invalid(`messages[${i}].tool_calls[${j}].type`, `messages[${i}].tool_calls[${j}].type must be 'function'`);
        }
        return { id: call.id, name: call.function.name, arguments: call.function.arguments ?? '{}' };
      });
    }
    if (message.tool_call_id !== undefined) out.toolCallId = message.tool_call_id;
    // Passed on for every role: the library takes it on tool results and refuses it, named, elsewhere
    // (no template renders it there, so dropping it silently would change what the client asked for).
    if (message.name !== undefined) out.name = message.name;
    return out;
  });
}
