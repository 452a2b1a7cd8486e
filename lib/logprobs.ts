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
  bytes: number[];
}

/** A generated token with its log probability and, with topLogprobs, the best alternatives (most likely first). */
export interface TokenLogprob extends TokenAlternative {
  top: TokenAlternative[];
}

/** Token texts and bytes for log probabilities, one native call per batch of unknown ids, cached per model. */
export class TokenTexts {
  readonly #pieces = new Map<number, Buffer>();

  constructor(
    private readonly native: NativeModel,
    private readonly special: boolean,
  ) {}

  /** The token's own piece (llama_token_to_piece), as the engine streams it. */
  piece(id: number): Buffer {
    let piece = this.#pieces.get(id);
    if (piece === undefined) {
      piece = this.native.tokenPieces(Int32Array.of(id), this.special)[0]!;
      this.#pieces.set(id, piece);
    }
    return piece;
  }

  alternative(id: number, logprob: number, piece: Buffer = this.piece(id)): TokenAlternative {
    return { token: piece.toString('utf8'), id, logprob, bytes: Array.from(piece) };
  }

  /** A token event's log probabilities (onToken's last three arguments) as a TokenLogprob. */
  logprob(id: number, piece: Buffer, logprob: number, topTokens: Int32Array, topLogprobs: Float32Array): TokenLogprob {
    const missing = Array.from(topTokens).filter((t) => !this.#pieces.has(t));
    if (missing.length > 0) {
      const pieces = this.native.tokenPieces(Int32Array.from(missing), this.special);
      missing.forEach((t, i) => this.#pieces.set(t, pieces[i]!));
    }
    const top = Array.from(topTokens, (t, i) => this.alternative(t, topLogprobs[i]!));
    return { ...this.alternative(id, logprob, piece), top };
  }
}
