// The verifier that guards `bench allreduce`: a right sum passes, and every kind of
// wrong reduction an all-reduce bug produces is caught with the element named.
import { describe, expect, it } from 'vitest';
import { checkReduction, fillPattern, patternValue } from '../../src/bench/reduce-pattern.js';

function reduced(worldSize: number, length: number, round: number, skipRank = -1): Float32Array {
  const sum = new Float32Array(length);
  const part = new Float32Array(length);
  for (let r = 0; r < worldSize; r++) {
    if (r === skipRank) continue;
    fillPattern(part, r, round);
    for (let i = 0; i < length; i++) sum[i] += part[i];
  }
  return sum;
}

describe('checkReduction', () => {
  it('accepts the exact sum over the ranks', () => {
    for (const n of [2, 3, 8])
      expect(checkReduction(reduced(n, 5000, 7), n, 7, 'none')).toBe(undefined);
  });

  it('names the first wrong element and counts them', () => {
    const data = reduced(2, 1000, 0);
    data[123] += 1;
    data[900] = Number.NaN;
    expect(checkReduction(data, 2, 0, 'none')).toEqual({
      index: 123,
      expected: data[123] - 1,
      actual: data[123],
      wrongCount: 2,
    });
  });

  it('catches a missing rank, a rank counted twice, a stale round and a shifted chunk', () => {
    expect(checkReduction(reduced(3, 4096, 1, 2), 3, 1, 'none')?.wrongCount).toBeGreaterThan(3000);
    const twice = reduced(2, 4096, 1);
    const part = new Float32Array(4096);
    fillPattern(part, 1, 1);
    for (let i = 0; i < twice.length; i++) twice[i] += part[i];
    expect(checkReduction(twice, 2, 1, 'none')?.wrongCount).toBeGreaterThan(3000);
    expect(checkReduction(reduced(2, 4096, 4), 2, 5, 'none')?.wrongCount).toBeGreaterThan(3000);
    const shifted = reduced(2, 4096, 0);
    shifted.copyWithin(1024, 1025, 2049);
    expect(checkReduction(shifted, 2, 0, 'none')?.index).toBe(1024);
  });

  it('uses small integers, exact in bf16 up to 32 ranks, and differing by rank', () => {
    const values = new Set<number>();
    for (let i = 0; i < 1000; i++) values.add(patternValue(i, 0, 0));
    expect([...values].every((v) => Number.isInteger(v) && v >= -8 && v <= 7)).toBe(true);
    expect(values.size).toBe(16);
    expect(patternValue(5, 0, 0)).not.toBe(patternValue(5, 1, 0));
    const data = reduced(32, 100, 0);
    data[0] += 1;
    expect(checkReduction(data, 32, 0, 'bf16')?.index).toBe(0);
    // Past 32 ranks a bf16 partial sum over 256 may round: a small error is tolerated.
    const many = reduced(40, 100, 0);
    many[0] += 2;
    expect(checkReduction(many, 40, 0, 'bf16')).toBe(undefined);
    expect(checkReduction(many, 40, 0, 'none')?.index).toBe(0);
  });
});
