/**
 * The one formatter of byte counts for messages and reports, in binary units (KiB, MiB, GiB).
 */

const units = { KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30 } as const;

export type ByteUnit = keyof typeof units;

export interface FormatBytesOptions {
  /** The unit to use. Default: the largest one the value reaches (KiB below a MiB). */
  unit?: ByteUnit;
  /** Digits after the decimal point. Default: 2 for GiB, 0 for MiB and KiB. */
  digits?: number;
}

/** "1.50 GiB", "12 MiB", "3 KiB"; with a fixed unit, e.g. { unit: 'MiB', digits: 1 }: "0.3 MiB". */
export function formatBytes(bytes: number, options: FormatBytesOptions = {}): string {
  const unit = options.unit ?? (bytes >= units.GiB ? 'GiB' : bytes >= units.MiB ? 'MiB' : 'KiB');
  const digits = options.digits ?? (unit === 'GiB' ? 2 : 0);
  return `${(bytes / units[unit]).toFixed(digits)} ${unit}`;
}
