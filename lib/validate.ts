/**
 * Argument checks for the public API. Each throws a TypeError or RangeError that names the
 * parameter, what was expected and what was received, with Node-style `code`s.
 */

type Described = { code: string };

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'function') return 'a function';
  return typeof value === 'object' ? `an object (${Object.prototype.toString.call(value)})` : typeof value;
}

export function typeError(name: string, expected: string, value: unknown): TypeError {
  const error = new TypeError(`${name} must be ${expected}, got ${describe(value)}`) as TypeError & Described;
  error.code = 'ERR_INVALID_ARG_TYPE';
  return error;
}

export function rangeError(name: string, expected: string, value: unknown, hint?: string): RangeError {
  const error = new RangeError(`${name} must be ${expected}, got ${describe(value)}${hint ? ` (${hint})` : ''}`) as RangeError & Described;
  error.code = 'ERR_OUT_OF_RANGE';
  return error;
}

export function expectObject(name: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw typeError(name, 'an object', value);
  return value as Record<string, unknown>;
}

export function expectString(name: string, value: unknown, { allowEmpty = true } = {}): string {
  if (typeof value !== 'string') throw typeError(name, 'a string', value);
  if (!allowEmpty && value.length === 0) throw rangeError(name, 'a non-empty string', value);
  return value;
}

export function optionalInteger(name: string, value: unknown, min: number, max: number, hint?: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number') throw typeError(name, 'an integer', value);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw rangeError(name, `an integer from ${min} to ${max}`, value, hint);
  }
  return value;
}

export function optionalNumber(name: string, value: unknown, min: number, max: number, { minExclusive = false } = {}): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number') throw typeError(name, 'a number', value);
  if (!Number.isFinite(value) || value < min || value > max || (minExclusive && value === min)) {
    throw rangeError(name, `a finite number ${minExclusive ? 'above' : 'from'} ${min} ${minExclusive ? 'up to' : 'to'} ${max}`, value);
  }
  return value;
}

export function optionalBoolean(name: string, value: unknown): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw typeError(name, 'a boolean', value);
  return value;
}

export function optionalEnum<T extends string>(name: string, value: unknown, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw typeError(name, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, value);
  }
  return value as T;
}

export function optionalSignal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw typeError(name, 'an AbortSignal', value);
  return value;
}

export function optionalFunction<F extends (...args: never[]) => unknown>(name: string, value: unknown): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw typeError(name, 'a function', value);
  return value as F;
}

/** Rejects options that were removed or misspelled, so a typo is not silently ignored. */
export function rejectUnknownKeys(
  name: string,
  options: Record<string, unknown>,
  known: readonly string[],
  hints: Record<string, string> = {},
): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const error = new TypeError(
      `${name}.${key} is not an option${hints[key] ? `: ${hints[key]}` : ''}; known options: ${known.join(', ')}`,
    ) as TypeError & Described;
    error.code = 'ERR_INVALID_ARG_VALUE';
    throw error;
  }
}
