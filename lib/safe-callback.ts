/**
 * User callbacks that run while native work is in flight (load progress, generated text). Their
 * exceptions must never unwind into the addon or the loop that drives it: the first one is kept,
 * the operation is stopped through its cancel flag, and the caller rethrows it once the native
 * call has settled, so nothing native is left half done.
 */
export interface SafeCallback<A extends unknown[]> {
  /** Calls the user's callback; an exception is kept (the first one) and stops the operation. */
  readonly call: (...args: A) => void;
  /** Throws the callback's first exception, if it threw; otherwise does nothing. */
  rethrow(): void;
}

export function safeCallback<A extends unknown[]>(callback: (...args: A) => void, stop: () => void): SafeCallback<A> {
  let threw = false;
  let error: unknown;
  return {
    call: (...args: A) => {
      try {
        callback(...args);
      } catch (e) {
        if (!threw) {
          threw = true;
          error = e;
        }
        stop();
      }
    },
    rethrow: () => {
      if (threw) throw error;
    },
  };
}
