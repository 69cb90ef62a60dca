import { describe, expect, it } from 'vitest';
import { epochPermutation } from '../../src/shared/data/permutation.js';
import { Sampler, shardIndices, stepsPerEpoch } from '../../src/shared/training/sampler.js';

describe('Sampler', () => {
  it('cuts each epoch permutation into global batches, the last one smaller', () => {
    const sampler = new Sampler(10, 5, 4);
    const batches = Array.from({ length: 6 }, () => sampler.next());
    expect(batches.map((b) => [b.epoch, b.indices.length, b.endsEpoch])).toEqual([
      [0, 4, false],
      [0, 4, false],
      [0, 2, true],
      [1, 4, false],
      [1, 4, false],
      [1, 2, true],
    ]);
    for (const epoch of [0, 1]) {
      const seen = batches.filter((b) => b.epoch === epoch).flatMap((b) => Array.from(b.indices));
      expect(seen).toEqual(Array.from(epochPermutation(10, 5, epoch)));
    }
    expect(stepsPerEpoch(10, 4)).toBe(3);
    expect(sampler.cursor).toEqual({ epoch: 2, offset: 0 });
  });

  it('a sampler started at a saved cursor continues the same sequence', () => {
    const a = new Sampler(100, 1, 16);
    for (let i = 0; i < 9; i++) a.next();
    const b = new Sampler(100, 1, 16, a.cursor);
    for (let i = 0; i < 10; i++)
      expect(Array.from(b.next().indices)).toEqual(Array.from(a.next().indices));
  });

  it('shards a global batch into contiguous parts differing by at most one', () => {
    const batch = Uint32Array.from([9, 8, 7, 6, 5, 4, 3]);
    const shards = shardIndices(batch, 3);
    expect(shards.map((s) => Array.from(s))).toEqual([
      [9, 8, 7],
      [6, 5],
      [4, 3],
    ]);
    expect(shardIndices(Uint32Array.from([1]), 3).map((s) => s.length)).toEqual([1, 0, 0]);
  });

  it('rejects impossible arguments', () => {
    expect(() => new Sampler(0, 1, 4)).toThrow(/0 images/);
    expect(() => new Sampler(10, 1, 4, { epoch: 0, offset: 10 })).toThrow(/offset 10/);
  });
});
