import { UserError } from '../shared/errors.js';

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/**
 * Parses a comma-separated list of sizes in bytes with binary suffixes, as
 * nccl-tests writes them ("1K,64K,1M,256M": K = 1024). Every size must be a
 * positive multiple of 4 (float32 elements). Throws UserError naming `flag`.
 */
export function parseByteSizes(text: string, flag: string): number[] {
  const sizes = text.split(',').map((part) => {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([KMG]?)i?B?\s*$/i.exec(part);
    const bytes = m ? Number(m[1]) * UNITS[m[2].toUpperCase()] : Number.NaN;
    if (!Number.isInteger(bytes) || bytes <= 0 || bytes % 4 !== 0) {
      throw new UserError(
        `${flag}: "${part.trim()}" is not a size in bytes that holds whole float32 elements (e.g. 1K,64K,1M,256M)`,
      );
    }
    return bytes;
  });
  return [...new Set(sizes)].sort((a, b) => a - b);
}

/** "64M", "1K", "1000": the shortest binary-suffixed form that is exact. */
export function formatBytes(bytes: number): string {
  for (const unit of ['G', 'M', 'K']) {
    if (bytes >= UNITS[unit] && bytes % UNITS[unit] === 0) return `${bytes / UNITS[unit]}${unit}`;
  }
  return String(bytes);
}

/** Parses "1,2,4" into positive integers; throws UserError naming `flag`. */
export function parsePositiveIntegers(text: string, flag: string): number[] {
  return text.split(',').map((part) => {
    const n = Number(part.trim());
    if (!Number.isInteger(n) || n < 1) {
      throw new UserError(`${flag}: "${part.trim()}" is not a positive integer`);
    }
    return n;
  });
}
