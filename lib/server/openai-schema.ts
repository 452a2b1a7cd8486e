/**
 * The OpenAI request bodies we accept, as JSON schemas (Fastify validates them with Ajv before a
 * handler runs, without coercion: a string where a number belongs is a 400), and their translation
 * into the library's options. A field we do not implement is a 400 that names it, unless it is sent
 * with the value that means "off" (n: 1, logprobs: false, tools: []), which some clients always send.
 */
import type { ChatMessage } from '../chat.js';
import type { GenerateOptions } from '../options.js';
import { HttpError } from './errors.js';

const stringOrStrings = { anyOf: [{ type: 'string' }, { type: 'array', items: { type: 'string' } }, { type: 'null' }] };
const nullableNumber = { type: ['number', 'null'] };
const nullableInteger = { type: ['integer', 'null'] };

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
  stream: { type: ['boolean', 'null'] },
  stream_options: {
    type: ['object', 'null'],
    properties: { include_usage: { type: 'boolean' } },
    additionalProperties: false,
  },
  user: { type: 'string' },
  // Accepted only at the value that means "off" (checked by rejectUnsupported).
  n: nullableInteger,
  logprobs: {},
  top_logprobs: {},
  logit_bias: {},
  response_format: {},
  tools: {},
  tool_choice: {},
  parallel_tool_calls: {},
  functions: {},
  function_call: {},
  echo: {},
  best_of: {},
  suffix: {},
  // Accepted and without effect on generation: they are about OpenAI's storage and routing.
  store: { type: ['boolean', 'null'] },
  metadata: { type: ['object', 'null'] },
  service_tier: { type: ['string', 'null'] },
} as const;

const contentPart = {
  type: 'object',
  required: ['type'],
  properties: { type: { type: 'string' }, text: { type: 'string' } },
};

export const chatCompletionSchema = {
  type: 'object',
  required: ['model', 'messages'],
  additionalProperties: false,
  properties: {
    ...samplingProperties,
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role'],
        properties: {
          role: { type: 'string' },
          content: { anyOf: [{ type: 'string' }, { type: 'null' }, { type: 'array', items: contentPart }] },
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
  stream_options?: { include_usage?: boolean } | null;
  user?: string;
  [field: string]: unknown;
}

export interface ChatCompletionBody extends SamplingBody {
  messages: { role: string; content?: string | null | { type: string; text?: string }[] }[];
}

export interface CompletionBody extends SamplingBody {
  prompt: string | string[] | number[];
}

const isEmpty = (v: unknown) => v === undefined || v === null || v === false || (Array.isArray(v) && v.length === 0);
const isEmptyObject = (v: unknown) => isEmpty(v) || (typeof v === 'object' && v !== null && Object.keys(v).length === 0);

/** Each field we do not implement, with the values that mean it is not asked for. */
const unsupported: Record<string, { off: (value: unknown) => boolean; why: string }> = {
  n: { off: (v) => v === undefined || v === null || v === 1, why: 'one choice per request is supported; send n: 1 or several requests' },
  logprobs: { off: isEmpty, why: 'log probabilities are not implemented' },
  top_logprobs: { off: (v) => v === undefined || v === null || v === 0, why: 'log probabilities are not implemented' },
  logit_bias: { off: isEmptyObject, why: 'logit_bias is not implemented' },
  response_format: {
    off: (v) => v === undefined || v === null || (typeof v === 'object' && (v as { type?: unknown }).type === 'text'),
    why: 'structured output (json_object, json_schema) is not implemented yet',
  },
  tools: { off: isEmpty, why: 'tool calling is not implemented yet' },
  tool_choice: { off: (v) => v === undefined || v === null || v === 'none', why: 'tool calling is not implemented yet' },
  parallel_tool_calls: { off: (v) => v === undefined || v === null || typeof v === 'boolean', why: 'tool calling is not implemented yet' },
  functions: { off: isEmpty, why: 'function calling is not implemented' },
  function_call: { off: (v) => v === undefined || v === null || v === 'none', why: 'function calling is not implemented' },
  echo: { off: isEmpty, why: 'echo is not implemented' },
  best_of: { off: (v) => v === undefined || v === null || v === 1, why: 'best_of is not implemented' },
  suffix: { off: (v) => v === undefined || v === null || v === '', why: 'suffix (fill-in-the-middle) is not implemented' },
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
  if (maxTokens != null) options.maxTokens = maxTokens;
  if (body.temperature != null) options.temperature = body.temperature;
  if (body.top_p != null) options.topP = body.top_p;
  if (body.top_k != null) options.topK = body.top_k;
  if (body.min_p != null) options.minP = body.min_p;
  if (body.seed != null) options.seed = body.seed;
  if (body.presence_penalty != null) options.presencePenalty = body.presence_penalty;
  if (body.frequency_penalty != null) options.frequencyPenalty = body.frequency_penalty;
  if (body.stop != null && !(Array.isArray(body.stop) && body.stop.length === 0)) options.stop = body.stop;
  return options;
}

/** OpenAI messages as the chat template takes them: text content only. */
export function chatMessages(body: ChatCompletionBody): ChatMessage[] {
  return body.messages.map((message, i) => {
    if (message.role === 'tool' || message.role === 'function') {
      throw new HttpError(400, `messages[${i}].role '${message.role}': tool calling is not implemented yet`, {
        param: `messages[${i}].role`,
        code: 'unsupported_field',
      });
    }
    // `name` too: chat templates have no place for it, and dropping it would change the conversation.
    const extra = Object.keys(message).filter((k) => k !== 'role' && k !== 'content');
    if (extra.length > 0) {
      throw new HttpError(400, `messages[${i}] has unsupported field${extra.length > 1 ? 's' : ''} ${extra.join(', ')}`, {
        param: `messages[${i}].${extra[0]}`,
        code: 'unsupported_field',
      });
    }
    const { content } = message;
    let text: string;
    if (content === undefined || content === null) text = '';
    else if (typeof content === 'string') text = content;
    else {
      text = content
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
    // OpenAI's newer name for the system role; chat templates know 'system'.
    return { role: message.role === 'developer' ? 'system' : message.role, content: text };
  });
}
