/**
 * From a caller's prompts and validated options to the engine's requests and back: prompts
 * tokenized and checked against the window, the grammar (a GBNF text, a JSON schema, or a chat
 * plan's) checked before anything decodes, the logit bias resolved to token ids, n completions
 * made a group that shares one prompt evaluation, and the results completed (the JSON value of a
 * schema, the choices of n completions).
 */
import type { ChatPlan } from './chat.js';
import { ContextError, ErrorCode, ModelFileError } from './errors.js';
import type { BatchResult, GenerateResult, GenerationRequest } from './generation.js';
import type { TokenTexts } from './logprobs.js';
import { contextShiftKeep, resolveMaxTokens, resolveMinTokens, type ValidGenerateOptions } from './options.js';
import { resolveLogitBias, samplerParams, type ResolvedSampling } from './sampling.js';
import { checkedGrammar, parseJsonOutput, schemaGrammar } from './structured/constrain.js';
import { checkJsonSchema, type JsonSchema } from './structured/json-schema.js';
import type { NativeAddon, NativeCancelFlag, NativeContext, NativeContextInfo, NativeModel } from './binding/native.js';
import { rangeError, typeError } from './validate.js';

/** What a request needs from its model. */
export interface RequestHost {
  addon: NativeAddon;
  native: NativeModel;
  context: NativeContext;
  contextInfo: Readonly<NativeContextInfo>;
  vocabSize: number;
  trainingContextSize: number;
  /** Token texts for log probabilities, with special tokens written out or not. */
  tokenTexts(special: boolean): TokenTexts;
}

/** n-completion groups get engine-wide ids (0 is none). */
let nextGroup = 1;

/** `tokens` as token ids of a vocabulary of `vocabSize`, or a TypeError / RangeError naming the first bad one. */
export function tokenIds(name: string, tokens: ArrayLike<number>, vocabSize: number): Int32Array {
  if (tokens === null || typeof tokens !== 'object' || typeof tokens.length !== 'number')
    throw typeError(name, 'an array of token ids', tokens);
  for (let i = 0; i < tokens.length; i++) {
    const id = tokens[i];
    if (!Number.isInteger(id) || id! < 0 || id! >= vocabSize)
      throw rangeError(`${name}[${i}]`, `a token id from 0 to ${vocabSize - 1}`, id);
  }
  return Int32Array.from(tokens);
}

function tokenizePrompt(host: RequestHost, name: string, prompt: string | ArrayLike<number>): Int32Array {
  // Same tokenization as llama.cpp's examples: BOS as the model wants, special tokens parsed.
  const tokens = typeof prompt === 'string' ? host.native.tokenize(prompt, true, true) : tokenIds(name, prompt, host.vocabSize);
  if (tokens.length === 0 && typeof prompt === 'string' && prompt !== '') {
    // Valid text, but this model's vocabulary encodes it as nothing (no byte fallback, no BOS).
    throw new ModelFileError(
      ErrorCode.MODEL_INVALID,
      `${name}: the model's vocabulary encodes ${JSON.stringify(prompt.slice(0, 40))} as no tokens`,
      {
        remedy:
          "the model's tokenizer cannot represent this text: check its tokenizer.ggml.* metadata, or re-convert the model with llama.cpp's convert_hf_to_gguf.py",
        details: { prompt: prompt.slice(0, 200) },
      },
    );
  }
  if (tokens.length === 0) throw rangeError(name, 'a prompt of at least one token', prompt);
  const { contextSize } = host.contextInfo;
  if (tokens.length >= contextSize) {
    throw new ContextError(ErrorCode.CONTEXT_FULL, `${name} has ${tokens.length} tokens; the context holds ${contextSize}`, {
      remedy: `shorten the prompt, or load with a larger contextSize (this model was trained for ${host.trainingContextSize})`,
      details: { promptTokens: tokens.length, contextSize },
    });
  }
  return tokens;
}

/** The sampler's grammar and budget: the chat plan's, or the caller's GBNF text or JSON schema. */
function resolveSampling(
  host: RequestHost,
  options: ValidGenerateOptions,
  plan: ChatPlan | undefined,
): ResolvedSampling & { schema?: JsonSchema } {
  const resolved: ResolvedSampling & { schema?: JsonSchema } = {};
  const bias = resolveLogitBias(options.logitBias, host.vocabSize, (text) => Array.from(host.native.tokenize(text, false, true)));
  if (bias) resolved.logitBias = bias;
  if (plan?.grammar) resolved.grammar = plan.grammar;
  if (plan?.reasoningBudget) resolved.reasoningBudget = plan.reasoningBudget;
  if (options.grammar !== undefined) {
    resolved.grammar = checkedGrammar(host, options.grammar, 'user', 'options.grammar');
  } else if (options.jsonSchema !== undefined) {
    const schema = checkJsonSchema(options.jsonSchema, 'options.jsonSchema');
    resolved.grammar = schemaGrammar(host, schema, 'output', "options.jsonSchema's grammar");
    resolved.schema = schema;
  }
  return resolved;
}

export interface PreparedRequest {
  request: GenerationRequest;
  /** What runGenerations' results need besides: the JSON value of a schema, n's choices. */
  finish(batch: BatchResult): BatchResult;
}

/**
 * The engine requests for `prompts` (one each, or n completions of the one prompt), with one
 * cancel flag each from `newCancel`. Throws before anything is submitted when an option is wrong.
 */
export function prepareRequest(
  host: RequestHost,
  prompts: [name: string, prompt: string | ArrayLike<number>][],
  options: ValidGenerateOptions,
  newCancel: () => NativeCancelFlag,
  session: number,
  plan?: ChatPlan,
): PreparedRequest {
  const n = options.n ?? 1;
  const { contextSize, sequences } = host.contextInfo;
  if (n > 1) {
    if (n > sequences) {
      throw rangeError(
        'options.n',
        `at most ${sequences} (the model was loaded with sequences: ${sequences})`,
        n,
        `load with { sequences: ${n} }`,
      );
    }
    if (session !== 0) throw rangeError('options.n', '1 in a session (a session is one conversation)', n);
  }
  const sampling = resolveSampling(host, options, plan);
  const tokenized = prompts.map(([name, prompt]) => tokenizePrompt(host, name, prompt));
  const all = n > 1 ? Array.from({ length: n }, () => tokenized[0]!) : tokenized;
  const shiftKeep = contextShiftKeep(options.contextShift);
  // A shifting window never fills: only maxTokens (required with contextShift) bounds it.
  const maxTokens = all.map((tokens) =>
    resolveMaxTokens(options.maxTokens, shiftKeep >= 0 ? Number.MAX_SAFE_INTEGER : contextSize, tokens.length),
  );
  // A limit that is the room left in the window, not the caller's maxTokens: reaching it is a full context.
  const contextBound = all.map(
    (tokens, i) => shiftKeep < 0 && maxTokens[i] === contextSize - tokens.length && (options.maxTokens ?? Infinity) > maxTokens[i]!,
  );
  const skipSpecial = options.skipSpecialTokens ?? true;
  const request: GenerationRequest = {
    addon: host.addon,
    model: host.native,
    context: host.context,
    prompts: all,
    maxTokens,
    contextBound,
    sampler: samplerParams(options, sampling),
    stopSequences: options.stopSequences,
    cancels: all.map(() => newCancel()),
    cachePrompt: options.cachePrompt ?? true,
    contextShiftKeep: shiftKeep,
    session,
    minTokens: resolveMinTokens(options),
    includeStopString: options.includeStopString === true,
    skipSpecial,
  };
  if (options.logprobs === true) request.tokenTexts = host.tokenTexts(!skipSpecial);
  if (plan && plan.renderSpecial.length > 0) request.renderSpecial = plan.renderSpecial;
  if (n > 1) request.group = nextGroup++;
  if (options.signal) request.signal = options.signal;
  if (options.stopOnAbort !== undefined) request.stopOnAbort = options.stopOnAbort;
  if (options.onText) request.onText = options.onText;
  const { schema } = sampling;
  return {
    request,
    finish(batch) {
      if (schema !== undefined) for (const result of batch.results) completeJson(result, schema);
      if (n > 1) {
        const first = batch.results[0]!;
        return { ...batch, results: [{ ...first, choices: batch.results }] };
      }
      return batch;
    },
  };
}

/** A jsonSchema result's `parsed`, or why there is none. */
function completeJson(result: GenerateResult, schema: JsonSchema): void {
  Object.assign(result, parseJsonOutput(result.text, result.stopReason, schema, 'options.jsonSchema', 'the output'));
}
