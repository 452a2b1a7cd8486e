// Memory sampling for the leak tier. RSS alone is not a leak signal: V8 grows its reserved heap
// (the young generation's semi-spaces, up to tens of MiB) under a high allocation rate while the
// live JS heap stays flat. So each sample splits RSS into what V8 reserved for its heap and the
// rest (native memory: llama.cpp, ggml, the addon, malloc), and reports the live JS heap on its
// own; the tests bound the growth of the native part and of the live JS heap, and print RSS.
import { setImmediate as nextTurn } from 'node:timers/promises';

export const MiB = 2 ** 20;

export interface Sample {
  /** Cycle or generation count when the sample was taken. */
  at: number;
  rss: number;
  /** RSS minus V8's reserved heap (heapTotal): memory outside the JS heap. */
  native: number;
  /** Live JS objects after a full collection. */
  heapUsed: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

/** Whether samples come after a full collection (npm run test:leak passes --expose-gc). */
export const canCollect = typeof gc === 'function';

/**
 * Memory once JS garbage and what its finalizers free are gone: N-API finalizers may run on a
 * later turn than the collection that found their objects, so collect and yield a few times.
 */
export async function sample(at: number): Promise<Sample> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await nextTurn();
  }
  const { rss, heapTotal, heapUsed } = process.memoryUsage();
  return { at, rss, native: rss - heapTotal, heapUsed };
}

/** Least-squares slope of `values` over `at`, in bytes per unit of `at`. */
export function slope(at: number[], values: number[]): number {
  const n = at.length;
  const meanAt = at.reduce((s, x) => s + x, 0) / n;
  const mean = values.reduce((s, y) => s + y, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (at[i]! - meanAt) * (values[i]! - mean);
    den += (at[i]! - meanAt) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

export interface Trend {
  first: number;
  last: number;
  peak: number;
  /** last - first, in bytes (negative when memory went down). */
  growth: number;
  /** Bytes per unit of `at`, over every sample. */
  slope: number;
}

export function trend(samples: Sample[], key: 'rss' | 'native' | 'heapUsed'): Trend {
  const values = samples.map((s) => s[key]);
  const first = values[0]!;
  const last = values[values.length - 1]!;
  return {
    first,
    last,
    peak: Math.max(...values),
    growth: last - first,
    slope: slope(
      samples.map((s) => s.at),
      values,
    ),
  };
}

const mib = (bytes: number) => `${(bytes / MiB).toFixed(1)} MiB`;

/** One line a run log can be read from: start, end, peak, growth (against its bound) and slope. */
export function describeTrend(what: string, unit: string, samples: Sample[], t: Trend, bound?: number): string {
  const span = `${unit} ${samples[0]!.at} to ${samples[samples.length - 1]!.at}`;
  return (
    `${what}: ${mib(t.first)} -> ${mib(t.last)} over ${span} (peak ${mib(t.peak)}); ` +
    `growth ${mib(t.growth)}${bound === undefined ? '' : ` (bound ${mib(bound)})`}, slope ${(t.slope / 1024).toFixed(2)} KiB per ${unit}`
  );
}

/** The samples of one quantity in MiB, for the log. */
export function series(samples: Sample[], key: 'rss' | 'native' | 'heapUsed'): string {
  return samples.map((s) => (s[key] / MiB).toFixed(1)).join(' ');
}
