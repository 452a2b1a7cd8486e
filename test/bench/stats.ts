/** Summaries of repeated measurements, and how much of the machine other processes took meanwhile. */
import { readFile } from 'node:fs/promises';

export interface Stats {
  median: number;
  min: number;
  max: number;
  samples: number[];
}

export function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted[sorted.length - 1]!, samples };
}

/** An interval that holds the true median with probability `confidence`. */
export interface MedianInterval {
  low: number;
  high: number;
  /** The coverage the chosen order statistics achieve (at least the one asked for). */
  confidence: number;
}

/**
 * The distribution-free interval of the median: order statistics x(k) and x(n−k+1), with the
 * largest k whose coverage 1 − 2·P(Binomial(n, ½) < k) is still at least `confidence`. It assumes
 * nothing about the noise (a neighbour's burst is not Gaussian), only that rounds are independent.
 * Null when there are too few samples for any interval that sure: 6 at 95% (with 5, even
 * min–max covers only 93.75%).
 */
export function medianInterval(samples: number[], confidence = 0.95): MedianInterval | null {
  const n = samples.length;
  const sorted = [...samples].sort((a, b) => a - b);
  // P(B <= j) for B ~ Binomial(n, 1/2), accumulated term by term.
  let term = 0.5 ** n;
  let below = 0; // P(B < k)
  let best: MedianInterval | null = null;
  for (let k = 1; 2 * k <= n + 1; k++) {
    below += term; // now P(B <= k - 1) = P(B < k)
    term = (term * (n - (k - 1))) / k;
    const coverage = 1 - 2 * below;
    if (coverage < confidence) break;
    best = { low: sorted[k - 1]!, high: sorted[n - k]!, confidence: coverage };
  }
  return best;
}

/**
 * The 95% interval of the median of `samples`, and where it lies against `threshold`: wholly
 * above, wholly below, or holding it (the samples cannot tell the two apart at that threshold).
 * The one wording of this verdict for compare.ts's ratios and paired.ts's rounds.
 */
export function intervalVerdict(samples: number[], threshold: number): string {
  const i = medianInterval(samples);
  if (!i) return `— (${samples.length} samples: too few for a 95% interval)`;
  const where = i.low >= threshold ? `above ${threshold}` : i.high < threshold ? `below ${threshold}` : `holds ${threshold}: within noise`;
  return `${i.low.toFixed(3)}–${i.high.toFixed(3)}, ${where}`;
}

export type Verdict = 'pass' | 'below' | 'above' | 'within noise';

export interface TargetVerdict {
  verdict: Verdict;
  median: number;
  /** Null with fewer than 6 samples: then the median alone decides. */
  interval: MedianInterval | null;
}

/**
 * A target read from paired rounds: `atLeast` the threshold (a speed ratio) or `atMost` it (a
 * time ratio). 'pass' when the median's 95% interval lies wholly on the target's side, 'within
 * noise' when it holds the threshold, else 'below' (an at-least target missed) or 'above' (an
 * at-most one). Without an interval (under 6 rounds) the median alone decides: no 'within noise'.
 */
export function targetVerdict(samples: number[], threshold: number, direction: 'atLeast' | 'atMost' = 'atLeast'): TargetVerdict {
  const { median } = stats(samples);
  const interval = medianInterval(samples);
  const [low, high] = interval ? [interval.low, interval.high] : [median, median];
  const good = direction === 'atLeast' ? low >= threshold : high <= threshold;
  const bad = direction === 'atLeast' ? high < threshold : low > threshold;
  const verdict: Verdict = good ? 'pass' : bad ? (direction === 'atLeast' ? 'below' : 'above') : 'within noise';
  return { verdict, median, interval };
}

/** The verdict as the pages write it: a miss in bold, and a median-only verdict marked as such. */
export function verdictWords(v: TargetVerdict): string {
  const words = v.verdict === 'below' || v.verdict === 'above' ? `**${v.verdict}**` : v.verdict;
  return v.interval ? words : `${words} (median only: under 6 rounds)`;
}

/** "median [low–high]" with the 95% interval, or "median (min–max of n)" where there are too few samples for one. */
export function medianWithInterval(samples: number[], digits: number): string {
  const s = stats(samples);
  const i = medianInterval(samples);
  return i
    ? `${s.median.toFixed(digits)} [${i.low.toFixed(digits)}–${i.high.toFixed(digits)}]`
    : `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)} of ${samples.length})`;
}

/** (max − min) / median: above 0.1 a small ratio difference is not worth reading. */
export function spread(s: Stats): number {
  return (s.max - s.min) / s.median;
}

interface CpuSnapshot {
  busy: number;
  steal: number;
  all: number;
  ours: number;
}

/**
 * System-wide CPU time (/proc/stat) and this process's own plus its waited-for children's
 * (/proc/self/stat: utime, stime, cutime, cstime; llama-bench is such a child). The difference
 * over a measurement is what everything else on the machine used, which the load average (a
 * decaying average that still shows our own previous work) cannot tell apart.
 */
export async function cpuSnapshot(): Promise<CpuSnapshot | undefined> {
  try {
    const [system, self] = await Promise.all([readFile('/proc/stat', 'utf8'), readFile('/proc/self/stat', 'utf8')]);
    const f = system.split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const [user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
    const s = self
      .slice(self.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    return {
      busy: user + nice + sys + irq + softirq,
      steal,
      all: user + nice + sys + idle + iowait + irq + softirq + steal,
      ours: s[11]! + s[12]! + s[13]! + s[14]!,
    };
  } catch {
    return undefined;
  }
}

export interface Interference {
  /** Share of the machine's CPU time used by other processes during the measurement (0..1). */
  otherProcesses: number;
  /** Share taken by the hypervisor from this VM (steal time). */
  steal: number;
}

export function interference(before: CpuSnapshot | undefined, after: CpuSnapshot | undefined): Interference | null {
  if (!before || !after || after.all <= before.all) return null;
  const all = after.all - before.all;
  const other = Math.max(0, after.busy - before.busy - (after.ours - before.ours));
  return { otherProcesses: other / all, steal: (after.steal - before.steal) / all };
}

export type Measured<T> = T & { interference: Interference | null };

export async function measured<T>(run: () => Promise<T>): Promise<Measured<T>> {
  const before = await cpuSnapshot();
  const value = await run();
  return { ...value, interference: interference(before, await cpuSnapshot()) };
}
