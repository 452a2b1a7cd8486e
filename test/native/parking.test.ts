// Parking (native/parked_sessions.h): with more sessions than sequences, a session whose sequence
// another request takes has its KV state copied to host memory first, and restored when it is used
// again, with exactly the tokens a session that kept its sequence gets; within the byte budget,
// least recently used first; 0 parks nothing and the session evaluates its conversation again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DisposedError, Llama, type GenerateResult, type LlamaModel, type LoadOptions } from '../../lib/index.js';
import { syntheticModel } from '../helpers/models.js';

const greedy = { temperature: 0, maxTokens: 4 } as const;
const openings = ['The story begins in a small town', 'A ship sails across the sea', 'Every morning the baker opens'];
const follow = [' where the river bends', ' under a grey sky', ' the shop at dawn'];

let path: string;
/** Sessions A, B, C on sequences enough for all three: every second turn finds its sequence as it left it. */
let resident: Turns;

interface Turns {
  first: GenerateResult[];
  second: GenerateResult[];
  /** engineStats().parkedBytes after A's first turn and B's (A's state alone, when parked). */
  parkedAfterB: number;
}

const load = (options: LoadOptions) => Llama.load(path, { gpu: 'cpu', contextSize: 256, threads: 1, warmup: false, ...options });

/** A, B, C take a first turn each in that order, then their second turns in `order`. */
async function takeTurns(model: LlamaModel, order = [0, 1, 2]): Promise<Turns> {
  const sessions = openings.map(() => model.createSession());
  try {
    const first: GenerateResult[] = [];
    let parkedAfterB = 0;
    for (const [i, session] of sessions.entries()) {
      first.push(await session.generate(openings[i]!, greedy));
      if (i === 1) parkedAfterB = model.engineStats().parkedBytes;
    }
    const second: GenerateResult[] = [];
    for (const i of order) second[i] = await sessions[i]!.generate(follow[i]!, greedy);
    return { first, second, parkedAfterB };
  } finally {
    for (const session of sessions) await session.dispose();
  }
}

/** What each second turn reuses when the first stays in the KV cache: the whole first turn but the last token, never decoded. */
const firstTurnTokens = (turns: Turns, i: number) => turns.first[i]!.promptTokens + turns.first[i]!.tokens.length - 1;

beforeAll(async () => {
  path = await syntheticModel('tiny');
  await using model = await load({ sequences: 3 });
  resident = await takeTurns(model);
  expect(resident.parkedAfterB).toBe(0);
  for (const [i, turn] of resident.second.entries()) {
    expect(turn.cacheSource).toBe('resident');
    expect(turn.cachedTokens).toBe(firstTurnTokens(resident, i));
  }
});

describe('parked sessions', () => {
  let model: LlamaModel | undefined;
  afterAll(async () => {
    await model?.dispose();
  });

  it('one sequence, three sessions: each is parked when another takes its sequence, and restored with the tokens a resident session gets', async () => {
    model = await load({ sequences: 1 });
    const parked = await takeTurns(model);
    expect(parked.parkedAfterB).toBeGreaterThan(0);
    for (const [i, turn] of parked.second.entries()) {
      expect(parked.first[i]!.tokens).toEqual(resident.first[i]!.tokens);
      expect(turn.cacheSource).toBe('restored');
      expect(turn.cachedTokens).toBe(firstTurnTokens(parked, i));
      expect(turn.tokens).toEqual(resident.second[i]!.tokens);
    }
    // The sessions ended (takeTurns disposes them): their parked states went with them, by the
    // step after at the latest, whose figures a request that ran in it reads.
    await model.generate('x', greedy);
    const stats = model.engineStats();
    expect(stats.parkedSessions).toBe(0);
    expect(stats.parkedBytes).toBe(0);
    expect(stats.usedCells).toBeGreaterThan(0);
    expect(stats.usedCells).toBeLessThanOrEqual(stats.totalCells);
    expect(stats.totalCells).toBe(model.contextInfo.totalContextSize);
    expect(stats.steps).toBeGreaterThan(0);
    expect(stats.decodeMs).toBeGreaterThan(0);
    expect(stats.hostMs).toBeGreaterThanOrEqual(0);
    await model.dispose();
    expect(() => model!.engineStats()).toThrow(DisposedError);
  });

  it('parkedSessionBytes: 0 parks nothing: each session evaluates its conversation again, to the same tokens', async () => {
    await using m = await load({ sequences: 1, parkedSessionBytes: 0 });
    const evaluated = await takeTurns(m);
    expect(evaluated.parkedAfterB).toBe(0);
    for (const [i, turn] of evaluated.second.entries()) {
      expect(turn.cacheSource).not.toBe('restored');
      // At most what the other session's conversation shares with this one (BOS).
      expect(turn.cachedTokens).toBeLessThan(firstTurnTokens(evaluated, i) / 2);
      expect(turn.tokens).toEqual(resident.second[i]!.tokens);
    }
  });

  it("fork() of a parked session restores the parked state into the child's sequence; the parent's stays parked", async () => {
    await using m = await load({ sequences: 2 });
    const [parent, x, y] = openings.map(() => m.createSession());
    for (const [i, session] of [parent!, x!, y!].entries()) await session.generate(openings[i]!, greedy);
    // y took the least recently used of the two kept sequences, the parent's.
    expect(m.engineStats().parkedSessions).toBe(1);
    await y!.dispose(); // its sequence is free for the fork
    const child = parent!.fork();
    const fromFork = await child.generate(follow[0]!, greedy);
    expect(fromFork.cacheSource).toBe('resident');
    expect(fromFork.cachedTokens).toBe(resident.first[0]!.promptTokens + resident.first[0]!.tokens.length - 1);
    expect(fromFork.tokens).toEqual(resident.second[0]!.tokens);
    const fromParent = await parent!.generate(follow[0]!, greedy);
    expect(fromParent.cacheSource).toBe('restored');
    expect(fromParent.tokens).toEqual(resident.second[0]!.tokens);
    for (const session of [parent!, x!, child]) await session.dispose();
  });

  it('a budget of about one state evicts the least recently used: the newest parked session restores, the oldest evaluates again', async () => {
    // The first run says how big one parked state is; these conversations are of similar lengths.
    const probe = await load({ sequences: 1 });
    const oneState = (await takeTurns(probe)).parkedAfterB;
    await probe.dispose();
    await using m = await load({ sequences: 1, parkedSessionBytes: Math.floor(oneState * 1.5) });
    // After the first turns A's state was evicted for B's (C holds the sequence); B goes first.
    const turns = await takeTurns(m, [1, 0, 2]);
    expect(turns.second[1]!.cacheSource).toBe('restored');
    expect(turns.second[1]!.cachedTokens).toBe(firstTurnTokens(turns, 1));
    expect(turns.second[0]!.cacheSource).not.toBe('restored');
    expect(turns.second[0]!.cachedTokens).toBeLessThan(firstTurnTokens(turns, 0) / 2);
    for (const i of [0, 1, 2]) expect(turns.second[i]!.tokens).toEqual(resident.second[i]!.tokens);
  });
});
