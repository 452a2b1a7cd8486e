/**
 * LlamaModel: a loaded model with its context. Owns its context and a reference on the native model
 * (SharedWeights: a fork made by forkModel() holds another over the same weights), submits every
 * generation to the context's engine (which runs up to `sequences` at once and queues the rest),
 * holds requests back while an operation needs the context to itself, and disposes in cascade.
 */
import {
  chatResults,
  planChat,
  splitChatOptions,
  validateMessages,
  validateTemplateOnlyOptions,
  withTemplateStops,
  type ChatHost,
  type ChatMessage,
  type ChatOptions,
  type ChatPlan,
  type ChatResult,
  type ChatStream,
  type ChatTemplateOptions,
} from './chat.js';
import { ChatStreamState } from './chat-stream.js';
import { DisposedError, EmbeddingError, ErrorCode, fromNativeError } from './errors.js';
import {
  embedTexts,
  rerankDocuments,
  type EmbedOptions,
  type EmbedResult,
  type EmbeddingHost,
  type Pooling,
  type RerankOptions,
  type RerankResult,
} from './embedding.js';
import { runGenerations, type BatchResult, type GenerateResult } from './generation.js';
import { TokenTexts } from './logprobs.js';
import { prepareRequest, tokenIds, type RequestHost } from './request.js';
import { LlamaSession } from './session.js';
import type { GpuDecision } from './gpu/decision.js';
import { buildLayerReport, type LayerReport } from './layer-report.js';
import type { LoadedBinary } from './binding/load-native.js';
import type {
  NativeCancelFlag,
  NativeContext,
  NativeContextInfo,
  NativeContextParams,
  NativeEmbedResult,
  NativeModel,
  NativeModelInfo,
} from './binding/native.js';
import { validateGenerateOptions, type BatchGenerateOptions, type GenerateOptions } from './options.js';
import { expectObject, expectString, optionalBoolean, rejectUnknownKeys, typeError, rangeError } from './validate.js';
import { registerFaultTarget } from './internal/fault.js';

export type { ChatDelta, ChatMessage, ChatOptions, ChatResult, ChatStream, ChatTemplateOptions } from './chat.js';

export interface ModelInfo extends Omit<NativeModelInfo, 'fileType'> {
  path: string;
  /** The model only embeds (an encoder such as BERT, or a file that declares a pooling type): no generate(), chat() or sessions. */
  embeddingModel: boolean;
  /** How embed() pools token vectors; null when the model was loaded without embeddings. */
  pooling: Pooling | null;
  /** A classifier head that rerank() applies (pooling 'rank'). */
  rankingHead: boolean;
  /** Size of the file on disk. */
  fileSizeBytes: number;
  /** Quantization / file type, e.g. "Q4_0", "F16" (llama_ftype_name). */
  quantization: string;
}

export type ContextInfo = NativeContextInfo;

/**
 * model.engineStats(): what the context's engine published after its last step. Each figure is
 * read on its own (atomics), so they are not one snapshot; reading them never waits for a step.
 */
export interface EngineStats {
  /** KV-cache cells holding tokens: every sequence's cached tokens, busy or idle (what a later prompt may reuse). */
  usedCells: number;
  /** KV-cache cells of the context (contextInfo.totalContextSize). */
  totalCells: number;
  /** Sessions whose KV state is parked in host memory (LoadOptions.parkedSessionBytes). */
  parkedSessions: number;
  /** Host memory those states take (bytes), at most parkedSessionBytes. */
  parkedBytes: number;
  /** Engine steps that ran a llama_decode since load. */
  steps: number;
  /** Time of those steps in llama_decode and the wait for its result (ms, summed). */
  decodeMs: number;
  /** The rest of those steps (ms, summed): admission, parking and restoring, batch assembly, sampling, detokenizing, events. */
  hostMs: number;
}

/** A token stream: iterate for text pieces; `result` settles with the whole result. */
export interface TextStream extends AsyncIterable<string> {
  result: Promise<GenerateResult>;
}

/**
 * The native model (the weights) and the LlamaModels over it: the one Llama.load() returned and each
 * fork (forkModel). The one place that counts them: each holds one reference from its construction to
 * its dispose(), and the last release() disposes the native model and runs `onDispose` (which releases
 * the load's hold on the rpc-servers it uses).
 */
export class SharedWeights {
  readonly native: NativeModel;
  readonly #onDispose: (() => void) | undefined;
  #references = 1;

  /** Holds the first reference: the loading model's. */
  constructor(native: NativeModel, onDispose?: () => void) {
    this.native = native;
    this.#onDispose = onDispose;
  }

  /** LlamaModels holding the weights (0 once they are freed). */
  get references(): number {
    return this.#references;
  }

  /** The last reference was released: the native model is disposed. */
  get disposed(): boolean {
    return this.#references === 0;
  }

  acquire(): void {
    if (this.#references === 0) throw new DisposedError('model');
    this.#references++;
  }

  release(): void {
    if (this.#references === 0) return;
    if (--this.#references > 0) return;
    this.native.dispose();
    this.#onDispose?.();
  }
}

export interface ModelParts {
  binary: LoadedBinary;
  /** The native model, with a reference already held for the model these parts make. */
  weights: SharedWeights;
  /** The generation context; for an embedding model, its embeddings context (which refuses to generate). */
  context: NativeContext;
  /** The embeddings context: `context` itself for an embedding model, a second one for a generative model loaded with embeddings, else null. */
  embeddingContext: NativeContext | null;
  /** What `context` was created with (a fork creates its own context with them). */
  contextParams: Readonly<NativeContextParams>;
  /** What a separate `embeddingContext` was created with; null when there is none (or it is `context`). */
  embeddingContextParams: Readonly<NativeContextParams> | null;
  embedding: { embeddingModel: boolean; pooling: Pooling | null; rankingHead: boolean };
  decision: GpuDecision;
  /** The load's offloadKvCache (false: the KV cache on the CPU was asked for). */
  offloadKvCache: boolean;
  path: string;
  fileSizeBytes: number;
}

/** forkModel()'s options. */
export interface ForkOptions {
  /** One throwaway decode on the new context, as a load does (default true). */
  warmup?: boolean;
}

/** A stream refused before it started (a promise-returning call reports failures, never throws). */
function failedStream<T = GenerateResult>(error: unknown): AsyncIterable<string> & { result: Promise<T> } {
  const result = Promise.reject(error);
  result.catch(() => undefined); // the iterator or `result` reports it; never unhandled here
  return { result, [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(error) }) };
}

/** Session ids for the engine (0 is none); unique per process, so never reused by another model's session either. */
let nextSessionId = 1;

/** LlamaModel's private fork and weights, for forkModel() and sharedWeights() below (set by its static block). */
let forkOf!: (model: LlamaModel, options: ForkOptions) => Promise<LlamaModel>;
let weightsOf!: (model: LlamaModel) => SharedWeights;

export class LlamaModel implements AsyncDisposable {
  readonly info: Readonly<ModelInfo>;
  readonly contextInfo: Readonly<ContextInfo>;
  readonly #binary: LoadedBinary;
  readonly #parts: ModelParts;
  readonly #weights: SharedWeights;
  readonly #native: NativeModel;
  readonly #context: NativeContext;
  readonly #embeddingContext: NativeContext | null;
  /** embed() and rerank() calls run one after another on the embeddings context: the tail of that queue. */
  #embedQueue: Promise<unknown> = Promise.resolve();
  readonly #decision: GpuDecision;
  readonly #offloadKvCache: boolean;
  /** What a new request waits for: resolved, or an exclusive operation (layerReport) in progress. */
  #gate: Promise<unknown> = Promise.resolve();
  /** Every request submitted and not settled: how to stop it, and its settlement. */
  readonly #running = new Set<{ cancel(): void; done: Promise<unknown> }>();
  #disposing: Promise<void> | undefined;
  /** llama-server's enable_thinking default per chat template (null: the model's own). */
  readonly #thinkingDefaults = new Map<string | null, boolean>();
  readonly #tokenTexts = new Map<boolean, TokenTexts>();

  static {
    forkOf = (model, options) => model.#fork(options);
    weightsOf = (model) => model.#weights;
  }

  /** @internal Use Llama.load(). */
  constructor(parts: ModelParts) {
    this.#binary = parts.binary;
    this.#parts = parts;
    this.#weights = parts.weights;
    this.#native = parts.weights.native;
    this.#context = parts.context;
    this.#embeddingContext = parts.embeddingContext;
    this.#decision = parts.decision;
    this.#offloadKvCache = parts.offloadKvCache;
    const { fileType: _fileType, ...info } = this.#native.info();
    this.info = Object.freeze({
      ...info,
      ...parts.embedding,
      path: parts.path,
      fileSizeBytes: parts.fileSizeBytes,
      quantization: info.fileTypeName,
    });
    this.contextInfo = Object.freeze(parts.context.info());
    registerFaultTarget(this, parts.context);
  }

  get disposed(): boolean {
    return this.#disposing !== undefined;
  }

  /**
   * The KV cache's fill, the sessions parked in host memory, and the engine's time per step split
   * into decode and host work: cheap enough for every metrics scrape (it never waits for a step).
   */
  engineStats(): EngineStats {
    this.#assertAlive();
    return this.#context.engineStats();
  }

  /** Text to token ids. `addSpecial` adds BOS/EOS as the model wants (default true). */
  tokenize(text: string, options: { addSpecial?: boolean; parseSpecial?: boolean } = {}): number[] {
    this.#assertAlive();
    expectString('text', text);
    const o = expectObject('options', options);
    rejectUnknownKeys('options', o, ['addSpecial', 'parseSpecial']);
    return Array.from(
      this.#native.tokenize(
        text,
        optionalBoolean('options.addSpecial', o.addSpecial) ?? true,
        optionalBoolean('options.parseSpecial', o.parseSpecial) ?? false,
      ),
    );
  }

  /** Token ids to text. `special` renders special tokens such as BOS (default false). */
  detokenize(tokens: ArrayLike<number>, options: { special?: boolean } = {}): string {
    this.#assertAlive();
    const o = expectObject('options', options);
    rejectUnknownKeys('options', o, ['special']);
    const special = optionalBoolean('options.special', o.special) ?? false;
    return this.#native.detokenize(tokenIds('tokens', tokens, this.info.vocabSize), !special, special).toString('utf8');
  }

  /**
   * The prompt chat() would generate from: `messages` rendered by llama.cpp's chat templates
   * (lib/chat.ts says how). Generating from it with generate() is the same as chat().
   */
  applyChatTemplate(messages: ChatMessage[], options: ChatTemplateOptions = {}): string {
    this.#assertAlive();
    const valid = validateMessages(messages);
    const template = validateTemplateOnlyOptions(options);
    try {
      return planChat(this.#chatHost(), valid, template).rendered.prompt;
    } catch (error) {
      throw fromNativeError(error);
    }
  }

  /**
   * Generates text for a prompt (a string, or token ids). Concurrent calls on one model run
   * together, up to the load's `sequences` at once, decoded in shared batches; the rest wait in
   * order of arrival (an aborted signal takes a waiting call out of the queue). A prompt that
   * starts with what an idle sequence holds (a system prompt, the conversation so far) reuses it:
   * `cachedTokens` says how many tokens were not evaluated again.
   */
  generate(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): Promise<GenerateResult> {
    return this.#run([['prompt', prompt]], options).then((batch) => batch.results[0]!);
  }

  /**
   * Generates for several prompts at once, one request each on the same engine as generate(),
   * decoded together in shared batches: more tokens per second in total than one prompt after
   * another (docs/benchmarks.md). Needs a model loaded with `sequences` of at least
   * `prompts.length`; each prompt has its own `contextSize` window. Options apply to every prompt;
   * with sampling, prompt i uses seed + i. `onText(text, index)` streams each prompt's text.
   */
  generateBatch(prompts: (string | ArrayLike<number>)[], options: BatchGenerateOptions = {}): Promise<BatchResult> {
    try {
      this.#assertAlive();
      if (!Array.isArray(prompts) || prompts.length === 0)
        throw typeError('prompts', 'a non-empty array of prompts (strings or token ids)', prompts);
      const { sequences } = this.contextInfo;
      if (prompts.length > sequences) {
        throw rangeError(
          'prompts.length',
          `at most ${sequences} (the model was loaded with sequences: ${sequences})`,
          prompts.length,
          `load with { sequences: ${prompts.length} } to generate for ${prompts.length} prompts at once`,
        );
      }
      if (options !== null && typeof options === 'object' && 'n' in options) {
        throw rangeError(
          'options.n',
          'not an option of generateBatch (each prompt is one completion)',
          (options as { n?: unknown }).n,
          'call generate() with n for several completions of one prompt',
        );
      }
      return this.#run(
        prompts.map((p, i) => [`prompts[${i}]`, p]),
        options as GenerateOptions,
      );
    } catch (error) {
      return Promise.reject(fromNativeError(error));
    }
  }

  /**
   * A conversation kept in one sequence of this model's context (lib/session.ts): each call
   * continues it, and evaluates only what is new since the previous turn while its sequence is
   * not taken by other requests. End it with dispose() (or `await using`).
   */
  createSession(): LlamaSession {
    return this.#createSession(0);
  }

  /** A session; with a parent id, one whose sequence starts as a copy of the parent's (fork()). */
  #createSession(parent: number): LlamaSession {
    this.#assertAlive();
    this.#assertGenerative();
    const id = nextSessionId++;
    if (parent !== 0) this.#context.forkSession(parent, id);
    const isDisposed = () => this.disposed;
    return new LlamaSession({
      id,
      tokenize: (text, addSpecial) => Array.from(this.#native.tokenize(text, addSpecial, true)),
      detokenize: (tokens) => this.#native.detokenize(Int32Array.from(tokens), false, true).toString('utf8'),
      generate: (tokens, options, plan) => this.#run([['prompt', tokens]], options, id, plan).then((batch) => batch.results[0]!),
      stream: (tokens, options) => this.#stream(tokens, options, id),
      chatPrompt: (messages, options) => {
        const { plan, generate } = this.#chatPlan(messages, options);
        return { prompt: plan.rendered.prompt, generate, plan, finish: (raw) => chatResults(this.#native, plan, raw) };
      },
      chatStream: (tokens, options, plan, record) => this.#chatStream(tokens, options, plan, id, record),
      get disposed() {
        return isDisposed();
      },
      fork: () => this.#createSession(id),
      end: () => this.#context.endSession(id),
    });
  }

  /** Like generate(), as an async iterable of text pieces. Breaking out of the loop stops the generation. */
  stream(prompt: string | ArrayLike<number>, options: GenerateOptions = {}): TextStream {
    return this.#stream(prompt, options, 0);
  }

  #stream(prompt: string | ArrayLike<number>, options: GenerateOptions, session: number): TextStream {
    const pieces: string[] = [];
    let wake: (() => void) | undefined;
    let settled = false;
    const flags: NativeCancelFlag[] = [];
    const userOnText = options?.onText;
    // Options that are not an object, or an onText that is not a function, reach validation as given.
    const wrap =
      options === undefined ||
      (typeof options === 'object' &&
        options !== null &&
        !Array.isArray(options) &&
        (userOnText === undefined || typeof userOnText === 'function'));
    if (wrap && options?.n !== undefined && options.n !== 1) {
      return failedStream(
        rangeError('options.n', '1 with stream()', options.n, 'use generate() with onText(text, choice), or chatStream()'),
      );
    }
    const result = this.#run(
      [['prompt', prompt]],
      !wrap
        ? options
        : {
            ...options,
            onText: (text, choice, info) => {
              pieces.push(text);
              wake?.();
              userOnText?.(text, choice, info);
            },
          },
      session,
      undefined,
      (flag) => flags.push(flag),
    ).then((batch) => batch.results[0]!);
    const done = result.then(
      () => undefined,
      (error: unknown) => ({ error }),
    );
    void done.then(() => {
      settled = true;
      wake?.();
    });
    result.catch(() => undefined); // the iterator or `result` reports it; never unhandled here
    return {
      result,
      async *[Symbol.asyncIterator]() {
        try {
          for (;;) {
            if (pieces.length > 0) {
              yield pieces.shift() as string;
              continue;
            }
            if (settled) {
              const failure = await done;
              if (failure) throw failure.error;
              return;
            }
            await new Promise<void>((resolve) => (wake = resolve));
            wake = undefined;
          }
        } finally {
          if (!settled) for (const flag of flags) flag.cancel();
        }
      },
    };
  }

  /**
   * Renders `messages` with the chat template (with `tools`, and a `responseFormat`), generates
   * the assistant's reply and splits it with llama.cpp's chat parser into the answer (`text`),
   * the reasoning block (`reasoning`) and the tool calls (`toolCalls`, each checked against its
   * tool's parameters).
   */
  chat(messages: ChatMessage[], options: ChatOptions = {}): Promise<ChatResult> {
    try {
      const { plan, generate } = this.#chatPlan(messages, options);
      return this.#run([['prompt', plan.rendered.prompt]], generate, 0, plan).then((batch) =>
        chatResults(this.#native, plan, batch.results[0]!),
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * chat() as a stream of deltas: answer text, reasoning text and tool calls (index, id and name
   * first, then fragments of the arguments) as they are generated; `result` is the ChatResult.
   */
  chatStream(messages: ChatMessage[], options: ChatOptions = {}): ChatStream {
    try {
      const { plan, generate } = this.#chatPlan(messages, options);
      return this.#chatStream(plan.rendered.prompt, generate, plan, 0);
    } catch (error) {
      return failedStream<ChatResult>(error) as unknown as ChatStream;
    }
  }

  #chatStream(
    prompt: string | number[],
    options: GenerateOptions,
    plan: ChatPlan,
    session: number,
    record?: (raw: GenerateResult) => void,
  ): ChatStream {
    const state = new ChatStreamState(this.#native, plan);
    const flags: NativeCancelFlag[] = [];
    const userOnText: unknown = options?.onText;
    const forwarded: GenerateOptions =
      userOnText === undefined || typeof userOnText === 'function'
        ? {
            ...options,
            onText: (text, choice, info) => {
              state.onText(text, choice, info);
              (userOnText as GenerateOptions['onText'])?.(text, choice, info);
            },
          }
        : options;
    const raw = this.#run([['prompt', prompt]], forwarded, session, plan, (flag) => flags.push(flag)).then((batch) => batch.results[0]!);
    const result = raw.then(
      (r) => {
        record?.(r);
        return state.finish(r);
      },
      (error: unknown) => {
        state.fail(error);
        throw error;
      },
    );
    result.catch(() => undefined); // the iterator or `result` reports it; never unhandled here
    return {
      result,
      [Symbol.asyncIterator]: () =>
        state.deltas(() => {
          for (const flag of flags) flag.cancel();
        }),
    };
  }

  /**
   * One throwaway decode (the model's BOS token, one greedy token), so that the next request does
   * not pay first-use costs. load() calls it unless `warmup: false`; what it leaves in the KV cache
   * is at most a one-token prefix that a later prompt may reuse.
   */
  async warmUp(): Promise<void> {
    if (this.info.embeddingModel) {
      await this.#embedNative(Int32Array.of(0), Uint32Array.of(1));
      return;
    }
    const bos = this.tokenize('', { addSpecial: true });
    // Token 0 exists in every vocabulary; a model without BOS still gets a real decode.
    await this.generate(bos.length > 0 ? bos : [0], { maxTokens: 1, temperature: 0 });
  }

  /**
   * Where every layer, tensor, cache and op of this model lives. Waits for running generations; later
   * ones wait for it. A fork (forkModel) reports the same layers and weights as the model it shares
   * them with: `devices[].weightsBytes` counts the one shared copy in each of their reports.
   */
  layerReport(): Promise<LayerReport> {
    return this.#exclusive(async () => {
      const { addon } = this.#binary;
      return buildLayerReport({
        decision: this.#decision,
        placement: addon.layerPlacement(this.#native),
        memory: addon.memoryBreakdown(this.#context),
        // A generation step decodes one token of every sequence.
        tokenGraph: addon.graphPlacement(this.#context, this.contextInfo.sequences),
        promptGraph: addon.graphPlacement(this.#context, Math.min(this.contextInfo.ubatchSize, this.contextInfo.contextSize)),
        offloadKvCache: this.#offloadKvCache,
      });
    });
  }

  /**
   * Frees the context, and the model's weights unless a fork (forkModel) still holds them. Running
   * generations are stopped and reject with ERR_DISPOSED, as do queued ones. Safe to call more than once.
   */
  dispose(): Promise<void> {
    this.#disposing ??= (async () => {
      const running = [...this.#running];
      for (const request of running) request.cancel();
      await Promise.allSettled(running.map((request) => request.done));
      await this.#gate.catch(() => undefined);
      // A running embed() stops at its next decode (ERR_DISPOSED); the contexts wait for it.
      if (this.#embeddingContext !== this.#context) this.#embeddingContext?.dispose();
      this.#context.dispose();
      this.#weights.release();
    })();
    return this.#disposing;
  }

  /** A LlamaModel over these weights with fresh contexts made with the same parameters (forkModel). */
  async #fork(options: ForkOptions): Promise<LlamaModel> {
    this.#assertAlive();
    const warmup = optionalBoolean('options.warmup', options.warmup) ?? true;
    const parts = this.#parts;
    const { addon } = this.#binary;
    // Held from now: this model may be disposed while the contexts are created.
    this.#weights.acquire();
    let context: NativeContext | undefined;
    let embeddingContext: NativeContext | undefined;
    try {
      context = await addon.Context.create(this.#native, parts.contextParams);
      if (parts.embeddingContext === parts.context) embeddingContext = context;
      else if (parts.embeddingContextParams !== null)
        embeddingContext = await addon.Context.create(this.#native, parts.embeddingContextParams);
    } catch (error) {
      if (embeddingContext !== context) embeddingContext?.dispose();
      context?.dispose();
      this.#weights.release();
      throw fromNativeError(error);
    }
    const fork = new LlamaModel({ ...parts, context, embeddingContext: embeddingContext ?? null });
    if (warmup) {
      try {
        await fork.warmUp();
      } catch (error) {
        await fork.dispose();
        throw fromNativeError(error);
      }
    }
    return fork;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }

  #assertAlive(): void {
    if (this.#disposing !== undefined) throw new DisposedError('model');
  }

  #assertGenerative(): void {
    if (this.info.embeddingModel) {
      throw new EmbeddingError(
        ErrorCode.EMBEDDINGS_ONLY,
        `${this.info.architecture} model ${this.info.name || this.info.path} is an embedding model: it does not generate text`,
        {
          remedy: 'call model.embed(texts) (or model.rerank(query, documents) for a reranker); load a generative model to generate or chat',
        },
      );
    }
  }

  /**
   * Vectors for texts (or token-id arrays), pooled per text as the load's `pooling` says (the
   * model's own by default), packed together into as few decodes as the context allows. A text
   * longer than contextInfo.batchSize tokens is ERR_TEXT_TOO_LONG unless `truncate: true`.
   */
  embed(texts: string | (string | ArrayLike<number>)[], options: EmbedOptions = {}): Promise<EmbedResult> {
    return this.#embedding((host) => embedTexts(host, texts, options));
  }

  /**
   * Scores each document's relevance to `query` with the model's ranking head (a reranker:
   * pooling 'rank'), in the documents' order, and ranks them best first. The pair is written
   * as the file's rerank prompt says, else as llama.cpp's tools write it.
   */
  rerank(query: string, documents: string[], options: RerankOptions = {}): Promise<RerankResult> {
    return this.#embedding((host) => rerankDocuments(host, query, documents, options));
  }

  #embedding<T>(operation: (host: EmbeddingHost) => Promise<T>): Promise<T> {
    try {
      this.#assertAlive();
      const context = this.#embeddingContext;
      const { pooling } = this.info;
      if (context === null || pooling === null) {
        throw new EmbeddingError(ErrorCode.NO_EMBEDDINGS, 'this model was loaded without embeddings', {
          remedy:
            'load it with { embeddings: true } (serve: --embeddings); it then keeps a second, embeddings context beside the one that generates',
        });
      }
      const { addEos, addSep, eosToken, sepToken } = this.info;
      const special = (token: number) => this.#native.detokenize(Int32Array.of(token), false, true).toString('utf8');
      const host: EmbeddingHost = {
        pooling,
        maxTokens: this.#embeddingContextInfo().batchSize,
        vocabSize: this.info.vocabSize,
        rankingHead: this.info.rankingHead,
        rerankTemplate: this.info.rerankTemplate,
        pairSeparator: (addEos && eosToken >= 0 ? special(eosToken) : '') + (addSep && sepToken >= 0 ? special(sepToken) : ''),
        tokenize: (text) => Array.from(this.#native.tokenize(text, true, true)),
        embed: (tokens, lengths) => this.#embedNative(tokens, lengths),
      };
      return operation(host);
    } catch (error) {
      return Promise.reject(fromNativeError(error));
    }
  }

  /** The embeddings context's sizes (contextInfo for an embedding model). */
  #embeddingContextInfo(): ContextInfo {
    return this.#embeddingContext === this.#context ? this.contextInfo : this.#embeddingContext!.info();
  }

  /** One native embed at a time on the embeddings context, in call order. */
  #embedNative(tokens: Int32Array, lengths: Uint32Array): Promise<NativeEmbedResult> {
    const context = this.#embeddingContext!;
    const run = this.#embedQueue.then(() => {
      this.#assertAlive();
      return context.embed(tokens, lengths);
    });
    this.#embedQueue = run.catch(() => undefined);
    return run.catch((error: unknown) => {
      if (this.#disposing !== undefined) throw new DisposedError('model');
      throw fromNativeError(error);
    });
  }

  /** Runs a request once no exclusive operation is in the way; requests run concurrently with each other. */
  #submit<T>(operation: () => Promise<T>, cancel: () => void): Promise<T> {
    if (this.#disposing !== undefined) return Promise.reject(new DisposedError('model'));
    const done = this.#gate.then(() => {
      this.#assertAlive();
      return operation();
    });
    const entry = { cancel, done: done.catch(() => undefined) };
    this.#running.add(entry);
    void entry.done.then(() => this.#running.delete(entry));
    return done;
  }

  /** Runs an operation that needs the context to itself: after every request so far, before any later one. */
  #exclusive<T>(operation: () => Promise<T>): Promise<T> {
    if (this.#disposing !== undefined) return Promise.reject(new DisposedError('model'));
    const before = [...this.#running].map((request) => request.done);
    const run = this.#gate
      .then(() => Promise.all(before))
      .then(() => {
        this.#assertAlive();
        return operation();
      });
    this.#gate = run.catch(() => undefined);
    return run;
  }

  #chatPlan(messages: ChatMessage[], options: ChatOptions): { plan: ChatPlan; generate: GenerateOptions } {
    this.#assertAlive();
    this.#assertGenerative();
    const valid = validateMessages(messages);
    const { template, generate } = splitChatOptions(options);
    try {
      const plan = planChat(this.#chatHost(), valid, template);
      return { plan, generate: withTemplateStops(generate, plan.rendered) };
    } catch (error) {
      throw fromNativeError(error);
    }
  }

  #chatHost(): ChatHost {
    return {
      addon: this.#binary.addon,
      native: this.#native,
      path: this.info.path,
      thinkingDefault: (template) => {
        let enabled = this.#thinkingDefaults.get(template);
        if (enabled === undefined) {
          // common_chat_templates_support_enable_thinking, as llama-server decides its default.
          try {
            const probe = this.#native.applyChatTemplate(template, [{ role: 'user', content: 'test' }], {
              enableThinking: true,
              addGenerationPrompt: true,
            });
            enabled = probe?.supportsThinking ?? false;
          } catch {
            enabled = false; // the rendering itself reports the template's problem
          }
          this.#thinkingDefaults.set(template, enabled);
        }
        return enabled;
      },
    };
  }

  #requestHost(): RequestHost {
    return {
      addon: this.#binary.addon,
      native: this.#native,
      context: this.#context,
      contextInfo: this.contextInfo,
      vocabSize: this.info.vocabSize,
      trainingContextSize: this.info.trainingContextSize,
      tokenTexts: (special) => {
        let texts = this.#tokenTexts.get(special);
        if (texts === undefined) {
          texts = new TokenTexts(this.#native, special);
          this.#tokenTexts.set(special, texts);
        }
        return texts;
      },
    };
  }

  /**
   * Validates and submits one or more named prompts (n completions of one prompt with options.n),
   * one engine request each, with one cancel flag each (`onCancelFlag` sees them, to stop them).
   */
  #run(
    prompts: [name: string, prompt: string | ArrayLike<number>][],
    rawOptions: GenerateOptions | BatchGenerateOptions,
    session = 0,
    plan?: ChatPlan,
    onCancelFlag?: (flag: NativeCancelFlag) => void,
  ): Promise<BatchResult> {
    try {
      this.#assertAlive();
      this.#assertGenerative();
      const options = validateGenerateOptions(rawOptions);
      const { addon } = this.#binary;
      const prepared = prepareRequest(
        this.#requestHost(),
        prompts,
        options,
        () => {
          const flag = new addon.CancelFlag();
          onCancelFlag?.(flag);
          return flag;
        },
        session,
        plan,
      );
      const cancelAll = () => {
        for (const flag of prepared.request.cancels) flag.cancel();
      };
      return this.#submit(async () => {
        const result = prepared.finish(await runGenerations(prepared.request));
        if (this.#disposing !== undefined && result.results.some((r) => r.stopReason === 'abort')) throw new DisposedError('model');
        return result;
      }, cancelAll);
    } catch (error) {
      return Promise.reject(fromNativeError(error));
    }
  }
}

/**
 * @internal Not public API (lib/index.ts does not export it); the replica pool's. A second LlamaModel
 * over `model`'s native model (its weights, loaded once) with its own generation context (and its
 * own embeddings context when `model` has one), created with the parameters `model`'s were, and so
 * its own engine: llama.cpp runs several llama_context on one llama_model. Its info and contextInfo
 * equal `model`'s. Disposing either leaves the other working: each holds a reference on the weights
 * (SharedWeights), and the last one disposed frees them. Warms the new context up unless
 * `warmup: false`. Rejects with ERR_DISPOSED when `model` is disposed.
 */
export function forkModel(model: LlamaModel, options: ForkOptions = {}): Promise<LlamaModel> {
  try {
    if (!(model instanceof LlamaModel)) throw typeError('model', 'a LlamaModel', model);
    const o = expectObject('options', options);
    rejectUnknownKeys('options', o, ['warmup']);
    return forkOf(model, options);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** @internal The weights `model` holds a reference on: the same object for a model and its forks. */
export function sharedWeights(model: LlamaModel): SharedWeights {
  if (!(model instanceof LlamaModel)) throw typeError('model', 'a LlamaModel', model);
  return weightsOf(model);
}
