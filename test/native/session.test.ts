// Sessions (model.createSession, lib/session.ts): a conversation that continues turn after turn in
// the sequence its last turn used, evaluating only what is new, with exactly the tokens a fresh
// evaluation of the whole conversation gives.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DisposedError, Llama, type LlamaModel } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';

const greedy = { temperature: 0 } as const;
let model: LlamaModel;

beforeAll(async () => {
  model = await Llama.load(await syntheticModel('tiny'), { gpu: 'cpu', contextSize: 256, sequences: 2, threads: 1, warmup: false });
});

afterAll(async () => {
  await model?.dispose();
});

describe('LlamaSession', () => {
  it('continues the conversation, reusing every token of the previous turn, with the tokens of a fresh evaluation', async () => {
    await using session = model.createSession();
    const first = await session.generate('The story begins in a small town', { maxTokens: 8, ...greedy });
    expect(first.cachedTokens).toBe(0);
    const afterFirst = [...session.tokens];
    expect(afterFirst).toEqual([...model.tokenize('The story begins in a small town'), ...first.tokens]);
    // Other requests meanwhile take the sequence the session does not keep.
    await model.generate('Something else entirely', { maxTokens: 4, ...greedy });
    await model.generate('And another unrelated prompt', { maxTokens: 4, ...greedy });
    const second = await session.generate(' where the river bends', { maxTokens: 10, ...greedy });
    expect(second.cachedTokens).toBe(afterFirst.length - 1);
    const whole = [...afterFirst, ...model.tokenize(' where the river bends', { addSpecial: false })];
    expect(second.promptTokens).toBe(whole.length);
    const fresh = await model.generate(whole, { maxTokens: 10, ...greedy, cachePrompt: false });
    expect(second.tokens).toEqual(fresh.tokens);
    expect(session.tokens).toEqual([...whole, ...second.tokens]);
  });

  it('streams the same text as generate, and chat() renders the whole conversation reusing the last turn', async () => {
    await using a = model.createSession();
    await using b = model.createSession();
    const pieces: string[] = [];
    const stream = a.stream('Hello there', { maxTokens: 6, ...greedy });
    for await (const piece of stream) pieces.push(piece);
    const streamed = await stream.result;
    expect(pieces.join('')).toBe(streamed.text);
    expect(streamed.tokens).toEqual((await b.generate('Hello there', { maxTokens: 6, ...greedy })).tokens);

    await using chat = model.createSession();
    const turn1 = [{ role: 'user', content: 'Hi, who are you?' }];
    const reply1 = await chat.chat(turn1, { maxTokens: 6, ...greedy });
    const turn2 = [...turn1, { role: 'assistant', content: reply1.text }, { role: 'user', content: 'Tell me more.' }];
    const held = [...chat.tokens];
    const reply2 = await chat.chat(turn2, { maxTokens: 6, ...greedy });
    // The reply's tokens stay as generated (its text tokenized again can give other tokens), so all
    // the sequence holds is reused: every held token but the reply's last, sampled and not decoded.
    expect(reply2.cachedTokens).toBe(held.length - 1);
    const prompt2 = chat.tokens.slice(0, reply2.promptTokens);
    expect(prompt2.slice(0, held.length)).toEqual(held);
    expect(chat.tokens).toEqual([...prompt2, ...reply2.tokens]);
    // They spell the rendering of the whole conversation, and generate what a fresh evaluation does.
    expect(model.detokenize(prompt2, { special: true })).toBe(
      model.detokenize(model.tokenize(reply2.prompt, { parseSpecial: true }), { special: true }),
    );
    expect(reply2.tokens).toEqual((await model.generate(prompt2, { maxTokens: 6, ...greedy, cachePrompt: false })).tokens);

    await using chatter = model.createSession();
    const chatPieces: string[] = [];
    const chatStream = chatter.chatStream(turn1, { maxTokens: 6, ...greedy });
    for await (const delta of chatStream) chatPieces.push(delta.content ?? '');
    const streamedReply = await chatStream.result;
    expect(streamedReply.tokens).toEqual(reply1.tokens);
    expect(chatPieces.join('')).toBe(streamedReply.text);
  });

  it('fork() continues the same conversation another way from a copy of its KV cache; reset() empties it; dispose() ends it', async () => {
    const session = model.createSession();
    await session.generate('Once upon a time', { maxTokens: 5, ...greedy });
    const fork = session.fork();
    expect(fork.tokens).toEqual(session.tokens);
    const shared = session.tokens.length;
    const [x, y] = await Promise.all([
      session.generate(' there was a king', { maxTokens: 6, ...greedy }),
      fork.generate(' there was a king', { maxTokens: 6, ...greedy }),
    ]);
    expect(y.tokens).toEqual(x.tokens);
    // Both continue from the shared KV: the fork's sequence is a copy of its parent's (llama_memory_seq_cp).
    expect(x.cachedTokens).toBe(shared - 1);
    expect(y.cachedTokens).toBe(shared - 1);
    session.reset();
    expect(session.tokens).toEqual([]);
    await session.dispose();
    await fork.dispose();
    await session.dispose();
    expect(session.disposed).toBe(true);
    await expect(session.generate('again')).rejects.toBeInstanceOf(DisposedError);
    expect(() => session.reset()).toThrow(DisposedError);
  });
});
