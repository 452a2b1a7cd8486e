/**
 * Log probabilities of generated tokens, as results and streams carry them: what the engine
 * reports per token (native/sampler.h: the chosen token's log probability and the best
 * alternatives' ids and log probabilities) with each token's text and bytes.
 */
import type { NativeModel } from './binding/native.js';

/** One alternative a token was chosen over (or the chosen token itself, among the best). */
export interface TokenAlternative {
  /** The token's text (UTF-8; a token that is part of a character shows as U+FFFD). */
  token: string;
  /** Its id in the model's vocabulary. */
  id: number;
  /** Natural log of its probability: for sampling, in the distribution the token was drawn from; for greedy decoding, the full softmax of the logits. */
  logprob: number;
  /** Its UTF-8 bytes (a token that is part of a character has only some of them). */
  bytes: readonly number[];
}

/** A generated token with its log probability and, with topLogprobs, the best alternatives (most likely first). */
export interface TokenLogprob extends TokenAlternative {
  top: TokenAlternative[];
}

interface TokenText {
  token: string;
  bytes: readonly number[];
}

function decode(piece: Buffer): TokenText {
  return { token: piece.toString('utf8'), bytes: Object.freeze(Array.from(piece)) };
}

/**
 * Token texts and bytes for log probabilities, cached per model: the alternatives' pieces are
 * fetched in one native call per token for the ids not seen yet, and decoded once.
 */
export class TokenTexts {
  readonly #texts = new Map<number, TokenText>();

  constructor(
    private readonly native: NativeModel,
    private readonly special: boolean,
  ) {}

  /** A token event's log probabilities (onToken's last three arguments) as a TokenLogprob; `piece` is the chosen token's text as the engine wrote it. */
  logprob(id: number, piece: Buffer, logprob: number, topTokens: Int32Array, topLogprobs: Float32Array): TokenLogprob {
    let missing: number[] | undefined;
    for (const t of topTokens) if (!this.#texts.has(t)) (missing ??= []).push(t);
    if (missing !== undefined) {
      const pieces = this.native.tokenPieces(Int32Array.from(missing), this.special);
      missing.forEach((t, i) => this.#texts.set(t, decode(pieces[i]!)));
    }
    const top: TokenAlternative[] = [];
    for (let i = 0; i < topTokens.length; i++) {
      const text = this.#texts.get(topTokens[i]!)!;
      top.push({ token: text.token, id: topTokens[i]!, logprob: topLogprobs[i]!, bytes: text.bytes });
    }
    const chosen = decode(piece);
    return { token: chosen.token, id, logprob, bytes: chosen.bytes, top };
  }
}
