// Calls in every order: fast-check drives tiny-model LlamaModels with random sequences of load,
// generate, stream (read to the end, broken off, or never read), abort (before the call, while it
// waits its turn, mid-generation, mid-load), tokenize, chat, layerReport, invalid arguments,
// dispose, and calls started without awaiting them. The invariants: every call settles, with a
// result or a typed error (a CudaLlamaError with a code, the abort's reason, or a TypeError /
// RangeError naming the parameter for invalid arguments); greedy results equal the reference
// tokens whatever ran before or beside them; a promise-returning call never throws synchronously;
// after dispose every call refuses with ERR_DISPOSED; and nothing is left running at the end.
//
// The seed is printed; CUDA_LLAMA_PROPERTY_SEED=<seed> replays a run (the command sequences exactly;
// timer-driven aborts may land at another point) and CUDA_LLAMA_PROPERTY_RUNS widens the search.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CudaLlamaError,
  ErrorCode,
  Llama,
  type GenerateOptions,
  type ChatResult,
  type GenerateResult,
  type LlamaModel,
  type LoadOptions,
} from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';

const CONTEXT_SIZE = 128;
const MAX_TOKENS = 16;
const MAX_LIVE_MODELS = 3;
const SETTLE_TIMEOUT_MS = 60_000;
const SEED = Number(process.env.CUDA_LLAMA_PROPERTY_SEED ?? 20_240_024);
const RUNS = Number(process.env.CUDA_LLAMA_PROPERTY_RUNS ?? 60);
// The last one is what chat([{ role: 'user', content: 'Hi' }]) formats with the model's template.
const PROMPTS = ['The quick brown fox', 'Once upon a time', 'Hello', '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'];
const CHAT = [{ role: 'user', content: 'Hi' }];
const CHAT_PROMPT = PROMPTS.length - 1;
const LONG_PROMPT = 'word '.repeat(CONTEXT_SIZE * 2);

/** Invalid arguments and the parameter the error must name. */
const INVALID_GENERATE: [prompt: unknown, options: unknown, names: string][] = [
  [42, {}, 'prompt'],
  [[], {}, 'prompt'],
  [[1e9], {}, 'prompt[0]'],
  ['x', 5, 'options'],
  ['x', null, 'options'],
  ['x', { maxTokens: 0 }, 'options.maxTokens'],
  ['x', { maxTokens: 1.5 }, 'options.maxTokens'],
  ['x', { temperature: 'hot' }, 'options.temperature'],
  ['x', { nPredict: 3 }, 'options.nPredict'],
  ['x', { signal: 'now' }, 'options.signal'],
  ['x', { onText: 'print' }, 'options.onText'],
  ['x', { stop: [''] }, 'options.stop[0]'],
];
const INVALID_TOKENIZE: [text: unknown, options: unknown, names: string][] = [
  [42, {}, 'text'],
  ['x', { addBos: true }, 'options.addBos'],
  ['x', null, 'options'],
];
const INVALID_CHAT: [messages: unknown, options: unknown, names: string][] = [
  [[], {}, 'messages'],
  ['Hi', {}, 'messages'],
  [[{ role: 'user' }], {}, 'messages[0].content'],
  [CHAT, { maxTokens: -1 }, 'options.maxTokens'],
];

type Prompt = { kind: 'pool'; index: number } | { kind: 'long' } | { kind: 'text'; text: string };
type Abort = 'none' | 'before' | 'queued' | 'during';
interface Generation {
  target: number;
  prompt: Prompt;
  maxTokens: number;
  sampled: boolean;
  abort: Abort;
  /** Text pieces before a 'during' abort fires. */
  abortAfter: number;
  stopOnAbort: boolean;
  awaited: boolean;
}
type Command =
  | { op: 'load'; abort: 'none' | 'before' | 'progress' | 'timer'; delayMs: number; awaited: boolean }
  | ({ op: 'generate' } & Generation)
  | ({ op: 'stream'; read: 'all' | 'break' | 'none'; breakAfter: number } & Generation)
  | { op: 'chat'; target: number; maxTokens: number; stream: boolean; awaited: boolean }
  | { op: 'tokenize'; target: number; text: string }
  | { op: 'layerReport'; target: number; awaited: boolean }
  | { op: 'invalid'; target: number; via: 'generate' | 'stream' | 'tokenize' | 'chat'; index: number }
  | { op: 'dispose'; target: number; awaited: boolean }
  | { op: 'settle' };

const promptArb: fc.Arbitrary<Prompt> = fc.oneof(
  { weight: 8, arbitrary: fc.nat({ max: PROMPTS.length - 1 }).map((index): Prompt => ({ kind: 'pool', index })) },
  { weight: 1, arbitrary: fc.constant<Prompt>({ kind: 'long' }) },
  { weight: 2, arbitrary: fc.string({ maxLength: 24, unit: 'binary' }).map((text): Prompt => ({ kind: 'text', text })) },
);
const generation = {
  target: fc.nat({ max: 7 }),
  prompt: promptArb,
  maxTokens: fc.integer({ min: 1, max: MAX_TOKENS }),
  sampled: fc.boolean(),
  abort: fc.constantFrom<Abort>('none', 'none', 'none', 'before', 'queued', 'during'),
  abortAfter: fc.integer({ min: 1, max: 4 }),
  stopOnAbort: fc.boolean(),
  awaited: fc.boolean(),
};
const commandArb: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('load' as const),
      abort: fc.constantFrom('none' as const, 'none' as const, 'before' as const, 'progress' as const, 'timer' as const),
      delayMs: fc.integer({ min: 0, max: 120 }),
      awaited: fc.boolean(),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('generate' as const), ...generation }) },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('stream' as const),
      read: fc.constantFrom('all' as const, 'break' as const, 'break' as const, 'none' as const),
      breakAfter: fc.integer({ min: 1, max: 4 }),
      ...generation,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('chat' as const),
      target: fc.nat({ max: 7 }),
      maxTokens: fc.integer({ min: 1, max: MAX_TOKENS }),
      stream: fc.boolean(),
      awaited: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('tokenize' as const),
      target: fc.nat({ max: 7 }),
      text: fc.string({ maxLength: 40, unit: 'binary' }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('layerReport' as const), target: fc.nat({ max: 7 }), awaited: fc.boolean() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant('invalid' as const),
      target: fc.nat({ max: 7 }),
      via: fc.constantFrom('generate' as const, 'stream' as const, 'tokenize' as const, 'chat' as const),
      index: fc.nat({ max: 11 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('dispose' as const), target: fc.nat({ max: 7 }), awaited: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ op: 'settle' as const }) },
);

let path: string;
let reference: LlamaModel;
/** Greedy tokens of each pool prompt, MAX_TOKENS long, on a model nothing else touches. */
let referenceTokens: number[][];

beforeAll(async () => {
  path = await syntheticModel('tiny');
  reference = await Llama.load(path, { gpu: 'cpu', contextSize: CONTEXT_SIZE });
  referenceTokens = [];
  for (const prompt of PROMPTS) referenceTokens.push((await reference.generate(prompt, { maxTokens: MAX_TOKENS, temperature: 0 })).tokens);
});

afterAll(async () => {
  await reference?.dispose();
});

type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

async function outcome<T>(promise: Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    return { ok: false, error };
  }
}

function describeError(error: unknown): string {
  if (error instanceof Error)
    return `${error.name}${(error as { code?: string }).code ? ` ${(error as { code?: string }).code}` : ''}: ${error.message.split('\n')[0]}`;
  return String(error);
}

function expectCode(error: unknown, code: ErrorCode, label: string): void {
  if (!(error instanceof CudaLlamaError) || error.code !== code) throw new Error(`${label}: expected ${code}, got ${describeError(error)}`);
}

function expectArgumentError(error: unknown, name: string, label: string): void {
  const plain = (error instanceof TypeError || error instanceof RangeError) && !(error instanceof CudaLlamaError);
  if (!plain || !(error as Error).message.startsWith(name))
    throw new Error(`${label}: expected a TypeError/RangeError naming ${name}, got ${describeError(error)}`);
}

/** A promise-returning method must report every failure through its promise. */
function callAsync<T>(label: string, call: () => T): T {
  try {
    return call();
  } catch (error) {
    throw new Error(`${label} threw synchronously instead of returning: ${describeError(error)}`);
  }
}

interface Entry {
  id: number;
  model: LlamaModel;
  disposeCalled: boolean;
}

class World {
  readonly entries: Entry[] = [];
  readonly pending: { label: string; done: Promise<void>; settled: boolean }[] = [];
  readonly failures: unknown[] = [];
  loadsInFlight = 0;
  /** A call did not settle in time: the run fails, and nothing waits on it again. */
  stuck = false;
  #next = 0;

  label(command: Command): string {
    return `#${this.#next++} ${command.op}`;
  }

  pick(target: number): Entry | undefined {
    return this.entries.length === 0 ? undefined : this.entries[target % this.entries.length];
  }

  get live(): number {
    return this.entries.filter((e) => !e.disposeCalled).length + this.loadsInFlight;
  }

  /** Runs a check in the background (or awaits it); a failure is kept and fails the run at the end. */
  async track(label: string, awaited: boolean, check: () => Promise<void>): Promise<void> {
    const entry = { label, settled: false, done: Promise.resolve() };
    entry.done = check()
      .then(
        () => undefined,
        (error: unknown) => {
          this.failures.push(error);
        },
      )
      .finally(() => {
        entry.settled = true;
      });
    this.pending.push(entry);
    if (awaited) await entry.done;
  }

  async settle(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), SETTLE_TIMEOUT_MS)));
    // Checks may start others (a load's entry), so wait until a pass finds nothing new.
    for (let seen = -1; seen !== this.pending.length;) {
      seen = this.pending.length;
      const all = Promise.all(this.pending.map((p) => p.done));
      if ((await Promise.race([all, timeout])) === 'timeout') {
        const stuck = this.pending.filter((p) => !p.settled).map((p) => p.label);
        this.stuck = true;
        clearTimeout(timer);
        throw new Error(`calls never settled within ${SETTLE_TIMEOUT_MS} ms: ${stuck.join(', ')}`);
      }
    }
    clearTimeout(timer);
    if (this.failures.length > 0) throw this.failures[0];
  }
}

function promptValue(prompt: Prompt): string {
  return prompt.kind === 'pool' ? PROMPTS[prompt.index]! : prompt.kind === 'long' ? LONG_PROMPT : prompt.text;
}

interface ResultExpectations {
  label: string;
  prompt: Prompt;
  maxTokens: number;
  greedy: boolean;
  /** Whether the signal fired, and what the call was told to do then. */
  aborted: boolean;
  stopOnAbort: boolean;
  /** A stream that was broken off before its end. */
  broken: boolean;
  /** Every piece onText received, in order. */
  pieces: string[];
}

function checkResult(result: GenerateResult | ChatResult, e: ResultExpectations): void {
  const { label } = e;
  expect(result.tokens.length, `${label}: token count`).toBeLessThanOrEqual(e.maxTokens);
  expect(
    result.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < reference.info.vocabSize),
    `${label}: token ids`,
  ).toBe(true);
  expect(['eos', 'maxTokens', 'abort', 'contextFull'], `${label}: stopReason`).toContain(result.stopReason);
  if (result.stopReason === 'maxTokens') expect(result.tokens.length, `${label}: maxTokens`).toBe(e.maxTokens);
  if (result.stopReason === 'abort') {
    expect(e.broken || (e.aborted && e.stopOnAbort), `${label}: stopped with 'abort' without a break or a quiet abort`).toBe(true);
  }
  expect(e.pieces.join(''), `${label}: onText pieces join to the text`).toBe(result.text);
  if (e.greedy && e.prompt.kind === 'pool') {
    // Queued, concurrent, aborted or not, greedy tokens are the reference's (a prefix when stopped early).
    expect(result.tokens, `${label}: greedy tokens`).toEqual(referenceTokens[e.prompt.index]!.slice(0, result.tokens.length));
  }
}

interface IssuedGeneration {
  label: string;
  entry: Entry;
  disposedAtIssue: boolean;
  command: Generation;
  reason: Error;
  state: { aborted: boolean };
  pieces: string[];
}

/** A failed generation: only the errors this call could have earned. */
function checkGenerationError(error: unknown, g: IssuedGeneration): void {
  const { label, command } = g;
  if (g.disposedAtIssue) return expectCode(error, ErrorCode.DISPOSED, label);
  if (command.prompt.kind === 'long') return expectCode(error, ErrorCode.CONTEXT_FULL, label);
  if (error === g.reason) {
    if (!g.state.aborted || command.stopOnAbort)
      throw new Error(`${label}: rejected with the abort reason (aborted: ${g.state.aborted}, stopOnAbort: ${command.stopOnAbort})`);
    return;
  }
  if (g.entry.disposeCalled) return expectCode(error, ErrorCode.DISPOSED, label);
  throw new Error(`${label}: unexpected rejection ${describeError(error)}`);
}

/** What a settled generation must look like, whether it came from generate() or stream(). */
/** How calls ended over all runs, printed at the end so that a run shows what it exercised. */
const tally = new Map<string, number>();

function count(what: string, settled: Outcome<unknown>, reason: unknown): void {
  const how = settled.ok
    ? ((settled.value as Partial<GenerateResult>).stopReason ?? 'ok')
    : settled.error === reason
      ? 'abort reason'
      : ((settled.error as { code?: string }).code ?? (settled.error as Error).name);
  const key = `${what}: ${how}`;
  tally.set(key, (tally.get(key) ?? 0) + 1);
}

function checkGeneration(settled: Outcome<GenerateResult | ChatResult>, g: IssuedGeneration, broken: boolean): void {
  const { command } = g;
  count(/^#\d+ (\w+)/.exec(g.label)?.[1] ?? 'call', settled, g.reason);
  const early = command.abort === 'before' || command.abort === 'queued';
  if (!settled.ok) return checkGenerationError(settled.error, g);
  if (g.disposedAtIssue) throw new Error(`${g.label}: a disposed model generated`);
  if (command.prompt.kind === 'long') throw new Error(`${g.label}: a prompt longer than the context generated`);
  if (early && !command.stopOnAbort) throw new Error(`${g.label}: aborted before it started, yet resolved`);
  if (early) expect(settled.value.stopReason, `${g.label}: aborted before it started`).toBe('abort');
  checkResult(settled.value, {
    label: g.label,
    prompt: command.prompt,
    maxTokens: command.maxTokens,
    greedy: !command.sampled,
    aborted: g.state.aborted,
    stopOnAbort: command.stopOnAbort,
    broken,
    pieces: g.pieces,
  });
}

function issueOptions(g: Omit<IssuedGeneration, 'pieces' | 'state'>, controller: AbortController) {
  const { command } = g;
  const state = { aborted: false };
  const pieces: string[] = [];
  if (command.abort === 'before') {
    controller.abort(g.reason);
    state.aborted = true;
  }
  const options: GenerateOptions = {
    maxTokens: command.maxTokens,
    temperature: command.sampled ? 0.8 : 0,
    seed: 7,
    stopOnAbort: command.stopOnAbort,
    onText: (text) => {
      pieces.push(text);
      if (command.abort === 'during' && pieces.length === command.abortAfter) {
        controller.abort(g.reason);
        state.aborted = true;
      }
    },
    ...(command.abort === 'none' ? {} : { signal: controller.signal }),
  };
  return { options, state, pieces };
}

async function runGenerate(world: World, label: string, entry: Entry, command: Generation): Promise<void> {
  const controller = new AbortController();
  const base = { label, entry, disposedAtIssue: entry.disposeCalled, command, reason: new Error(`${label} aborted`) };
  const { options, state, pieces } = issueOptions(base, controller);
  const promise = callAsync(`${label} generate()`, () => entry.model.generate(promptValue(command.prompt), options));
  if (command.abort === 'queued') {
    controller.abort(base.reason);
    state.aborted = true;
  }
  await world.track(label, command.awaited, async () => checkGeneration(await outcome(promise), { ...base, state, pieces }, false));
}

async function runStream(
  world: World,
  label: string,
  entry: Entry,
  command: Generation & { read: 'all' | 'break' | 'none'; breakAfter: number },
): Promise<void> {
  const controller = new AbortController();
  const base = { label, entry, disposedAtIssue: entry.disposeCalled, command, reason: new Error(`${label} aborted`) };
  const { options, state, pieces } = issueOptions(base, controller);
  const stream = callAsync(`${label} stream()`, () => entry.model.stream(promptValue(command.prompt), options));
  if (command.abort === 'queued') {
    controller.abort(base.reason);
    state.aborted = true;
  }
  await world.track(label, command.awaited, async () => {
    const read: string[] = [];
    let broken = false;
    let iterationError: { error: unknown } | undefined;
    if (command.read !== 'none') {
      try {
        for await (const piece of stream) {
          read.push(piece);
          if (command.read === 'break' && read.length === command.breakAfter) {
            broken = true;
            break;
          }
        }
      } catch (error) {
        iterationError = { error };
      }
    }
    const settled = await outcome(stream.result);
    if (iterationError) {
      if (settled.ok || settled.error !== iterationError.error)
        throw new Error(
          `${label}: the iterator threw ${describeError(iterationError.error)} but result ${settled.ok ? 'resolved' : `rejected with ${describeError(settled.error)}`}`,
        );
    }
    checkGeneration(settled, { ...base, state, pieces }, broken);
    if (settled.ok) {
      const text = read.join('');
      if (broken) expect(settled.value.text.startsWith(text), `${label}: the pieces read are the start of the text`).toBe(true);
      else if (command.read === 'all') expect(text, `${label}: the pieces read join to the text`).toBe(settled.value.text);
    }
  });
}

async function runLoad(world: World, label: string, command: Extract<Command, { op: 'load' }>): Promise<void> {
  if (world.live >= MAX_LIVE_MODELS) return;
  const controller = new AbortController();
  const reason = new Error(`${label} aborted`);
  let aborted = false;
  let progressCalls = 0;
  let timer: NodeJS.Timeout | undefined;
  const abort = () => {
    aborted = true;
    controller.abort(reason);
  };
  if (command.abort === 'before') abort();
  if (command.abort === 'timer') timer = setTimeout(abort, command.delayMs);
  const options: LoadOptions = {
    gpu: 'cpu',
    contextSize: CONTEXT_SIZE,
    ...(command.abort === 'none' ? {} : { signal: controller.signal }),
    ...(command.abort === 'progress' ? { onProgress: () => progressCalls++ === 0 && abort() } : {}),
  };
  world.loadsInFlight++;
  const promise = callAsync(`${label} Llama.load()`, () => Llama.load(path, options));
  await world.track(label, command.awaited, async () => {
    const settled = await outcome(promise);
    clearTimeout(timer);
    count('load', settled, reason);
    world.loadsInFlight--;
    if (settled.ok) {
      world.entries.push({ id: world.entries.length, model: settled.value, disposeCalled: false });
      if (command.abort === 'before' || (command.abort === 'progress' && progressCalls > 0))
        throw new Error(`${label}: an aborted load resolved`);
      expect(settled.value.info.layerCount, `${label}: layers`).toBe(4);
      return;
    }
    if (settled.error !== reason || !aborted)
      throw new Error(`${label}: load rejected with ${describeError(settled.error)} (aborted: ${aborted})`);
  });
}

async function runCommand(world: World, command: Command): Promise<void> {
  const label = world.label(command);
  if (command.op === 'load') return runLoad(world, label, command);
  if (command.op === 'settle') return world.settle();
  const entry = world.pick(command.target);
  if (entry === undefined) return;
  const tag = `${label} on model ${entry.id}${entry.disposeCalled ? ' (disposed)' : ''}`;
  const disposedAtIssue = entry.disposeCalled;
  const { model } = entry;
  switch (command.op) {
    case 'generate':
      return runGenerate(world, tag, entry, command);
    case 'stream':
      return runStream(world, tag, entry, command);
    case 'chat': {
      const generation: Generation = {
        target: command.target,
        prompt: { kind: 'pool', index: CHAT_PROMPT },
        maxTokens: command.maxTokens,
        sampled: false,
        abort: 'none',
        abortAfter: 1,
        stopOnAbort: false,
        awaited: command.awaited,
      };
      const pieces: string[] = [];
      const options = { maxTokens: command.maxTokens, temperature: 0, onText: (t: string) => pieces.push(t) };
      const base = {
        label: tag,
        entry,
        disposedAtIssue,
        command: generation,
        reason: new Error('never'),
        state: { aborted: false },
        pieces,
      };
      if (command.stream) {
        const stream = callAsync(`${tag} chatStream()`, () => model.chatStream(CHAT, options));
        return world.track(tag, command.awaited, async () => {
          const read: string[] = [];
          try {
            for await (const delta of stream) read.push(delta.content ?? '');
          } catch {
            // the result's rejection is checked below
          }
          const settled = await outcome(stream.result);
          checkGeneration(settled, base, false);
          if (settled.ok) expect(read.join(''), `${tag}: the pieces read join to the text`).toBe(settled.value.text);
        });
      }
      const promise = callAsync(`${tag} chat()`, () => model.chat(CHAT, options));
      return world.track(tag, command.awaited, async () => checkGeneration(await outcome(promise), base, false));
    }
    case 'tokenize': {
      let tokens: number[];
      try {
        tokens = model.tokenize(command.text);
      } catch (error) {
        if (!disposedAtIssue) throw new Error(`${tag}: tokenize threw ${describeError(error)}`);
        return expectCode(error, ErrorCode.DISPOSED, tag);
      }
      if (disposedAtIssue) throw new Error(`${tag}: a disposed model tokenized`);
      expect(tokens, `${tag}: tokens of ${JSON.stringify(command.text)}`).toEqual(reference.tokenize(command.text));
      return;
    }
    case 'layerReport': {
      const promise = callAsync(`${tag} layerReport()`, () => model.layerReport());
      return world.track(tag, command.awaited, async () => {
        const settled = await outcome(promise);
        if (!settled.ok) {
          if (!entry.disposeCalled) throw new Error(`${tag}: layerReport rejected with ${describeError(settled.error)}`);
          return expectCode(settled.error, ErrorCode.DISPOSED, tag);
        }
        if (disposedAtIssue) throw new Error(`${tag}: a disposed model reported its layers`);
        expect(
          settled.value.layers.map((l) => l.device),
          `${tag}: layers`,
        ).toEqual(['CPU', 'CPU', 'CPU', 'CPU']);
      });
    }
    case 'invalid':
      return runInvalid(world, tag, entry, command);
    case 'dispose': {
      const promise = callAsync(`${tag} dispose()`, () => model.dispose());
      entry.disposeCalled = true;
      expect(model.disposed, `${tag}: disposed right after dispose()`).toBe(true);
      return world.track(tag, command.awaited, async () => {
        await promise;
      });
    }
  }
}

async function runInvalid(world: World, tag: string, entry: Entry, command: Extract<Command, { op: 'invalid' }>): Promise<void> {
  const { model, disposeCalled: disposedAtIssue } = entry;
  const expectRefusal = (error: unknown, name: string) =>
    disposedAtIssue ? expectCode(error, ErrorCode.DISPOSED, tag) : expectArgumentError(error, name, tag);
  if (command.via === 'tokenize') {
    const [text, options, name] = INVALID_TOKENIZE[command.index % INVALID_TOKENIZE.length]!;
    try {
      model.tokenize(text as string, options as never);
    } catch (error) {
      return expectRefusal(error, name);
    }
    throw new Error(`${tag}: tokenize(${JSON.stringify(text)}, ${JSON.stringify(options)}) was accepted`);
  }
  if (command.via === 'chat') {
    const [messages, options, name] = INVALID_CHAT[command.index % INVALID_CHAT.length]!;
    const promise = callAsync(`${tag} chat()`, () => model.chat(messages as never, options as never));
    return world.track(tag, true, async () => {
      const settled = await outcome(promise);
      if (settled.ok) throw new Error(`${tag}: chat(${JSON.stringify(messages)}, ${JSON.stringify(options)}) was accepted`);
      expectRefusal(settled.error, name);
    });
  }
  const [prompt, options, name] = INVALID_GENERATE[command.index % INVALID_GENERATE.length]!;
  const call = `${command.via}(${JSON.stringify(prompt)}, ${JSON.stringify(options)})`;
  if (command.via === 'generate') {
    const promise = callAsync(`${tag} generate()`, () => model.generate(prompt as never, options as never));
    return world.track(tag, true, async () => {
      const settled = await outcome(promise);
      if (settled.ok) throw new Error(`${tag}: ${call} was accepted`);
      expectRefusal(settled.error, name);
    });
  }
  const stream = callAsync(`${tag} stream()`, () => model.stream(prompt as never, options as never));
  return world.track(tag, true, async () => {
    const read: string[] = [];
    let iterationError: unknown;
    try {
      for await (const piece of stream) read.push(piece);
    } catch (error) {
      iterationError = error;
    }
    const settled = await outcome(stream.result);
    if (settled.ok) throw new Error(`${tag}: ${call} was accepted`);
    expectRefusal(settled.error, name);
    expect(iterationError, `${tag}: the iterator throws the result's error`).toBe(settled.error);
    expect(read, `${tag}: no text from a refused call`).toEqual([]);
  });
}

/** After dispose, every method refuses with ERR_DISPOSED: sync ones throw, the others reject. */
async function expectRefusesEverything(model: LlamaModel, label: string): Promise<void> {
  const sync: Record<string, () => unknown> = {
    tokenize: () => model.tokenize('x'),
    detokenize: () => model.detokenize([1]),
    applyChatTemplate: () => model.applyChatTemplate(CHAT),
  };
  for (const [name, call] of Object.entries(sync)) {
    let threw: unknown = undefined;
    try {
      call();
    } catch (error) {
      threw = error;
    }
    expectCode(threw, ErrorCode.DISPOSED, `${label} ${name}()`);
  }
  const promised: Record<string, () => Promise<unknown>> = {
    generate: () => model.generate('x'),
    generateBatch: () => model.generateBatch(['x']),
    chat: () => model.chat(CHAT),
    layerReport: () => model.layerReport(),
    warmUp: () => model.warmUp(),
  };
  for (const [name, call] of Object.entries(promised)) {
    const settled = await outcome(callAsync(`${label} ${name}()`, call));
    expectCode(settled.ok ? undefined : settled.error, ErrorCode.DISPOSED, `${label} ${name}()`);
  }
  const streams: Record<string, () => AsyncIterable<unknown> & { result: Promise<unknown> }> = {
    stream: () => model.stream('x'),
    chatStream: () => model.chatStream(CHAT),
  };
  for (const [name, call] of Object.entries(streams)) {
    const stream = callAsync(`${label} ${name}()`, call);
    let iterationError: unknown = undefined;
    try {
      for await (const _ of stream) throw new Error(`${label} ${name}() yielded text`);
    } catch (error) {
      iterationError = error;
    }
    expectCode(iterationError, ErrorCode.DISPOSED, `${label} ${name}() iteration`);
    const settled = await outcome(stream.result);
    expectCode(settled.ok ? undefined : settled.error, ErrorCode.DISPOSED, `${label} ${name}().result`);
  }
  await callAsync(`${label} dispose() again`, () => model.dispose());
}

/** Handles, requests and timers the event loop holds, counted by kind. */
function activeResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

/** Kinds the loop holds more of than at the baseline (the runner's own timers may have fired since). */
function addedResources(baseline: Map<string, number>): string[] {
  return [...activeResources()]
    .filter(([kind, n]) => n > (baseline.get(kind) ?? 0))
    .map(([kind, n]) => `${kind} x${n - (baseline.get(kind) ?? 0)}`);
}

async function runSequence(commands: Command[]): Promise<void> {
  const baseline = activeResources();
  const world = new World();
  try {
    await runLoad(world, 'initial load', { op: 'load', abort: 'none', delayMs: 0, awaited: true });
    for (const command of commands) await runCommand(world, command);
    await world.settle();
  } finally {
    // Whatever a failed sequence left is settled and disposed, unless a call never settles (reported then).
    if (!world.stuck) {
      await world.settle().catch(() => undefined);
      await Promise.all(world.entries.map((e) => e.model.dispose()));
    }
  }
  for (const entry of world.entries) {
    expect(entry.model.disposed, `model ${entry.id} disposed`).toBe(true);
    await expectRefusesEverything(entry.model, `model ${entry.id} after dispose:`);
  }
  expect(addedResources(baseline), 'what the event loop holds beyond what it held before the sequence').toEqual([]);
}

describe('calls in every order (fast-check)', () => {
  it('every invalid argument is refused with an error naming it, by generate(), stream(), chat() and tokenize()', async () => {
    const world = new World();
    const entry: Entry = { id: 0, model: reference, disposeCalled: false };
    const cases = { generate: INVALID_GENERATE, stream: INVALID_GENERATE, chat: INVALID_CHAT, tokenize: INVALID_TOKENIZE } as const;
    for (const [via, list] of Object.entries(cases) as [keyof typeof cases, readonly unknown[]][]) {
      for (let index = 0; index < list.length; index++) {
        await runInvalid(world, `reference ${via} case ${index}`, entry, { op: 'invalid', target: 0, via, index });
      }
    }
    await world.settle();
  });

  it('every call settles with a result or a typed error, a disposed model refuses everything, nothing is left running', async () => {
    console.log(`lifecycle property: seed ${SEED}, ${RUNS} runs (CUDA_LLAMA_PROPERTY_SEED=${SEED} replays it)`);
    await fc.assert(fc.asyncProperty(fc.array(commandArb, { minLength: 1, maxLength: 12 }), runSequence), {
      seed: SEED,
      numRuns: RUNS,
    });
    console.log(
      `how calls ended: ${[...tally]
        .sort()
        .map(([key, n]) => `${key} ${n}`)
        .join('; ')}`,
    );
  }, 600_000);
});
