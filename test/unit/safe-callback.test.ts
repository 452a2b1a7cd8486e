// The one wrapper for user callbacks that run while native work is in flight.
import { describe, expect, it } from 'vitest';
import { safeCallback } from '../../lib/safe-callback.js';

describe('safeCallback', () => {
  it('passes calls through and has nothing to rethrow while the callback behaves', () => {
    const seen: [string, number][] = [];
    let stops = 0;
    const cb = safeCallback(
      (text: string, index: number) => seen.push([text, index]),
      () => stops++,
    );
    cb.call('a', 0);
    cb.call('b', 1);
    expect(seen).toEqual([
      ['a', 0],
      ['b', 1],
    ]);
    expect(stops).toBe(0);
    expect(() => cb.rethrow()).not.toThrow();
  });

  it('keeps the first exception, stops the operation, and rethrows it afterwards', () => {
    let stops = 0;
    let calls = 0;
    const cb = safeCallback(
      () => {
        calls++;
        throw new Error(`boom ${calls}`);
      },
      () => stops++,
    );
    expect(() => cb.call()).not.toThrow();
    cb.call();
    expect(stops).toBe(2);
    expect(() => cb.rethrow()).toThrow('boom 1');
  });

  it('rethrows even a thrown undefined', () => {
    const cb = safeCallback(
      () => {
        throw undefined;
      },
      () => undefined,
    );
    cb.call();
    let caught = false;
    try {
      cb.rethrow();
    } catch {
      caught = true;
    }
    expect(caught).toBe(true);
  });
});
