// The nccl-tests figures, size parsing and the step-window maths of the scaling bench.
import { describe, expect, it } from 'vitest';
import { bandwidthRow, median } from '../../src/bench/bandwidth.js';
import { formatBytes, parseByteSizes } from '../../src/bench/byte-sizes.js';
import { concurrentThroughputs, type TimedStep, throughput } from '../../src/bench/run-metrics.js';

describe('bandwidthRow', () => {
  it('takes the slowest rank per iteration, then the median; busbw = algbw × 2(N−1)/N', () => {
    // Iterations last 10, 30 and 20 ms (the slowest rank each time): median 20 ms.
    const two = bandwidthRow(
      2e6,
      [
        [10, 30, 5],
        [8, 12, 20],
      ],
      400,
    );
    expect(two.ms).toBe(20);
    expect(two.algbwMBps).toBeCloseTo(100, 9);
    expect(two.busbwMBps).toBeCloseTo(100, 9);
    expect(two.fractionOfTcp).toBeCloseTo(0.25, 9);
    const four = bandwidthRow(2e6, [[20], [20], [10], [5]], 400);
    expect(four.busbwMBps).toBeCloseTo(150, 9);
  });

  it('medians of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
  });
});

describe('byte sizes', () => {
  it('reads nccl-tests style sizes, sorted and without duplicates', () => {
    expect(parseByteSizes('1K,64K,1M,16M,64M,256M', '--sizes')).toEqual([
      1024,
      65536,
      1 << 20,
      16 << 20,
      64 << 20,
      256 << 20,
    ]);
    expect(parseByteSizes('4096, 1k, 1KiB, 2G', '--sizes')).toEqual([1024, 4096, 2 * 1024 ** 3]);
    expect(formatBytes(256 << 20)).toBe('256M');
    expect(formatBytes(1000)).toBe('1000');
  });

  it('refuses sizes that are not whole float32 elements, naming the flag', () => {
    expect(() => parseByteSizes('1K,3', '--sizes')).toThrow(/--sizes: "3"/);
    expect(() => parseByteSizes('0', '--sizes')).toThrow(/--sizes/);
    expect(() => parseByteSizes('12X', '--sizes')).toThrow(/--sizes/);
  });
});

describe('runs that ran at the same time', () => {
  const run = (startMs: number, stepMs: number[], count: number): TimedStep[] => {
    let end = startMs;
    return Array.from({ length: count }, (_, i) => {
      const ms = stepMs[i % stepMs.length];
      end += ms;
      return { step: i + 1, images: 10, endMs: end, ms, timings: undefined };
    });
  };

  it('counts what each run trained in the window where all of them were training', () => {
    // Common window [250, 1000]: each trained 7.5 steps of 10 images in 0.75 s.
    const got = concurrentThroughputs([run(0, [100], 10), run(250, [100], 10)]);
    expect(got?.windowMs).toBe(750);
    expect(got?.imagesPerSec[0]).toBeCloseTo(100, 9);
    expect(got?.imagesPerSec[1]).toBeCloseTo(100, 9);
  });

  it('is not fooled by steps planned ahead (one long, the next almost nothing)', () => {
    // Pairs of steps end together: 190 ms then 10 ms; 100 images/s all along.
    const pipelined = run(0, [190, 10], 20);
    const steady = run(0, [100], 20);
    const got = concurrentThroughputs([pipelined, steady]);
    expect(got?.imagesPerSec[0]).toBeCloseTo(100, 9);
    expect(throughput(pipelined)).toBeCloseTo(100, 9);
    // A window that cuts a pair in half is off by less than one step.
    const cut = concurrentThroughputs([pipelined, run(0, [100], 13)]);
    expect(Math.abs((cut?.imagesPerSec[0] ?? 0) * 1.3 - 130)).toBeLessThan(10);
  });

  it('is undefined for runs that did not overlap', () => {
    expect(concurrentThroughputs([run(0, [100], 2), run(500, [100], 2)])).toBe(undefined);
  });
});
