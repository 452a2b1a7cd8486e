/**
 * A chat reply as it is generated, as deltas: the text of each completion is read again with the
 * template's parser after every piece (common_chat_parse, partial), as llama-server does, and what
 * grew since the previous piece is handed out: answer text, reasoning text, and tool calls (index,
 * id and name once the name is complete, then fragments of the arguments' JSON text). A part that
 * changes instead of growing (the parser may read a partial marker as text first) is held back;
 * whatever the stream has not handed out when the generation ends comes in last deltas, so the
 * deltas always add up to the final result wherever it grew monotonically.
 */
import { chatResult, parseReply, type ChatDelta, type ChatPlan, type ChatResult } from './chat.js';
import type { GenerateResult, TextInfo } from './generation.js';
import type { TokenLogprob } from './logprobs.js';
import type { NativeModel } from './binding/native.js';
import { newToolCallId } from './tools.js';

/** What one completion has handed out so far. */
class ChoiceStreamer {
  raw = '';
  content = '';
  reasoning = '';
  readonly ids: string[] = [];
  readonly calls: { name: string; arguments: string }[] = [];
  pending: TokenLogprob[] = [];
  pendingTokens = 0;
  promptTokens = 0;
  /** Only text, no reasoning, no tools: every piece is answer text as it comes. */
  readonly plain: boolean;

  constructor(
    readonly choice: number,
    private readonly native: NativeModel,
    private readonly plan: ChatPlan,
    private readonly push: (delta: ChatDelta) => void,
  ) {
    this.plain = plan.rendered.parser === '' && !plan.rendered.supportsThinking && plan.tools.length === 0;
  }

  feed(text: string, info: TextInfo): void {
    if (info.logprobs) this.pending.push(...info.logprobs);
    this.pendingTokens += info.tokens;
    this.promptTokens = info.promptTokens;
    this.raw += text;
    if (this.plain) {
      this.content += text;
      this.emit({ content: text });
      return;
    }
    let parsed;
    try {
      parsed = parseReply(this.native, this.plan, this.raw, true);
    } catch {
      return; // not readable yet; the next piece or the end will be
    }
    this.advance(parsed.content, parsed.reasoning, parsed.calls);
  }

  /** Hands out what `final` has beyond what was handed out, then any log probabilities still held. */
  finish(final: ChatResult): void {
    this.promptTokens = final.promptTokens;
    this.advance(final.text, final.reasoning, final.toolCalls);
    if (this.pending.length > 0 || this.pendingTokens > 0) this.emit({});
  }

  private advance(content: string, reasoning: string, calls: { name: string; arguments: string; id?: string }[]): void {
    if (reasoning.length > this.reasoning.length && reasoning.startsWith(this.reasoning)) {
      this.emit({ reasoning: reasoning.slice(this.reasoning.length) });
      this.reasoning = reasoning;
    }
    if (content.length > this.content.length && content.startsWith(this.content)) {
      this.emit({ content: content.slice(this.content.length) });
      this.content = content;
    }
    calls.forEach((call, index) => {
      // common's parser reads a call's name whole (an atomic part of its grammar) before its arguments.
      if (index >= this.calls.length) {
        if (call.name === '') return;
        const id = call.id !== undefined && call.id !== '' ? call.id : newToolCallId();
        this.ids.push(id);
        this.calls.push({ name: call.name, arguments: '' });
        this.emit({ toolCall: { index, id, name: call.name } });
      }
      const known = this.calls[index]!;
      if (known.name !== call.name) return;
      if (call.arguments.length > known.arguments.length && call.arguments.startsWith(known.arguments)) {
        this.emit({ toolCall: { index, arguments: call.arguments.slice(known.arguments.length) } });
        known.arguments = call.arguments;
      }
    });
  }

  private emit(delta: Omit<ChatDelta, 'choice' | 'tokens' | 'promptTokens'>): void {
    const out: ChatDelta = { choice: this.choice, tokens: this.pendingTokens, promptTokens: this.promptTokens, ...delta };
    this.pendingTokens = 0;
    if (this.pending.length > 0) {
      out.logprobs = this.pending;
      this.pending = [];
    }
    this.push(out);
  }
}

/** The deltas of every completion of one chat call, and its final results. */
export class ChatStreamState {
  readonly #native: NativeModel;
  readonly #plan: ChatPlan;
  readonly #choices: ChoiceStreamer[] = [];
  readonly #queue: ChatDelta[] = [];
  #wake: (() => void) | undefined;
  #done = false;
  #error: { error: unknown } | undefined;

  constructor(native: NativeModel, plan: ChatPlan) {
    this.#native = native;
    this.#plan = plan;
  }

  #streamer(choice: number): ChoiceStreamer {
    while (this.#choices.length <= choice) {
      this.#choices.push(
        new ChoiceStreamer(this.#choices.length, this.#native, this.#plan, (delta) => {
          this.#queue.push(delta);
          this.#wake?.();
        }),
      );
    }
    return this.#choices[choice]!;
  }

  /** generate()'s onText for the call. */
  readonly onText = (text: string, choice: number, info: TextInfo): void => {
    this.#streamer(choice).feed(text, info);
  };

  /** The generation ended: the chat results (with the ids the stream gave out), and the last deltas. */
  finish(raw: GenerateResult): ChatResult {
    const all = raw.choices ?? [raw];
    const results = all.map((choice, i) => {
      const streamer = this.#streamer(i);
      const result = chatResult(this.#native, this.#plan, choice, streamer.ids);
      streamer.finish(result);
      return result;
    });
    this.#done = true;
    this.#wake?.();
    const first = results[0]!;
    return results.length > 1 ? { ...first, choices: results } : first;
  }

  fail(error: unknown): void {
    this.#error = { error };
    this.#done = true;
    this.#wake?.();
  }

  /** The deltas; leaving the loop early calls `cancel`. */
  async *deltas(cancel: () => void): AsyncGenerator<ChatDelta> {
    try {
      for (;;) {
        if (this.#queue.length > 0) {
          yield this.#queue.shift()!;
          continue;
        }
        if (this.#done) {
          if (this.#error) throw this.#error.error;
          return;
        }
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = undefined;
      }
    } finally {
      if (!this.#done) cancel();
    }
  }
}
