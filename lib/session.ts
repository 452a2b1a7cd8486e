/**
 * LlamaSession: one conversation on a model, from model.createSession(). Its requests go back to
 * the sequence its last one used while that sequence is idle, and other requests take that
 * sequence last, so each turn evaluates only what is new since the previous one. When another
 * request does take it, the engine first parks the session's KV state in host memory (within
 * LoadOptions.parkedSessionBytes, least recently used evicted first) and restores it at the
 * session's next call (`cacheSource: 'restored'`). Nothing is ever wrong for being evicted: a
 * session whose state is gone evaluates its prompt again (its result's `cachedTokens` says how
 * much was reused). Calls on one session run one after another, in call order.
 */
import { DisposedError } from './errors.js';
import type { GenerateResult } from './generation.js';
import type { ChatDelta, ChatPlan } from './chat.js';
import type { ChatMessage, ChatOptions, ChatResult, ChatStream, TextStream } from './model.js';
import type { GenerateOptions } from './options.js';

/** What a session needs from its model (bound to the model's private parts by createSession). */
export interface SessionHost {
  readonly id: number;
  /** Token ids of `text` as generate() tokenizes a prompt; `addSpecial` adds BOS as the model wants. */
  tokenize(text: string, addSpecial: boolean): number[];
  /** The text of `tokens`, special tokens written out, nothing removed: tokenize()'s inverse where there is one. */
  detokenize(tokens: number[]): string;
  /** Generates from whole-conversation tokens in this session's sequence (held to a chat plan's grammar when given). */
  generate(tokens: number[], options: GenerateOptions, plan?: ChatPlan): Promise<GenerateResult>;
  stream(tokens: number[], options: GenerateOptions): TextStream;
  /** The chat template's rendering of `messages`, the generate options and plan chat() would use, and the reading of its reply. */
  chatPrompt(
    messages: ChatMessage[],
    options: ChatOptions,
  ): { prompt: string; generate: GenerateOptions; plan: ChatPlan; finish(raw: GenerateResult): ChatResult };
  /** A chat reply's deltas from whole-conversation tokens; `record` sees the raw generation before the result is read. */
  chatStream(tokens: number[], options: GenerateOptions, plan: ChatPlan, record: (raw: GenerateResult) => void): ChatStream;
  /** The model is disposed. */
  readonly disposed: boolean;
  /** A new session on the same model whose sequence starts as a copy of this one's, when one is free. */
  fork(): LlamaSession;
  end(): void;
}

export class LlamaSession implements AsyncDisposable {
  readonly #host: SessionHost;
  #tokens: number[] = [];
  // What #tokens spell after a chat turn (the rendered prompt and the reply's text), so that the
  // next turn keeps the reply's tokens as generated instead of tokenizing its text again, which for
  // many outputs gives other tokens and would evaluate the reply and everything after it again.
  // Undefined when the tokens do not spell a known text.
  #text: string | undefined;
  #tail: Promise<unknown> = Promise.resolve();
  #disposed = false;

  /** @internal Use model.createSession(). */
  constructor(host: SessionHost) {
    this.#host = host;
  }

  /** The conversation so far as the session's sequence holds it: every prompt and reply token, in order. */
  get tokens(): readonly number[] {
    return this.#tokens;
  }

  get disposed(): boolean {
    return this.#disposed || this.#host.disposed;
  }

  /**
   * Continues the conversation with `text` (tokenized with BOS only when the session is empty) and
   * generates, like model.generate() with the session's tokens before the text.
   */
  generate(text: string, options: GenerateOptions = {}): Promise<GenerateResult> {
    return this.#queue(() => {
      const prompt = this.#extend(text);
      return this.#host.generate(prompt, options).then((result) => this.#record(prompt, result));
    });
  }

  /** generate() as a stream of text pieces; `result` settles with the whole result. */
  stream(text: string, options: GenerateOptions = {}): TextStream {
    return this.#queuedStream<string, GenerateResult>(() => {
      const prompt = this.#extend(text);
      const inner = this.#host.stream(prompt, options);
      return { inner, result: inner.result.then((r) => this.#record(prompt, r)) };
    });
  }

  /**
   * Renders the whole conversation `messages` with the model's chat template and generates the
   * reply, like model.chat(); the part of the rendering that the previous turn left in the sequence
   * is not evaluated again.
   */
  chat(messages: ChatMessage[], options: ChatOptions = {}): Promise<ChatResult> {
    return this.#queue(() => {
      const { prompt, generate, plan, finish } = this.#host.chatPrompt(messages, options);
      const tokens = this.#chatTokens(prompt);
      return this.#host.generate(tokens, generate, plan).then((result) => finish(this.#recordChat(prompt, tokens, result)));
    });
  }

  /** chat() as a stream of deltas (answer, reasoning, tool calls); `result` is the parsed ChatResult. */
  chatStream(messages: ChatMessage[], options: ChatOptions = {}): ChatStream {
    return this.#queuedStream<ChatDelta, ChatResult>(() => {
      const { prompt, generate, plan } = this.#host.chatPrompt(messages, options);
      const tokens = this.#chatTokens(prompt);
      const inner = this.#host.chatStream(tokens, generate, plan, (raw) => this.#recordChat(prompt, tokens, raw));
      return { inner, result: inner.result };
    });
  }

  /**
   * A stream whose request waits its turn in the session's queue: the iterator waits until
   * `start` has run, then yields the inner stream's pieces; `result` settles with start's result.
   */
  #queuedStream<T, R>(
    start: () => { inner: AsyncIterable<T>; result: Promise<R> },
  ): {
    result: Promise<R>;
    [Symbol.asyncIterator](): AsyncIterator<T>;
  } {
    let inner: AsyncIterable<T> | undefined;
    let started!: () => void;
    const ready = new Promise<void>((resolve) => (started = resolve));
    const result = this.#queue(() => {
      const begun = start();
      inner = begun.inner;
      started();
      return begun.result;
    });
    result.catch(() => {
      started(); // refused before it started: the iterator reports the error
    });
    return {
      result,
      async *[Symbol.asyncIterator]() {
        await ready;
        if (inner === undefined) {
          await result;
          return;
        }
        yield* inner;
      },
    };
  }

  /** Forgets the conversation: the next call starts from an empty session. */
  reset(): void {
    this.#assertAlive();
    this.#tokens = [];
    this.#text = undefined;
  }

  /**
   * A new session with this one's conversation so far, to continue it another way. Its sequence
   * starts as a copy of this one's KV cache (llama_memory_seq_cp) when a sequence is free and this
   * one is idle, or as this one's parked state restored (llama_state_seq_set_data) when it is
   * parked; otherwise its first call evaluates the shared part again.
   */
  fork(): LlamaSession {
    this.#assertAlive();
    const twin = this.#host.fork();
    twin.#tokens = [...this.#tokens];
    twin.#text = this.#text;
    return twin;
  }

  /** Ends the session: its sequence is no longer kept for it and its parked state is freed. Safe to call more than once. */
  dispose(): Promise<void> {
    if (!this.#disposed) {
      this.#disposed = true;
      if (!this.#host.disposed) this.#host.end();
    }
    return this.#tail.then(
      () => undefined,
      () => undefined,
    );
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  #assertAlive(): void {
    if (this.disposed) throw new DisposedError(this.#host.disposed ? 'model' : 'session');
  }

  #queue<T>(operation: () => Promise<T>): Promise<T> {
    if (this.disposed) return Promise.reject(new DisposedError(this.#host.disposed ? 'model' : 'session'));
    const run = this.#tail.then(() => {
      this.#assertAlive();
      return operation();
    });
    this.#tail = run.catch(() => undefined);
    return run;
  }

  #extend(text: string): number[] {
    if (typeof text !== 'string') throw new TypeError(`text must be a string, got ${text === null ? 'null' : typeof text}`);
    return [...this.#tokens, ...this.#host.tokenize(text, this.#tokens.length === 0)];
  }

  #record(prompt: number[], result: GenerateResult): GenerateResult {
    this.#tokens = [...prompt, ...result.tokens];
    this.#text = undefined;
    return result;
  }

  /**
   * A chat turn's prompt tokens: where the rendering continues the text the session holds (the
   * previous rendering and its reply, as a client resends them), the held tokens and the new
   * text's; otherwise the whole rendering tokenized. Either way the tokens spell the rendering.
   */
  #chatTokens(prompt: string): number[] {
    const last = this.#tokens.at(-1);
    if (this.#text !== undefined && last !== undefined && prompt.startsWith(this.#text)) {
      const rest = this.#tokensSpelling(prompt.slice(this.#text.length), last);
      if (rest !== undefined) return [...this.#tokens, ...rest];
    }
    return this.#host.tokenize(prompt, true);
  }

  /** Tokens that add exactly `text` after the token `after`; undefined where none are found. */
  #tokensSpelling(text: string, after: number): number[] | undefined {
    const direct = this.#host.tokenize(text, false);
    if (this.#spells(after, direct, text)) return direct;
    // SentencePiece tokenizers put a space before the start of a text: tokenized behind a newline,
    // the space lands there, and the tokens up to the newline are dropped.
    const anchored = this.#host.tokenize(`\n${text}`, false);
    for (let k = 1; k <= 2 && k < anchored.length; k++) {
      if (this.#host.detokenize(anchored.slice(0, k)).endsWith('\n')) {
        const rest = anchored.slice(k);
        return this.#spells(after, rest, text) ? rest : undefined;
      }
    }
    return undefined;
  }

  /**
   * Whether `tokens` after the token `after` add exactly `text`. Detokenized behind `after`,
   * because a detokenizer drops the space a text's first token starts with, which in the middle of
   * a conversation is part of the text.
   */
  #spells(after: number, tokens: number[], text: string): boolean {
    return this.#host.detokenize([after, ...tokens]) === this.#host.detokenize([after]) + text;
  }

  #recordChat(prompt: string, tokens: number[], result: GenerateResult): GenerateResult {
    this.#tokens = [...tokens, ...result.tokens];
    // A reply whose text is not exactly its tokens' (a stop string cut from it, a control token
    // left out) is tokenized from the rendering next time.
    const last = tokens.at(-1);
    this.#text = last !== undefined && this.#spells(last, result.tokens, result.text) ? prompt + result.text : undefined;
    return result;
  }
}
