/**
 * Errors as OpenAI clients read them: `{"error":{"message","type","param","code"}}` with an HTTP
 * status that says whether retrying can help. A client mistake is a 4xx (never a 500 that SDKs
 * retry); a CudaLlamaError keeps its stable code; 4xx responses carry `x-should-retry: false`,
 * the header the official SDKs honour.
 */
import { CudaLlamaError, ErrorCode } from '../errors.js';

export interface OpenAiErrorBody {
  error: {
    message: string;
    type: string;
    param: string | null;
    code: string | null;
    /** Extension: the prompt's token count, for a prompt over the context. */
    prompt_tokens?: number;
    /** Extension: the context window in tokens, for a prompt over the context. */
    context_size?: number;
  };
}

/** An error the server answers with: status, OpenAI body and extra headers. */
export class HttpError extends Error {
  readonly statusCode: number;
  readonly type: string;
  readonly param: string | null;
  readonly code: string | null;
  readonly headers: Record<string, string>;
  readonly extra: Partial<OpenAiErrorBody['error']>;

  constructor(
    statusCode: number,
    message: string,
    options: {
      type?: string;
      param?: string | null;
      code?: string | null;
      headers?: Record<string, string>;
      extra?: Partial<OpenAiErrorBody['error']>;
    } = {},
  ) {
    super(message);
    this.name = 'HttpError';
    this.statusCode = statusCode;
    this.type = options.type ?? typeForStatus(statusCode);
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
    this.extra = options.extra ?? {};
  }

  body(): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code, ...this.extra } };
  }
}

export function typeForStatus(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 501) return 'not_supported_error';
  if (status === 503) return 'unavailable_error';
  if (status === 504) return 'timeout_error';
  if (status >= 400 && status < 500) return 'invalid_request_error';
  return 'server_error';
}

/** What each code of the library means over HTTP: a request that cannot work (4xx) or the server (5xx). */
const statusByCode: Partial<Record<ErrorCode, number>> = {
  [ErrorCode.CONTEXT_FULL]: 400,
  [ErrorCode.NO_CHAT_TEMPLATE]: 400,
  [ErrorCode.CHAT_TEMPLATE]: 400,
  [ErrorCode.GRAMMAR]: 400,
  [ErrorCode.JSON_SCHEMA]: 400,
  [ErrorCode.EMBEDDINGS_ONLY]: 400,
  [ErrorCode.NO_EMBEDDINGS]: 400,
  [ErrorCode.TEXT_TOO_LONG]: 400,
  [ErrorCode.NO_RANKING_HEAD]: 400,
  [ErrorCode.DISPOSED]: 503,
  [ErrorCode.BUSY]: 503,
  [ErrorCode.INSUFFICIENT_MEMORY]: 503,
  // A single model's dead context: nothing on this server can answer until it is restarted (/health says failed).
  [ErrorCode.CONTEXT_FAILED]: 503,
};

/** Request fields by the library's option names, so that a refused value names what the client sent. */
const fieldByOption: Record<string, string> = {
  maxTokens: 'max_tokens',
  minTokens: 'min_tokens',
  temperature: 'temperature',
  topK: 'top_k',
  topP: 'top_p',
  minP: 'min_p',
  typicalP: 'typical_p',
  topNSigma: 'top_n_sigma',
  seed: 'seed',
  stop: 'stop',
  prompt: 'prompt',
  messages: 'messages',
  n: 'n',
  logprobs: 'logprobs',
  topLogprobs: 'top_logprobs',
  logitBias: 'logit_bias',
  repeatPenalty: 'repeat_penalty',
  repeatLastN: 'repeat_last_n',
  frequencyPenalty: 'frequency_penalty',
  presencePenalty: 'presence_penalty',
  tools: 'tools',
  toolChoice: 'tool_choice',
  parallelToolCalls: 'parallel_tool_calls',
  responseFormat: 'response_format',
  jsonSchema: 'json_schema',
  grammar: 'grammar',
  ignoreEos: 'ignore_eos',
  chatTemplateKwargs: 'chat_template_kwargs',
  // No `reasoning`: its switch comes from chat_template_kwargs.enable_thinking or reasoning_effort,
  // so only its budget fields (below) have a request field of their own.
  xtc: 'xtc_probability',
  dry: 'dry_multiplier',
  mirostat: 'mirostat',
};

/** Options the library nests that the request sends flat (options.xtc.threshold is xtc_threshold). */
const fieldByNestedOption: Record<string, string> = {
  'xtc.probability': 'xtc_probability',
  'xtc.threshold': 'xtc_threshold',
  'dry.multiplier': 'dry_multiplier',
  'dry.base': 'dry_base',
  'dry.allowedLength': 'dry_allowed_length',
  'dry.penaltyLastN': 'dry_penalty_last_n',
  'dry.sequenceBreakers': 'dry_sequence_breakers',
  'mirostat.tau': 'mirostat_tau',
  'mirostat.eta': 'mirostat_eta',
  'mirostat.version': 'mirostat',
  'reasoning.budget': 'reasoning_budget',
  'reasoning.budgetMessage': 'reasoning_budget_message',
  // The server takes only OpenAI's wrapped form, { type: 'function', function: { name } }.
  'toolChoice.name': 'tool_choice.function.name',
  'responseFormat.name': 'response_format.json_schema.name',
  'responseFormat.strict': 'response_format.json_schema.strict',
};

/** Inside a path: the request's names for the library's message and tool fields. */
const subfields: Record<string, string> = {
  toolCalls: 'tool_calls',
  toolCallId: 'tool_call_id',
  reasoning: 'reasoning_content',
  arguments: 'function.arguments',
  parameters: 'function.parameters',
  schema: 'json_schema.schema',
};

/** The request field a library message starts with ("options.tools[0].parameters ..." -> tools[0].function.parameters). */
function paramOf(message: string): string | null {
  const match = /^(?:options\.)?([A-Za-z_]\w*)((?:\[\d+\]|\.[A-Za-z_$]\w*)*)/.exec(message);
  if (!match) return null;
  let rest = match[2] ?? '';
  const key = /^\.([A-Za-z_$]\w*)/.exec(rest);
  const flat = key ? fieldByNestedOption[`${match[1]!}.${key[1]!}`] : undefined;
  if (flat !== undefined) rest = rest.slice(key![0].length);
  const name = flat ?? fieldByOption[match[1]!];
  if (name === undefined) return null;
  // The request's logit_bias is an object: the index into the list the server made of it means nothing to the client.
  if (name === 'logit_bias') return name;
  // A key after `.function` is already the request's: the library names OpenAI's wrapped tools
  // { type, function } as options.tools[0].function.parameters, not tools[0].function.function.parameters.
  rest = rest.replace(/(\.function)?\.([A-Za-z_$]\w*)/g, (_, fn: string | undefined, sub: string) =>
    fn !== undefined ? `${fn}.${sub}` : `.${subfields[sub] ?? sub}`,
  );
  return `${name}${rest}`;
}

/** Turns anything a route throws into the error the client gets. */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  if (error instanceof CudaLlamaError) {
    const status = statusByCode[error.code] ?? 500;
    const details = error.details ?? {};
    const extra: Partial<OpenAiErrorBody['error']> = {};
    if (error.code === ErrorCode.CONTEXT_FULL) {
      if (typeof details.promptTokens === 'number') extra.prompt_tokens = details.promptTokens;
      if (typeof details.contextSize === 'number') extra.context_size = details.contextSize;
    }
    const param = error.code === ErrorCode.CONTEXT_FULL ? 'messages' : paramOf(error.message);
    // A generation route on an embedding model: the remedy is another route, not the library's embed().
    const message =
      error.code === ErrorCode.EMBEDDINGS_ONLY
        ? `${error.message.split('\nRemedy:')[0]!}; send its texts to POST /v1/embeddings (a reranker's documents to POST /v1/rerank)`
        : error.message;
    return new HttpError(status, message, { code: error.code, param, extra, headers: status === 503 ? { 'retry-after': '1' } : {} });
  }
  // The library's argument checks (lib/validate.ts): the client sent a value it refuses.
  const code = (error as { code?: unknown } | null)?.code;
  if ((error instanceof TypeError || error instanceof RangeError) && (code === 'ERR_INVALID_ARG_TYPE' || code === 'ERR_OUT_OF_RANGE')) {
    return new HttpError(400, error.message, { param: paramOf(error.message), code: 'invalid_value' });
  }
  // A key the library does not know inside an object the server passes on whole (a tool, say).
  if (error instanceof TypeError && code === 'ERR_INVALID_ARG_VALUE') {
    return new HttpError(400, error.message, { param: paramOf(error.message), code: 'unsupported_field' });
  }
  // Fastify's own errors (body parser, limits, routing) carry their status.
  const fastify = error as { statusCode?: unknown; code?: unknown; message?: unknown; validation?: unknown };
  if (Array.isArray(fastify.validation) && fastify.validation.length > 0) {
    const first = fastify.validation[0] as { instancePath?: string; params?: { missingProperty?: string; additionalProperty?: string } };
    const path = (first.instancePath ?? '')
      .replace(/^\//, '')
      .replace(/\/(\d+)/g, '[$1]')
      .replace(/\//g, '.');
    const extra = first.params?.missingProperty ?? first.params?.additionalProperty;
    const param = [path, extra].filter((p) => p !== undefined && p !== '').join(path && extra ? '.' : '') || null;
    return new HttpError(400, `${String(fastify.message)}${extra !== undefined ? ` (${extra})` : ''}`, { param, code: 'invalid_type' });
  }
  if (typeof fastify.statusCode === 'number' && fastify.statusCode >= 400 && fastify.statusCode < 500) {
    const fcode = typeof fastify.code === 'string' ? fastify.code : null;
    return new HttpError(fastify.statusCode, String(fastify.message), {
      code: fastify.statusCode === 413 ? 'body_too_large' : (fcode ?? 'invalid_request'),
    });
  }
  return new HttpError(500, error instanceof Error ? error.message : String(error), { code: 'internal_error' });
}

/** Headers of an error response: retry advice for the SDKs, plus the error's own (Retry-After). */
export function errorHeaders(error: HttpError): Record<string, string> {
  return { ...(error.statusCode < 500 ? { 'x-should-retry': 'false' } : {}), ...error.headers };
}
