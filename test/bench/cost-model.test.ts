// The α–β model of bench predict against hand-computed cases.
import { describe, expect, it } from 'vitest';
import {
  allReduceMs,
  bucketCount,
  fitLink,
  predictOverlappedStep,
  predictStep,
} from '../../src/bench/cost-model.js';

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

describe('step prediction with the all-reduce overlapping the backward pass', () => {
  // C = 100 ms: forward 30, backward 60, rest 10. Three 1 MB buckets, final at 10%, 50% and
  // 100% of the backward pass (6, 30 and 60 ms into it).
  const shape = { computeMs: 100, batchSize: 32, gradientBytes: 3e6, buckets: 3 };
  const overlap = {
    forwardShare: 0.3,
    backwardShare: 0.6,
    buckets: [
      { readyFraction: 0.1, bytes: 1e6 },
      { readyFraction: 0.5, bytes: 1e6 },
      { readyFraction: 1, bytes: 1e6 },
    ],
  };

  it('hides what the backward pass covers: only the last bucket is left after it', () => {
    // Ring, N = 2: each bucket 2α + Sᵢβ = 1.2 ms; they end at 7.2, 31.2 and 61.2 ms.
    const p = predictOverlappedStep('ring', fit, shape, overlap, 2);
    expect(p.allreduceMs).toBeCloseTo(3.6, 12);
    expect(p.stepMs).toBeCloseTo(30 + 61.2 + 10, 12);
    expect(p.scalingEfficiency).toBeCloseTo(100 / 101.2, 12);
    expect(p.imagesPerSec).toBeCloseTo((2 * 32) / 0.1012, 6);
    // Without overlap: C + T(S, 2) with 3 latencies.
    expect(predictStep('ring', fit, shape, 2).stepMs).toBeCloseTo(103.6, 12);
    // Two micro-batches: the first is computed without sending anything.
    expect(predictOverlappedStep('ring', fit, shape, overlap, 2, 2).stepMs).toBeCloseTo(201.2, 12);
    expect(predictOverlappedStep('ring', fit, shape, overlap, 1).stepMs).toBe(100);
  });

  it('queues the buckets on a slow link: the step waits for the pipeline', () => {
    // 10 MB/s: 100.2 ms a bucket; they end at 106.2, 206.4 and 306.6 ms into the backward pass.
    const slow = { alphaMs: 0.1, betaMsPerByte: 1e-4 };
    const p = predictOverlappedStep('ring', slow, shape, overlap, 2);
    expect(p.stepMs).toBeCloseTo(30 + 306.6 + 10, 9);
    // Overlap saved the backward pass after the first bucket was final: 60 − 6 ms.
    expect(predictStep('ring', slow, shape, 2).stepMs - p.stepMs).toBeCloseTo(54, 9);
  });

  it('sends a compression’s fewer bytes in the buckets’ proportions, its operations and CPU time', () => {
    // PowerSGD: 0.3 MB in all, 2 operations per bucket (4α + 0.1 MB·β = 0.5 ms), 5 ms of CPU.
    const compressed = { ...shape, gradientBytes: 3e5, operationsPerBucket: 2, codecMs: 5 };
    const p = predictOverlappedStep('ring', fit, compressed, overlap, 2);
    expect(p.allreduceMs).toBeCloseTo(1.5, 12);
    expect(p.stepMs).toBeCloseTo(30 + 60.5 + 10 + 5, 12);
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
