/**
 * The fuzzers' only source of randomness: a mutant is a pure function of (seed, index), so any
 * reported mutant can be rebuilt from the two numbers alone.
 */

/** mulberry32: 32 bits of state, good enough to pick mutations, and trivially reproducible. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

export interface Rng {
  /** A uniform u32. */
  u32(): number;
  /** A uniform integer in [0, n). */
  int(n: number): number;
  /** A uniform pick from a non-empty list. */
  pick<T>(items: readonly T[]): T;
  /** True with probability p. */
  chance(p: number): boolean;
}

/** The stream for one mutant: seed and index are mixed so neighbouring indices are unrelated. */
export function mutantRng(seed: number, index: number): Rng {
  const mix = mulberry32((Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca77)) >>> 0);
  mix();
  const next = mulberry32(mix());
  return {
    u32: next,
    int: (n) => Math.floor((next() / 2 ** 32) * n),
    pick: (items) => items[Math.floor((next() / 2 ** 32) * items.length)]!,
    chance: (p) => next() / 2 ** 32 < p,
  };
}
