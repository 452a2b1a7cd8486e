/**
 * Generation from prompt tokens to text, for one prompt or several: submits each prompt as one
 * request to the native context's engine (which batches every request of the model on the
 * context's own thread and streams token ids and bytes), turns bytes into text without splitting
 * characters, stops at stop sequences without ever emitting part of one, and maps cancellation.
 */
import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';
import { fromNativeError } from './errors.js';
import type { TokenLogprob, TokenTexts } from './logprobs.js';
import { safeCallback } from './safe-callback.js';
import type {
  NativeAddon,
  NativeCacheMiss,
  NativeCacheSource,
  NativeCancelFlag,
  NativeContext,
  NativeModel,
  NativeRequestResult,
  NativeSampler,
  NativeSamplerParams,
  NativeStopReason,
} from './binding/native.js';

/** What a text piece came from: the generated tokens since the previous piece (with logprobs, their log probabilities). */
export interface TextInfo {
  /** Tokens generated since the previous piece (0 for text held back and let out at the end). */
  tokens: number;
  /** The prompt's length in tokens (the result's promptTokens), known from the first piece on. */
  promptTokens: number;
  /** With `logprobs`: those tokens with their log probabilities. */
  logprobs?: TokenLogprob[];
}

/** Why a generation ended; chat() adds 'toolCalls' (the reply is one or more tool calls). */
export type StopReason = 'eos' | 'maxTokens' | 'stop' | 'abort' | 'contextFull';

/**
 * Why a matching cached prefix was evaluated again: 'recurrentMemory' (a recurrent or hybrid model
 * cannot drop part of a sequence's state, so only a prompt that continues all of it reuses it),
 * 'slidingWindow' (a sliding-window cache has evicted what a shorter prefix attends to; likewise), 'trimFailed' (llama_memory_seq_rm refused the partial removal),
 * 'restoreFailed' (llama_state_seq_set_data refused the session's parked state).
 */
export type CacheMiss = NativeCacheMiss;

/**
 * Where a result's cachedTokens came from: 'resident' (the sequence's KV cache held them),
 * 'restored' (the session's KV state was parked in host memory while another request had its
 * sequence, and was copied back: LoadOptions.parkedSessionBytes), 'shared' (a completion after
 * the first of `n`: the first's evaluation of the prompt was copied into its sequence, so its
 * prompt cost nothing; cachedTokens is the first's), 'evaluated' (nothing was reused, cachedTokens
 * is 0).
 */
export type CacheSource = NativeCacheSource;

export interface GenerationTimings {
  /** Prompt processing time (ms): from getting a sequence to the last prompt token decoded, in batches shared with other requests. */
  promptMs: number;
  /** From the call to the first generated token reaching JavaScript (ms): time to first token. */
  timeToFirstTokenMs: number;
  /** From the first generated token to the last, as the decoding thread produced them (ms). */
  generationMs: number;
  /** Whole call (ms). */
  totalMs: number;
  /** Prompt tokens evaluated (promptTokens − cachedTokens) per second of promptMs. */
  promptTokensPerSecond: number;
  /** Generated tokens per second after the first token, at the decoding thread's pace. */
  tokensPerSecond: number;
}

export interface GenerateResult {
  text: string;
  /** Generated token ids (including those of a stop sequence, which `text` leaves out). */
  tokens: number[];
  promptTokens: number;
  /**
   * Prompt tokens found in the KV cache of the sequence this request ran in (a prefix an earlier
   * request left there) and not evaluated again; at most promptTokens − 1. 0 with `cachePrompt: false`.
   */
  cachedTokens: number;
  /** Why a cached prefix could not be reused, when one matched: cachedTokens is then 0. */
  cacheMiss?: CacheMiss;
  /** Where cachedTokens came from: the sequence as it was, a parked session state restored into it, or none. */
  cacheSource: CacheSource;
  /** Tokens a context shift dropped from the window (GenerateOptions.contextShift); 0 without one. */
  droppedTokens: number;
  stopReason: StopReason;
  /** The stop sequence that ended generation, when stopReason is 'stop'. */
  stopSequence?: string;
  /** With `logprobs`: one entry per generated token (as `tokens`), with the best alternatives when `topLogprobs` > 0. */
  logprobs?: TokenLogprob[];
  /** With `jsonSchema`: the output parsed, when it is a complete value that matches the schema. */
  parsed?: unknown;
  /** With `jsonSchema`: why `parsed` is absent (the output was cut short, or does not match). */
  parseError?: string;
  /** With `n` > 1: every completion, the first of which is this result. */
  choices?: GenerateResult[];
  timings: GenerationTimings;
}

/** What generateBatch() returns: one result per prompt, in order, and the batch's throughput. */
export interface BatchResult {
  results: GenerateResult[];
  timings: BatchTimings;
}

export interface BatchTimings {
  /** From the first prompt getting a sequence until every prompt was processed (they share batches) (ms). */
  promptMs: number;
  /** Prompt tokens of all sequences. */
  promptTokens: number;
  /** Prompt tokens of all sequences that were evaluated (not cached), per second of promptMs. */
  promptTokensPerSecond: number;
  /** Generated tokens of all sequences. */
  generatedTokens: number;
  /** From the first sequence's first token to the last token of any sequence, at the decoding thread's pace (ms). */
  generationMs: number;
  /** Aggregate generation speed: tokens after each sequence's first, per second of generationMs. */
  tokensPerSecond: number;
  /** Whole call (ms). */
  totalMs: number;
}

export interface GenerationRequest {
  addon: NativeAddon;
  model: NativeModel;
  context: NativeContext;
  /** One prompt per sequence. */
  prompts: Int32Array[];
  /** Per prompt, already bounded by the room left in its sequence's window. */
  maxTokens: number[];
  /** Per prompt: its maxTokens is that room (not the caller's limit), so reaching it is stopReason 'contextFull'. */
  contextBound?: boolean[];
  /** Sequence i samples with seed + i, so equal prompts can still take different paths. */
  sampler: NativeSamplerParams;
  stopSequences: string[];
  signal?: AbortSignal;
  stopOnAbort?: boolean;
  /** One flag per prompt, each ending its request; the caller keeps them to stop them (dispose, stream break). */
  cancels: NativeCancelFlag[];
  /** Reuse a cached prefix of each prompt (false: evaluate every prompt token). */
  cachePrompt: boolean;
  /** Tokens a context shift keeps, -1 for no shift (see GenerateOptions.contextShift). */
  contextShiftKeep?: number;
  /** The session (lib/session.ts) the prompts belong to; 0 or absent for none. */
  session?: number;
  /** End-of-generation is masked until this many tokens (native minTokens). */
  minTokens?: number;
  /** The stop string that ended the output stays in the text. */
  includeStopString?: boolean;
  /** Special tokens left out of the text (default true), except `renderSpecial`. */
  skipSpecial?: boolean;
  renderSpecial?: Int32Array;
  /** The prompts are n completions of one prompt: one evaluation, shared (a group id for the engine). */
  group?: number;
  /** With log probabilities: token texts for them (the model's; with the request's special-token rendering). */
  tokenTexts?: TokenTexts;
  /** Receives each piece of text as soon as it is safe to show (never part of a stop sequence), with the tokens that made it. */
  onText?: (text: string, sequence: number, info: TextInfo) => void;
}

/** Longest suffix of `text` that is a proper prefix of some stop sequence (text that may yet become one). */
export function heldBackLength(text: string, stopSequences: string[]): number {
  let held = 0;
  for (const stop of stopSequences) {
    for (let n = Math.min(stop.length - 1, text.length); n > held; n--) {
      if (text.endsWith(stop.slice(0, n))) {
        held = n;
        break;
      }
    }
  }
  return held;
}

/** Incremental text assembly with stop sequences; pure, so it is unit-tested on its own. */
export class TextAssembler {
  #decoder = new StringDecoder('utf8');
  #text = '';
  #emitted = 0;
  stopSequence: string | undefined;

  constructor(
    private readonly stopSequences: string[],
    private readonly emit: (text: string) => void,
    /** The stop string that ends the text stays at its end. */
    private readonly includeStop = false,
  ) {}

  /** Adds a token's bytes; returns true when a stop sequence was found (nothing after it is emitted). */
  push(bytes: Uint8Array): boolean {
    if (this.stopSequence !== undefined) return true;
    this.#text += this.#decoder.write(bytes as Buffer);
    const searchFrom = Math.max(0, this.#emitted - this.#longestStop());
    let stopAt = -1;
    for (const stop of this.stopSequences) {
      const at = this.#text.indexOf(stop, searchFrom);
      if (at !== -1 && (stopAt === -1 || at < stopAt)) {
        stopAt = at;
        this.stopSequence = stop;
      }
    }
    if (stopAt !== -1) {
      this.#text = this.#text.slice(0, stopAt + (this.includeStop ? this.stopSequence!.length : 0));
      this.#flushTo(this.#text.length);
      return true;
    }
    this.#flushTo(this.#text.length - heldBackLength(this.#text, this.stopSequences));
    return false;
  }

  /** Ends the text: whatever was held back is emitted. */
  finish(): string {
    if (this.stopSequence === undefined) {
      this.#text += this.#decoder.end();
      this.#flushTo(this.#text.length);
    }
    return this.#text;
  }

  #longestStop(): number {
    return this.stopSequences.reduce((max, s) => Math.max(max, s.length), 0);
  }

  #flushTo(end: number): void {
    if (end > this.#emitted) {
      const piece = this.#text.slice(this.#emitted, end);
      this.#emitted = end;
      this.emit(piece);
    }
  }
}

const nativeStopReasons: Record<NativeStopReason, StopReason> = {
  eog: 'eos',
  maxTokens: 'maxTokens',
  aborted: 'abort',
  contextFull: 'contextFull',
};

/** One sequence's progress on the JS side. */
class SequenceProgress {
  readonly tokens: number[] = [];
  readonly assembler: TextAssembler;
  readonly logprobs: TokenLogprob[] | undefined;
  /** Tokens (and their log probabilities) whose text is not emitted yet (held back for a possible stop string). */
  #pending: TokenLogprob[] = [];
  #pendingTokens = 0;
  firstTokenSeenAt = 0;
  firstTokenAt = 0;
  lastTokenAt = 0;

  constructor(
    stopSequences: string[],
    emit: (text: string, info: TextInfo) => void,
    readonly cancel: NativeCancelFlag,
    private readonly tokenTexts: TokenTexts | undefined,
    includeStop: boolean,
    promptTokens: number,
  ) {
    this.logprobs = tokenTexts ? [] : undefined;
    this.assembler = new TextAssembler(
      stopSequences,
      (text) => {
        const info: TextInfo = { tokens: this.#pendingTokens, promptTokens };
        if (this.logprobs) info.logprobs = this.#pending;
        this.#pending = [];
        this.#pendingTokens = 0;
        emit(text, info);
      },
      includeStop,
    );
  }

  push(token: number, piece: Buffer, atMs: number, logprob?: number, topTokens?: Int32Array, topLogprobs?: Float32Array): void {
    // Tokens the context thread made before it saw the stop flag belong to nobody.
    if (this.assembler.stopSequence !== undefined) return;
    // Time to first token is what the caller sees (JS clock); throughput is the engine's own
    // pace (the context thread's clock), not how promptly the event loop picked tokens up.
    if (this.tokens.length === 0) {
      this.firstTokenSeenAt = performance.now();
      this.firstTokenAt = atMs;
    }
    this.lastTokenAt = atMs;
    this.tokens.push(token);
    this.#pendingTokens++;
    if (this.tokenTexts && logprob !== undefined) {
      // The engine sends the alternatives with every log probability (empty for topLogprobs 0).
      const entry = this.tokenTexts.logprob(token, piece, logprob, topTokens!, topLogprobs!);
      this.logprobs!.push(entry);
      this.#pending.push(entry);
    }
    if (this.assembler.push(piece)) this.cancel.cancel();
  }

  get generationMs(): number {
    return this.tokens.length > 1 ? this.lastTokenAt - this.firstTokenAt : 0;
  }
}

const perSecond = (count: number, ms: number) => (ms > 0 ? (count * 1000) / ms : 0);

/**
 * Runs each prompt as one request on the context's engine, all at once (the engine admits up to
 * `sequences` of them and queues the rest); a single generate() is one prompt.
 */
export async function runGenerations(request: GenerationRequest): Promise<BatchResult> {
  const { addon, model, context, signal, cancels } = request;
  const callSite = new Error();
  const started = performance.now();
  const cancelAll = () => {
    for (const flag of cancels) flag.cancel();
  };
  // A throwing onText ends the whole call; its error is the call's, once the native side is done.
  const onText = request.onText && safeCallback(request.onText, cancelAll);
  const sequences = request.prompts.map(
    (_, index) =>
      new SequenceProgress(
        request.stopSequences,
        (text, info) => onText?.call(text, index, info),
        cancels[index]!,
        request.tokenTexts,
        request.includeStopString === true,
        request.prompts[index]!.length,
      ),
  );
  signal?.addEventListener('abort', cancelAll, { once: true });
  if (signal?.aborted) cancelAll();

  const everyToken = request.onText !== undefined || request.stopSequences.length > 0;
  let settled: PromiseSettledResult<NativeRequestResult>[];
  try {
    // Built before anything is submitted: a sampler llama.cpp refuses (a grammar) fails the call whole.
    const samplers: NativeSampler[] = [];
    try {
      for (let i = 0; i < request.prompts.length; i++) {
        samplers.push(new addon.Sampler(model, { ...request.sampler, seed: (request.sampler.seed + i) % 2 ** 32 }));
      }
    } catch (error) {
      for (const sampler of samplers) sampler.dispose();
      throw fromNativeError(error, callSite);
    }
    try {
      settled = await Promise.allSettled(
        request.prompts.map((prompt, i) => {
          const sequence = sequences[i]!;
          return context
            .submit(
              prompt,
              samplers[i]!,
              cancels[i]!,
              (token, piece, atMs, logprob, top, topLogprobs) => sequence.push(token, piece, atMs, logprob, top, topLogprobs),
              {
                maxTokens: request.maxTokens[i]!,
                everyToken,
                reusePrefix: request.cachePrompt,
                minTokens: request.minTokens ?? 0,
                skipSpecial: request.skipSpecial ?? true,
                ...(request.renderSpecial ? { renderSpecial: request.renderSpecial } : {}),
                session: request.session ?? 0,
                contextShiftKeep: request.contextShiftKeep ?? -1,
                ...(request.group !== undefined ? { group: request.group, groupSize: request.prompts.length } : {}),
              },
            )
            .catch((error: unknown) => {
              cancelAll(); // one request failed: the call fails, so the others stop too
              throw error;
            });
        }),
      );
    } finally {
      for (const sampler of samplers) sampler.dispose();
    }
  } finally {
    signal?.removeEventListener('abort', cancelAll);
  }
  const failure = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failure) throw fromNativeError(failure.reason, callSite);
  const native = settled.map((s) => (s as PromiseFulfilledResult<NativeRequestResult>).value);
  onText?.rethrow();

  const totalMs = performance.now() - started;
  const results = sequences.map((sequence, i): GenerateResult => {
    const { assembler, tokens } = sequence;
    const n = native[i]!;
    const text = assembler.finish();
    const nativeReason = n.stopReason === 'maxTokens' && request.contextBound?.[i] === true ? 'contextFull' : n.stopReason;
    const stopReason = assembler.stopSequence !== undefined ? 'stop' : nativeStopReasons[nativeReason];
    const promptTokens = request.prompts[i]!.length;
    const promptMs = n.promptDoneAtMs >= 0 ? n.promptDoneAtMs - n.admittedAtMs : 0;
    return {
      text,
      tokens,
      promptTokens,
      cachedTokens: n.cachedTokens,
      cacheSource: n.cacheSource,
      droppedTokens: n.droppedTokens,
      ...(n.cacheMiss !== null ? { cacheMiss: n.cacheMiss } : {}),
      stopReason,
      ...(assembler.stopSequence !== undefined ? { stopSequence: assembler.stopSequence } : {}),
      ...(sequence.logprobs ? { logprobs: sequence.logprobs } : {}),
      timings: {
        promptMs,
        timeToFirstTokenMs: tokens.length > 0 ? sequence.firstTokenSeenAt - started : 0,
        generationMs: sequence.generationMs,
        totalMs,
        promptTokensPerSecond: perSecond(promptTokens - n.cachedTokens, promptMs),
        tokensPerSecond: perSecond(tokens.length - 1, sequence.generationMs),
      },
    };
  });
  if (signal?.aborted && !request.stopOnAbort && results.some((r) => r.stopReason === 'abort')) throw signal.reason;
  const producing = sequences.filter((s) => s.tokens.length > 0);
  const generatedTokens = sequences.reduce((sum, s) => sum + s.tokens.length, 0);
  const generationMs =
    producing.length === 0 ? 0 : Math.max(...producing.map((s) => s.lastTokenAt)) - Math.min(...producing.map((s) => s.firstTokenAt));
  const admitted = native.filter((n) => n.admittedAtMs >= 0);
  const prompted = native.filter((n) => n.promptDoneAtMs >= 0);
  const promptMs =
    prompted.length === 0 ? 0 : Math.max(...prompted.map((n) => n.promptDoneAtMs)) - Math.min(...admitted.map((n) => n.admittedAtMs));
  const promptTokens = request.prompts.reduce((sum, p) => sum + p.length, 0);
  const evaluated = promptTokens - results.reduce((sum, r) => sum + r.cachedTokens, 0);
  return {
    results,
    timings: {
      promptMs,
      promptTokens,
      promptTokensPerSecond: perSecond(evaluated, promptMs),
      generatedTokens,
      generationMs,
      tokensPerSecond: perSecond(generatedTokens - producing.length, generationMs),
      totalMs,
    },
  };
}
