import { describe, expect, it } from 'vitest';
import { epochPermutation } from '../../src/shared/data/permutation.js';

describe('epochPermutation', () => {
  it('is a permutation of 0..count-1', () => {
    for (const count of [0, 1, 2, 7, 1000, 50_000]) {
      const order = epochPermutation(count, 3, 1);
      expect(order).toBeInstanceOf(Uint32Array);
      expect(order.length).toBe(count);
      const sorted = Array.from(order).sort((a, b) => a - b);
      expect(sorted.every((v, i) => v === i)).toBe(true);
    }
  });

  it('depends only on (seed, epoch)', () => {
    expect(epochPermutation(1000, 7, 4)).toEqual(epochPermutation(1000, 7, 4));
    const base = epochPermutation(1000, 7, 4);
    for (const other of [epochPermutation(1000, 7, 5), epochPermutation(1000, 8, 4)]) {
      const moved = base.filter((v, i) => v !== other[i]).length;
      expect(moved).toBeGreaterThan(900);
    }
  });

  it('shuffles: the identity is not returned and positions are about uniform', () => {
    expect(epochPermutation(100, 0, 0)).not.toEqual(Uint32Array.from({ length: 100 }, (_, i) => i));
    // Where element 0 lands, over 5,000 epochs of a 10-element permutation.
    const counts = new Array(10).fill(0);
    for (let epoch = 0; epoch < 5000; epoch++) counts[epochPermutation(10, 1, epoch).indexOf(0)]++;
    const chiSquare = counts.reduce((s, n) => s + (n - 500) ** 2 / 500, 0);
    expect(chiSquare).toBeLessThan(27.9); // p = 0.001 for 9 degrees of freedom
  });

  it('rejects impossible sizes', () => {
    expect(() => epochPermutation(-1, 0, 0)).toThrow(RangeError);
    expect(() => epochPermutation(2.5, 0, 0)).toThrow(RangeError);
  });
});
