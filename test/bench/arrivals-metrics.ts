/**
 * The arrivals benchmark's pure parts (arrivals.ts runs them): the seeded Poisson schedule both
 * Node sides replay, and what one run's token times say (time to first token from the scheduled
 * arrival, time between tokens, aggregate and full-occupancy generation speed). No I/O, no clock.
 */
import { mulberry32 } from '../fuzz/prng.js';

/** Uniform in [0, 1) from the fuzzers' mulberry32: the same seed gives the same sequence on every machine. */
export function seededRandom(seed: number): () => number {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

/**
 * Arrival times (ms from the start) of `count` requests of a Poisson process at `ratePerSecond`:
 * the first at 0 (the clock starts with it), then exponentially distributed gaps of mean
 * 1000 / ratePerSecond ms.
 */
export function poissonSchedule(count: number, ratePerSecond: number, seed: number): number[] {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`count must be a positive integer, got ${count}`);
  if (!(ratePerSecond > 0) || !Number.isFinite(ratePerSecond))
    throw new RangeError(`ratePerSecond must be a positive number, got ${ratePerSecond}`);
  const random = seededRandom(seed);
  const times = [0];
  while (times.length < count) times.push(times[times.length - 1]! - (Math.log(1 - random()) * 1000) / ratePerSecond);
  return times;
}

/** The nearest-rank percentile (p in (0, 100]): the smallest value with at least p% of the values at or below it. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** One request of a run, every time in ms on the side's own clock with the schedule's 0 at the same instant. */
export interface RequestTrace {
  scheduledMs: number;
  /** When the request was actually made (a late timer shows here, and counts against time to first token). */
  startedMs: number;
  /** When each piece of output reached JavaScript: a token (node-llama-cpp), a text piece (cuda-llama's onText). */
  deliveredMs: number[];
  /** Tokens generated (the result's count; equals deliveredMs.length unless pieces were merged). */
  tokens: number;
  stopReason?: string;
}

export interface ArrivalMetrics {
  requests: number;
  generatedTokens: number;
  /** Every generated token over the time from the first scheduled arrival to the last token. */
  aggregateTokensPerSecond: number;
  /**
   * Tokens delivered while every request was generating (from the last request's first token to
   * the first request's last), per second of that window: pure decode steps of all sequences, the
   * regime llama-batched-bench's S_TG measures. Null when the window is empty (the first request
   * finished before the last one began: the arrivals were too slow to fill the sequences).
   */
  fullOccupancyTokensPerSecond: number | null;
  fullOccupancyMs: number;
  /** The window's share of the whole run. */
  fullOccupancyShare: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
  tbtP50Ms: number;
  tbtP99Ms: number;
  /** The latest a request was made after its scheduled time. */
  maxStartDelayMs: number;
}

export function arrivalMetrics(traces: RequestTrace[]): ArrivalMetrics {
  const producing = traces.filter((t) => t.deliveredMs.length > 0);
  if (producing.length !== traces.length) throw new Error(`${traces.length - producing.length} requests delivered no output`);
  const first = producing.map((t) => t.deliveredMs[0]!);
  const last = producing.map((t) => t.deliveredMs[t.deliveredMs.length - 1]!);
  const start = Math.min(...traces.map((t) => t.scheduledMs));
  const end = Math.max(...last);
  const generatedTokens = traces.reduce((sum, t) => sum + t.tokens, 0);
  const windowStart = Math.max(...first);
  const windowEnd = Math.min(...last);
  const windowMs = Math.max(0, windowEnd - windowStart);
  const inWindow = producing.reduce((sum, t) => sum + t.deliveredMs.filter((ms) => ms > windowStart && ms <= windowEnd).length, 0);
  const gaps = producing.flatMap((t) => t.deliveredMs.slice(1).map((ms, i) => ms - t.deliveredMs[i]!));
  const ttft = producing.map((t) => t.deliveredMs[0]! - t.scheduledMs);
  return {
    requests: traces.length,
    generatedTokens,
    aggregateTokensPerSecond: end > start ? (generatedTokens * 1000) / (end - start) : 0,
    fullOccupancyTokensPerSecond: windowMs > 0 ? (inWindow * 1000) / windowMs : null,
    fullOccupancyMs: windowMs,
    fullOccupancyShare: end > start ? windowMs / (end - start) : 0,
    ttftP50Ms: percentile(ttft, 50),
    ttftP99Ms: percentile(ttft, 99),
    tbtP50Ms: percentile(gaps, 50),
    tbtP99Ms: percentile(gaps, 99),
    maxStartDelayMs: Math.max(...traces.map((t) => t.startedMs - t.scheduledMs)),
  };
}
