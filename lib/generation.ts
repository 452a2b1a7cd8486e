/**
 * One generation from prompt tokens to text: drives the native context (which decodes on its own
 * thread and streams token ids and bytes), turns bytes into text without splitting characters,
 * stops at stop sequences without ever emitting part of one, and maps cancellation.
 */
import { performance } from 'node:perf_hooks';
import { StringDecoder } from 'node:string_decoder';
import { fromNativeError } from './errors.js';
import type { NativeAddon, NativeCancelFlag, NativeContext, NativeGenerateResult, NativeModel, NativeSamplerParams } from './native.js';

export type StopReason = 'eos' | 'maxTokens' | 'stop' | 'abort' | 'contextFull';

export interface GenerationTimings {
  /** Prompt processing time (ms). */
  promptMs: number;
  /** From the call to the first generated token reaching JavaScript (ms): time to first token. */
  timeToFirstTokenMs: number;
  /** From the first generated token to the last, as the decoding thread produced them (ms). */
  generationMs: number;
  /** Whole call (ms). */
  totalMs: number;
  /** Prompt tokens per second. */
  promptTokensPerSecond: number;
  /** Generated tokens per second after the first token, at the decoding thread's pace. */
  tokensPerSecond: number;
}

export interface GenerateResult {
  text: string;
  /** Generated token ids (including those of a stop sequence, which `text` leaves out). */
  tokens: number[];
  promptTokens: number;
  stopReason: StopReason;
  /** The stop sequence that ended generation, when stopReason is 'stop'. */
  stopSequence?: string;
  timings: GenerationTimings;
}

export interface GenerationRequest {
  addon: NativeAddon;
  model: NativeModel;
  context: NativeContext;
  promptTokens: Int32Array;
  maxTokens: number;
  sampler: NativeSamplerParams;
  stopSequences: string[];
  signal?: AbortSignal;
  stopOnAbort?: boolean;
  /** The flag that stops this generation; the caller keeps it to stop it too (dispose, stream break). */
  cancel: NativeCancelFlag;
  /** Receives each piece of text as soon as it is safe to show (never part of a stop sequence). */
  onText?: (text: string) => void;
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

  constructor(private readonly stopSequences: string[], private readonly emit: (text: string) => void) {}

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
      this.#text = this.#text.slice(0, stopAt);
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

const nativeStopReasons: Record<NativeGenerateResult['stopReason'], StopReason> = {
  eog: 'eos',
  maxTokens: 'maxTokens',
  aborted: 'abort',
  contextFull: 'contextFull',
};

export async function runGeneration(request: GenerationRequest): Promise<GenerateResult> {
  const { addon, model, context, signal } = request;
  const callSite = new Error();
  const started = performance.now();
  let firstTokenSeenAt = 0;
  let firstTokenAt = 0;
  let lastTokenAt = 0;
  const tokens: number[] = [];
  const { cancel } = request;
  const onText = request.onText;
  let callbackError: unknown;
  const assembler = new TextAssembler(request.stopSequences, (text) => {
    if (!onText) return;
    try {
      onText(text);
    } catch (error) {
      // A throwing callback ends the generation; the error is reported to the caller.
      callbackError ??= error;
      cancel.cancel();
    }
  });
  const onAbort = () => cancel.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted) cancel.cancel();

  const sampler = new addon.Sampler(model, request.sampler);
  let result: NativeGenerateResult;
  try {
    result = await context.generate(request.promptTokens, sampler, request.maxTokens, cancel, (token, piece, atMs) => {
      // Time to first token is what the caller sees (JS clock); throughput is the engine's own
      // pace (the context thread's clock), not how promptly the event loop picked tokens up.
      if (tokens.length === 0) {
        firstTokenSeenAt = performance.now();
        firstTokenAt = atMs;
      }
      lastTokenAt = atMs;
      tokens.push(token);
      if (assembler.push(piece)) cancel.cancel();
    });
  } catch (error) {
    throw fromNativeError(error, callSite);
  } finally {
    sampler.dispose();
    signal?.removeEventListener('abort', onAbort);
  }
  if (callbackError !== undefined) throw callbackError;

  const text = assembler.finish();
  let stopReason = nativeStopReasons[result.stopReason];
  if (assembler.stopSequence !== undefined) stopReason = 'stop';
  if (stopReason === 'abort' && signal?.aborted && !request.stopOnAbort) throw signal.reason;

  const totalMs = performance.now() - started;
  const generationMs = tokens.length > 1 ? lastTokenAt - firstTokenAt : 0;
  return {
    text,
    tokens,
    promptTokens: result.promptTokens,
    stopReason,
    ...(assembler.stopSequence !== undefined ? { stopSequence: assembler.stopSequence } : {}),
    timings: {
      promptMs: result.promptMs,
      timeToFirstTokenMs: tokens.length > 0 ? firstTokenSeenAt - started : 0,
      generationMs,
      totalMs,
      promptTokensPerSecond: result.promptMs > 0 ? (result.promptTokens * 1000) / result.promptMs : 0,
      tokensPerSecond: generationMs > 0 ? ((tokens.length - 1) * 1000) / generationMs : 0,
    },
  };
}
