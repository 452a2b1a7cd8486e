// The arrivals benchmark's pure parts: the seeded Poisson schedule both Node sides replay, and the
// figures it reads from a run's token times (test/bench/arrivals-metrics.ts). No timing here.
import { describe, expect, it } from 'vitest';
import { arrivalMetrics, percentile, poissonSchedule, seededRandom, type RequestTrace } from '../bench/arrivals-metrics.js';
import { targetVerdict } from '../bench/stats.js';

describe('poissonSchedule', () => {
  it('is the same for the same seed and differs for another', () => {
    expect(poissonSchedule(64, 4, 1)).toEqual(poissonSchedule(64, 4, 1));
    expect(poissonSchedule(64, 4, 2)).not.toEqual(poissonSchedule(64, 4, 1));
  });

  it('starts at 0, never goes back, and has gaps of the requested mean', () => {
    const rate = 4;
    const times = poissonSchedule(20000, rate, 7);
    expect(times).toHaveLength(20000);
    expect(times[0]).toBe(0);
    const gaps = times.slice(1).map((t, i) => t - times[i]!);
    expect(gaps.every((g) => g >= 0)).toBe(true);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    // The mean of 19 999 exponential gaps has a standard error of 0.7% of the mean.
    expect(mean).toBeGreaterThan((1000 / rate) * 0.97);
    expect(mean).toBeLessThan((1000 / rate) * 1.03);
    // Exponential, not evenly spaced: about 63% of the gaps are below the mean.
    const below = gaps.filter((g) => g < 1000 / rate).length / gaps.length;
    expect(below).toBeGreaterThan(0.6);
    expect(below).toBeLessThan(0.66);
  });

  it('refuses a count or rate that makes no schedule', () => {
    expect(() => poissonSchedule(0, 4, 1)).toThrow(RangeError);
    expect(() => poissonSchedule(4, 0, 1)).toThrow(RangeError);
  });
});

describe('seededRandom', () => {
  it('stays in [0, 1)', () => {
    const next = seededRandom(123);
    for (let i = 0; i < 10000; i++) {
      const x = next();
      expect(x >= 0 && x < 1).toBe(true);
    }
  });
});

describe('percentile', () => {
  it('is the nearest rank', () => {
    const values = Array.from({ length: 16 }, (_, i) => 16 - i);
    expect(percentile(values, 50)).toBe(8);
    expect(percentile(values, 99)).toBe(16); // of 16 values the p99 is the largest
    expect(percentile([5], 99)).toBe(5);
  });
});

describe('arrivalMetrics', () => {
  // Two requests: one at 0 with tokens at 10, 20, ..., 100; one at 15 with tokens at 30, 40, ..., 120.
  const trace = (scheduledMs: number, firstMs: number): RequestTrace => {
    const deliveredMs = Array.from({ length: 10 }, (_, i) => firstMs + 10 * i);
    return { scheduledMs, startedMs: scheduledMs + 1, deliveredMs, tokens: deliveredMs.length };
  };
  const m = arrivalMetrics([trace(0, 10), trace(15, 30)]);

  it('times the first token from the scheduled arrival', () => {
    expect(m.ttftP50Ms).toBe(10);
    expect(m.ttftP99Ms).toBe(15);
    expect(m.maxStartDelayMs).toBe(1);
  });

  it('counts tokens over the whole run and over the window where every request generates', () => {
    expect(m.generatedTokens).toBe(20);
    expect(m.aggregateTokensPerSecond).toBeCloseTo((20 * 1000) / 120);
    // From 30 (the second's first token) to 100 (the first's last): 7 + 7 tokens after 30, up to 100.
    expect(m.fullOccupancyMs).toBe(70);
    expect(m.fullOccupancyTokensPerSecond).toBeCloseTo((14 * 1000) / 70);
    expect(m.tbtP50Ms).toBe(10);
    expect(m.tbtP99Ms).toBe(10);
  });

  it('has no full-occupancy figure when the first request ends before the last begins', () => {
    const apart = arrivalMetrics([trace(0, 10), trace(200, 210)]);
    expect(apart.fullOccupancyTokensPerSecond).toBeNull();
    expect(apart.fullOccupancyShare).toBe(0);
  });
});

describe('targetVerdict', () => {
  const around = (center: number) => Array.from({ length: 8 }, (_, i) => center + (i - 3.5) * 0.01);

  it('passes, misses or holds the threshold by the 95% interval of the median', () => {
    expect(targetVerdict(around(1.1), 1).verdict).toBe('pass');
    expect(targetVerdict(around(0.9), 1).verdict).toBe('below');
    expect(targetVerdict(around(1.0), 1).verdict).toBe('within noise');
    expect(targetVerdict(around(1.2), 1.5, 'atMost').verdict).toBe('pass');
    expect(targetVerdict(around(1.7), 1.5, 'atMost').verdict).toBe('above');
  });

  it('reads the median alone under 6 rounds', () => {
    const v = targetVerdict([1.1, 0.9], 1);
    expect(v.interval).toBeNull();
    expect(v.verdict).toBe('pass');
  });
});
