import type { Compression } from '../shared/collectives/collective.js';

/**
 * The values rank `rank` contributes to all-reduce number `round`: small integers
 * in [-8, 7] that differ by element, rank and round, so that a chunk reduced at
 * the wrong offset, a rank's part counted twice or missing, or a stale result of
 * an earlier round cannot pass the check. Integers this small add up exactly in
 * float32 in any order, and in bf16 while |partial sums| ≤ 256 (up to 32 ranks).
 */
export function patternValue(index: number, rank: number, round: number): number {
  const h = Math.imul((index ^ Math.imul(round + 1, 0x27d4eb2d)) >>> 0, 0x9e3779b1) >>> 28;
  return ((h + 5 * rank) & 15) - 8;
}

/** Fills `data` with what `rank` contributes to all-reduce `round`. */
export function fillPattern(data: Float32Array, rank: number, round: number): void {
  for (let i = 0; i < data.length; i++) data[i] = patternValue(i, rank, round);
}

/** The first wrong element of an all-reduce result, and how many are wrong. */
export interface ReductionError {
  index: number;
  expected: number;
  actual: number;
  wrongCount: number;
}

/**
 * Checks every element of `data` against the sum over `worldSize` ranks of
 * fillPattern(round). Exact, except bf16 with more than 32 ranks (fp16: 256), where partial
 * sums over 256 (fp16: 2048) are rounded on the wire: then within the bound of that rounding.
 * Returns undefined when the result is right.
 */
export function checkReduction(
  data: Float32Array,
  worldSize: number,
  round: number,
  compression: Compression,
): ReductionError | undefined {
  // Integers up to 2^(significant bits) are exact: 256 in bf16, 2048 in fp16.
  const exact = compression === 'bf16' ? 256 : compression === 'fp16' ? 2048 : Infinity;
  const tolerance = 8 * worldSize > exact ? (8 * worldSize ** 2) / exact : 0;
  let first: ReductionError | undefined;
  let wrongCount = 0;
  for (let i = 0; i < data.length; i++) {
    let expected = 0;
    for (let r = 0; r < worldSize; r++) expected += patternValue(i, r, round);
    const actual = data[i];
    // Written so that NaN counts as wrong.
    if (!(Math.abs(actual - expected) <= tolerance)) {
      wrongCount++;
      first ??= { index: i, expected, actual, wrongCount: 0 };
    }
  }
  return first && { ...first, wrongCount };
}
