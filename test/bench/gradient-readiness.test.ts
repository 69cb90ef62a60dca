// The timeline bench compute reports, from known clock readings.
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ReadinessRecorder } from '../../src/bench/gradient-readiness.js';
import { planBuckets } from '../../src/shared/collectives/bucket-plan.js';

afterEach(() => {
  vi.restoreAllMocks();
});

describe('ReadinessRecorder', () => {
  it('places each bucket at its last gradient, in ms after the backward pass started', () => {
    // Four weights of 100 floats; a first bucket of ≥ 400 bytes, then ≥ 800: {3}, {1, 2}, {0}.
    const plan = planBuckets([100, 100, 100, 100], 400, 800);
    expect(plan.map((b) => [b.firstParameter, b.endParameter])).toEqual([
      [3, 4],
      [1, 3],
      [0, 1],
    ]);
    const clock = vi.spyOn(performance, 'now');
    const recorder = new ReadinessRecorder(4);
    const at = (ms: number) => clock.mockReturnValueOnce(ms);
    at(1000);
    recorder.start();
    at(1040);
    recorder.backwardStarted();
    // The backward pass finishes the last weight first.
    for (const [parameter, ms] of [
      [3, 1045],
      [2, 1060],
      [1, 1052],
      [0, 1100],
    ]) {
      at(ms);
      recorder.gradientReady(parameter);
    }
    expect(recorder.result(plan)).toEqual({
      forwardMs: 40,
      backwardMs: 60,
      parameterReadyMs: [60, 12, 20, 5],
      bucketReadyMs: [5, 20, 60],
    });
  });

  it('refuses a pass that left a weight without a gradient', () => {
    const recorder = new ReadinessRecorder(2);
    recorder.start();
    recorder.backwardStarted();
    recorder.gradientReady(1);
    expect(() => recorder.result(planBuckets([1, 1]))).toThrow(/no gradient for parameter 0/);
  });
});
