/**
 * How the next token is chosen: the sampling options of generate(), stream(), chat() and the
 * server, their validation, their defaults (ours, the only place they live, each documented on
 * its option; most are llama.cpp's own), and their translation into the native sampler's
 * parameters (llama-common's common_sampler, native/sampler.h). Grammars and JSON schemas are
 * lib/structured's.
 */
import type { NativeGrammar, NativeSamplerParams } from './binding/native.js';
import { expectObject, optionalBoolean, optionalInteger, optionalNumber, rangeError, rejectUnknownKeys, typeError } from './validate.js';

/** A logit bias: added to the token's logit before sampling; -Infinity bans it. */
export interface LogitBiasEntry {
  /** A token id, or a text: every token of its tokenization gets the bias (as llama-server does). */
  token: number | string;
  /** -100 to 100, or -Infinity to ban the token. */
  bias: number;
}

export interface SamplingOptions {
  /** 0 = greedy (deterministic). Default 0.8. */
  temperature?: number;
  /** Keep the K most likely tokens; 0 = off. Default 40. */
  topK?: number;
  /** Nucleus sampling; 1 = off. Default 0.95. */
  topP?: number;
  /** Drop tokens below minP × the best token's probability; 0 = off. Default 0.05. */
  minP?: number;
  /** Locally typical sampling: keep the tokens whose surprise is closest to the expected, up to this mass; 1 = off. Default 1. */
  typicalP?: number;
  /** Keep the tokens whose logit is within topNSigma standard deviations of the best; off unless set (0 to 100). */
  topNSigma?: number;
  /**
   * XTC (exclude top choices): with `probability` (0-1) per token, every token above `threshold`
   * probability (default 0.1; above 0.5 it never applies) except the least likely of them is
   * removed, so a creative model does not always take the obvious word. Off unless set.
   */
  xtc?: { probability: number; threshold?: number };
  /**
   * DRY ("don't repeat yourself"): a token that would extend a repetition of more than
   * `allowedLength` tokens (default 2) within the last `penaltyLastN` generated tokens (default
   * 64) loses `multiplier × base^(length − allowedLength)` of its logit (base default 1.75); a
   * repetition does not reach across `sequenceBreakers` (default "\n", ":", "\"", "*"). Off
   * unless set; `multiplier` 0 is off.
   */
  dry?: { multiplier: number; base?: number; allowedLength?: number; penaltyLastN?: number; sequenceBreakers?: string[] };
  /**
   * Mirostat: a target surprise (`tau`, default 5) the sampler steers toward at learning rate
   * `eta` (default 0.1), instead of topK/topP/minP/typicalP/XTC (which it replaces). `version` 2
   * (default) or 1. Off unless set.
   */
  mirostat?: { tau?: number; eta?: number; version?: 1 | 2 };
  /** Penalty for repeating recent tokens; 1 = off. Default 1. */
  repeatPenalty?: number;
  /** How many of the latest generated tokens repeatPenalty, frequencyPenalty and presencePenalty look at. Default 64. */
  repeatLastN?: number;
  /**
   * Subtracted from a token's logit once per time it occurs in the last repeatLastN generated
   * tokens, as OpenAI's frequency_penalty; -2 to 2, 0 = off. Default 0.
   */
  frequencyPenalty?: number;
  /** Subtracted once from the logit of every token in the last repeatLastN generated tokens, as OpenAI's presence_penalty; -2 to 2, 0 = off. Default 0. */
  presencePenalty?: number;
  /**
   * Biases added to tokens' logits: `{ [tokenId]: bias }` (OpenAI's shape), or a list of
   * `{ token, bias }` where `token` is an id or a text (every token of it). -100 to 100, or
   * -Infinity to ban. Default none.
   */
  logitBias?: Record<number, number> | LogitBiasEntry[];
  /** Seed for sampling. Default: random per call. */
  seed?: number;
  /**
   * Return each generated token's log probability (results' `logprobs`, onText's third argument,
   * chat stream deltas): for sampling, of the distribution the token was drawn from (after the
   * grammar, penalties, biases, truncation and temperature); for greedy decoding (temperature 0),
   * the full-vocabulary softmax of the logits. Default false.
   */
  logprobs?: boolean;
  /** With logprobs: also the 0-20 most likely alternatives of each token, with theirs. Default 0. */
  topLogprobs?: number;
}

export const samplingKeys = [
  'temperature',
  'topK',
  'topP',
  'minP',
  'typicalP',
  'topNSigma',
  'xtc',
  'dry',
  'mirostat',
  'repeatPenalty',
  'repeatLastN',
  'frequencyPenalty',
  'presencePenalty',
  'logitBias',
  'seed',
  'logprobs',
  'topLogprobs',
] as const satisfies readonly (keyof SamplingOptions)[];

/** Fails to compile, naming the option, when SamplingOptions has one that samplingKeys does not list. */
type _EverySamplingOptionListed = AssertNever<Exclude<keyof SamplingOptions, (typeof samplingKeys)[number]>>;
type AssertNever<T extends never> = T;

export const samplingHints: Record<string, string> = {
  temp: 'use temperature',
  typical: 'use typicalP',
  typical_p: 'use typicalP',
  logit_bias: 'use logitBias',
  top_logprobs: 'use topLogprobs',
  nProbs: 'use logprobs and topLogprobs',
};

/** The largest bias a caller may give; -Infinity is allowed besides (a ban). */
const MAX_BIAS = 100;
const MAX_TOP_LOGPROBS = 20;

/** Checks the sampling options among `options` (which may hold others, validated elsewhere). */
export function validateSamplingOptions(options: Record<string, unknown>): void {
  optionalNumber('options.temperature', options.temperature, 0, 100);
  optionalInteger('options.topK', options.topK, 0, 1_000_000);
  optionalNumber('options.topP', options.topP, 0, 1, { minExclusive: true });
  optionalNumber('options.minP', options.minP, 0, 1);
  optionalNumber('options.typicalP', options.typicalP, 0, 1, { minExclusive: true });
  optionalNumber('options.topNSigma', options.topNSigma, 0, 100);
  optionalNumber('options.repeatPenalty', options.repeatPenalty, 0, 100, { minExclusive: true });
  optionalInteger('options.repeatLastN', options.repeatLastN, 0, 1_000_000);
  optionalNumber('options.frequencyPenalty', options.frequencyPenalty, -2, 2);
  optionalNumber('options.presencePenalty', options.presencePenalty, -2, 2);
  optionalInteger('options.seed', options.seed, 0, 2 ** 32 - 1);
  if (options.xtc !== undefined) {
    const xtc = expectObject('options.xtc', options.xtc);
    rejectUnknownKeys('options.xtc', xtc, ['probability', 'threshold']);
    if (xtc.probability === undefined) throw typeError('options.xtc.probability', 'a number from 0 to 1', undefined);
    optionalNumber('options.xtc.probability', xtc.probability, 0, 1);
    optionalNumber('options.xtc.threshold', xtc.threshold, 0, 1);
  }
  if (options.dry !== undefined) {
    const dry = expectObject('options.dry', options.dry);
    rejectUnknownKeys('options.dry', dry, ['multiplier', 'base', 'allowedLength', 'penaltyLastN', 'sequenceBreakers']);
    if (dry.multiplier === undefined) throw typeError('options.dry.multiplier', 'a number from 0 to 100', undefined);
    optionalNumber('options.dry.multiplier', dry.multiplier, 0, 100);
    optionalNumber('options.dry.base', dry.base, 1, 100);
    optionalInteger('options.dry.allowedLength', dry.allowedLength, 0, 1_000_000);
    optionalInteger('options.dry.penaltyLastN', dry.penaltyLastN, 0, 1_000_000);
    if (dry.sequenceBreakers !== undefined) {
      if (!Array.isArray(dry.sequenceBreakers) || dry.sequenceBreakers.length > 64)
        throw typeError('options.dry.sequenceBreakers', 'an array of at most 64 strings', dry.sequenceBreakers);
      dry.sequenceBreakers.forEach((b: unknown, i) => {
        if (typeof b !== 'string' || b.length === 0 || b.length > 40)
          throw typeError(`options.dry.sequenceBreakers[${i}]`, 'a string of 1 to 40 characters', b);
      });
    }
  }
  if (options.mirostat !== undefined) {
    const mirostat = expectObject('options.mirostat', options.mirostat);
    rejectUnknownKeys('options.mirostat', mirostat, ['tau', 'eta', 'version']);
    optionalNumber('options.mirostat.tau', mirostat.tau, 0, 100);
    optionalNumber('options.mirostat.eta', mirostat.eta, 0, 1);
    if (mirostat.version !== undefined) {
      if (typeof mirostat.version !== 'number') throw typeError('options.mirostat.version', '1 or 2', mirostat.version);
      if (mirostat.version !== 1 && mirostat.version !== 2) throw rangeError('options.mirostat.version', '1 or 2', mirostat.version);
    }
  }
  validateLogitBias(options.logitBias);
  const logprobs = optionalBoolean('options.logprobs', options.logprobs);
  const top = optionalInteger('options.topLogprobs', options.topLogprobs, 0, MAX_TOP_LOGPROBS);
  if (top !== undefined && top > 0 && logprobs !== true) {
    throw rangeError('options.topLogprobs', 'set together with logprobs: true', top);
  }
}

function validateBias(name: string, bias: unknown): void {
  if (typeof bias !== 'number') throw typeError(name, 'a number from -100 to 100, or -Infinity', bias);
  if (bias === -Infinity) return;
  if (!Number.isFinite(bias) || bias < -MAX_BIAS || bias > MAX_BIAS)
    throw rangeError(name, 'a number from -100 to 100, or -Infinity', bias);
}

function validateLogitBias(input: unknown): void {
  if (input === undefined) return;
  if (Array.isArray(input)) {
    input.forEach((entry: unknown, i) => {
      const name = `options.logitBias[${i}]`;
      const e = expectObject(name, entry);
      rejectUnknownKeys(name, e, ['token', 'bias']);
      if (typeof e.token === 'string') {
        if (e.token.length === 0) throw rangeError(`${name}.token`, 'a token id or a non-empty text', e.token);
      } else if (typeof e.token === 'number') {
        optionalInteger(`${name}.token`, e.token, 0, 2 ** 31 - 1);
      } else {
        throw typeError(`${name}.token`, 'an integer token id or a non-empty text', e.token);
      }
      validateBias(`${name}.bias`, e.bias);
    });
    return;
  }
  const record = expectObject('options.logitBias', input);
  for (const [key, bias] of Object.entries(record)) {
    if (!/^(0|[1-9][0-9]{0,9})$/.test(key)) {
      throw rangeError(`options.logitBias[${JSON.stringify(key)}]`, 'keyed by a token id', key, 'use [{ token: text, bias }] for texts');
    }
    validateBias(`options.logitBias[${key}]`, bias);
  }
}

/**
 * The logit bias as token ids: texts tokenized (no BOS; special tokens parsed), ids checked
 * against the vocabulary. A token named twice gets the sum of its biases, as llama.cpp adds them.
 */
export function resolveLogitBias(
  input: SamplingOptions['logitBias'],
  vocabSize: number,
  tokenize: (text: string) => ArrayLike<number>,
): NativeSamplerParams['logitBias'] {
  if (input === undefined) return undefined;
  const entries: [number, number][] = [];
  const add = (name: string, token: number, bias: number) => {
    if (token >= vocabSize) throw rangeError(name, `a token id below the model's vocabulary size (${vocabSize})`, token);
    entries.push([token, bias]);
  };
  if (Array.isArray(input)) {
    input.forEach(({ token, bias }, i) => {
      if (typeof token === 'number') add(`options.logitBias[${i}].token`, token, bias);
      else for (const id of Array.from(tokenize(token))) add(`options.logitBias[${i}].token`, id, bias);
    });
  } else {
    for (const [key, bias] of Object.entries(input)) add(`options.logitBias[${key}]`, Number(key), bias as number);
  }
  if (entries.length === 0) return undefined;
  return { tokens: Int32Array.from(entries.map((e) => e[0])), biases: Float32Array.from(entries.map((e) => e[1])) };
}

/** What samplerParams needs beyond the options: what lib/ resolved with the model's help. */
export interface ResolvedSampling {
  logitBias?: NativeSamplerParams['logitBias'];
  grammar?: NativeGrammar;
  reasoningBudget?: NativeSamplerParams['reasoningBudget'];
}

/** Every native sampler parameter, ours or llama.cpp's default where the caller set none. */
export function samplerParams(options: SamplingOptions, resolved: ResolvedSampling = {}): NativeSamplerParams {
  const { xtc, dry, mirostat } = options;
  return {
    temperature: options.temperature ?? 0.8,
    topK: options.topK ?? 40,
    topP: options.topP ?? 0.95,
    minP: options.minP ?? 0.05,
    typicalP: options.typicalP ?? 1,
    topNSigma: options.topNSigma ?? -1,
    xtcProbability: xtc?.probability ?? 0,
    xtcThreshold: xtc?.threshold ?? 0.1,
    repeatPenalty: options.repeatPenalty ?? 1,
    repeatLastN: options.repeatLastN ?? 64,
    frequencyPenalty: options.frequencyPenalty ?? 0,
    presencePenalty: options.presencePenalty ?? 0,
    dryMultiplier: dry?.multiplier ?? 0,
    dryBase: dry?.base ?? 1.75,
    dryAllowedLength: dry?.allowedLength ?? 2,
    dryPenaltyLastN: dry?.penaltyLastN ?? 64,
    drySequenceBreakers: dry?.sequenceBreakers ?? ['\n', ':', '"', '*'],
    mirostat: mirostat === undefined ? 0 : (mirostat.version ?? 2),
    mirostatTau: mirostat?.tau ?? 5,
    mirostatEta: mirostat?.eta ?? 0.1,
    seed: options.seed ?? Math.floor(Math.random() * 2 ** 32),
    logprobs: options.logprobs === true ? (options.topLogprobs ?? 0) : -1,
    ...(resolved.logitBias ? { logitBias: resolved.logitBias } : {}),
    ...(resolved.grammar ? { grammar: resolved.grammar } : {}),
    ...(resolved.reasoningBudget ? { reasoningBudget: resolved.reasoningBudget } : {}),
  };
}
