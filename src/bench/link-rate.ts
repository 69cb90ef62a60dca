import { UserError } from '../shared/errors.js';

/** The rate of every emulated link, as `--link` gives it. */
export interface LinkRate {
  /** As written by the user, normalised: "50mbit". */
  text: string;
  bitsPerSec: number;
}

const PREFIX: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9 };
const MIN_BITS = 1e6;
const MAX_BITS = 100e9;

/**
 * Parses a link rate as tc writes it: a number and kbit, mbit or gbit (decimal prefixes,
 * bits per second), from 1mbit to 100gbit. Throws UserError naming `flag`.
 */
export function parseLinkRate(text: string, flag = '--link'): LinkRate {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)bit\s*$/i.exec(text);
  const bitsPerSec = m ? Math.round(Number(m[1]) * PREFIX[m[2].toLowerCase()]) : Number.NaN;
  if (!m) {
    throw new UserError(
      `${flag} ${text}: expected a rate in bits per second such as 50mbit, 200mbit or 1gbit ` +
        '(kbit, mbit, gbit: 10^3, 10^6, 10^9 bit/s)',
    );
  }
  if (bitsPerSec < MIN_BITS || bitsPerSec > MAX_BITS) {
    throw new UserError(`${flag} ${text}: a link rate must be between 1mbit and 100gbit`);
  }
  return { text: `${m[1]}${m[2].toLowerCase()}bit`, bitsPerSec };
}

/** What a link carries at most, in MB/s (10^6 bytes/s, the benchmarks' unit). */
export function linkMBps(link: LinkRate): number {
  return link.bitsPerSec / 8 / 1e6;
}
