// The α–β model of bench predict against hand-computed cases.
import { describe, expect, it } from 'vitest';
import { allReduceMs, bucketCount, fitLink, predictStep } from '../../src/bench/cost-model.js';

const fit = { alphaMs: 0.1, betaMsPerByte: 1e-6 };

describe('all-reduce time', () => {
  it('ring: 2(N−1)·α·b + 2(N−1)/N·S·β', () => {
    // N = 4, S = 1 MB: 6 × 0.1 + 1.5 × 1 = 2.1 ms; with 3 buckets 1.8 + 1.5.
    expect(allReduceMs('ring', fit, 1e6, 4)).toBeCloseTo(2.1, 12);
    expect(allReduceMs('ring', fit, 1e6, 4, 3)).toBeCloseTo(3.3, 12);
    // N = 2: each rank sends S once: 2 × 0.1 + 1.
    expect(allReduceMs('ring', fit, 1e6, 2)).toBeCloseTo(1.2, 12);
  });

  it('star: 2·α·b + N·S·β, and nothing for one worker', () => {
    expect(allReduceMs('star', fit, 1e6, 4)).toBeCloseTo(4.2, 12);
    expect(allReduceMs('star', fit, 1e6, 1)).toBe(0);
    expect(allReduceMs('ring', fit, 1e6, 1)).toBe(0);
  });
});

describe('step prediction', () => {
  it('throughput N·k·B / (k·C + T) and efficiency k·C / (k·C + T)', () => {
    const shape = { computeMs: 10, batchSize: 32, gradientBytes: 1e6, buckets: 1 };
    const p = predictStep('ring', fit, shape, 4);
    expect(p.allreduceMs).toBeCloseTo(2.1, 12);
    expect(p.stepMs).toBeCloseTo(12.1, 12);
    expect(p.imagesPerSec).toBeCloseTo((4 * 32) / 0.0121, 6);
    expect(p.scalingEfficiency).toBeCloseTo(10 / 12.1, 12);
    const accumulated = predictStep('ring', fit, shape, 4, 4);
    expect(accumulated.stepMs).toBeCloseTo(42.1, 12);
    expect(accumulated.imagesPerSec).toBeCloseTo((4 * 4 * 32) / 0.0421, 6);
    expect(accumulated.scalingEfficiency).toBeCloseTo(40 / 42.1, 12);
    expect(predictStep('star', fit, shape, 1).scalingEfficiency).toBe(1);
  });

  it('counts a small first bucket, then full ones', () => {
    expect(bucketCount(500, 1000, 4000)).toBe(1);
    expect(bucketCount(1000, 1000, 4000)).toBe(1);
    expect(bucketCount(1001, 1000, 4000)).toBe(2);
    expect(bucketCount(9001, 1000, 4000)).toBe(4);
  });
});

describe('fitLink', () => {
  const sizes = [1024, 65536, 1 << 20, 16 << 20, 256 << 20];

  it('recovers α and β from times the model made, for ring and star at several N', () => {
    for (const algo of ['ring', 'star'] as const) {
      const samples = [2, 4].flatMap((workers) =>
        sizes.map((bytes) => ({ workers, bytes, ms: allReduceMs(algo, fit, bytes, workers) })),
      );
      const got = fitLink(algo, samples);
      expect(got.alphaMs).toBeCloseTo(0.1, 9);
      expect(got.betaMsPerByte / 1e-6).toBeCloseTo(1, 9);
    }
  });

  it('weighs relative errors, so the latency comes from the small sizes', () => {
    // 10% noise on the largest size would swamp α in a plain least-squares fit.
    const samples = sizes.map((bytes) => ({
      workers: 2,
      bytes,
      ms: allReduceMs('ring', fit, bytes, 2) * (bytes === 256 << 20 ? 1.1 : 1),
    }));
    expect(fitLink('ring', samples).alphaMs).toBeGreaterThan(0.08);
  });

  it('keeps α and β non-negative', () => {
    const flat = sizes.map((bytes) => ({ workers: 2, bytes, ms: 5 }));
    const got = fitLink('ring', flat);
    expect(got.alphaMs).toBeCloseTo(2.5, 6);
    expect(got.betaMsPerByte).toBe(0);
    expect(() => fitLink('ring', [{ workers: 1, bytes: 10, ms: 1 }])).toThrow(/no all-reduce/);
  });
});
