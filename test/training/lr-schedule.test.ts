import { describe, expect, it } from 'vitest';
import { VGG_STEP_SCHEDULE } from '../../src/shared/config/recipes.js';
import { resolveTrainConfig } from '../../src/shared/config/resolve-train-config.js';
import { createLrSchedule } from '../../src/shared/training/lr-schedule.js';
import { planRun } from '../../src/shared/training/run-plan.js';

const common = { baseLr: 0.01, warmupSteps: 0, stepsPerEpoch: 10, totalSteps: 2000 };

describe('learning-rate schedules', () => {
  it('constant', () => {
    const lr = createLrSchedule({ ...common, schedule: { kind: 'constant' } });
    expect([lr(0), lr(1999)]).toEqual([0.01, 0.01]);
  });

  it("step: the VGG study's 0.01 to epoch 80, 0.005 to 140, then 0.001", () => {
    const lr = createLrSchedule({ ...common, schedule: VGG_STEP_SCHEDULE });
    expect(lr(0)).toBeCloseTo(0.01, 12);
    expect(lr(799)).toBeCloseTo(0.01, 12);
    expect(lr(800)).toBeCloseTo(0.005, 12);
    expect(lr(1399)).toBeCloseTo(0.005, 12);
    expect(lr(1400)).toBeCloseTo(0.001, 12);
    expect(lr(5000)).toBeCloseTo(0.001, 12);
  });

  it('cosine: from the base rate to minFactor over the run', () => {
    const lr = createLrSchedule({ ...common, schedule: { kind: 'cosine', minFactor: 0.1 } });
    expect(lr(0)).toBeCloseTo(0.01, 12);
    expect(lr(1000)).toBeCloseTo(0.01 * (0.1 + 0.9 * 0.5), 12);
    expect(lr(2000)).toBeCloseTo(0.001, 12);
    expect(lr(3000)).toBeCloseTo(0.001, 12);
    expect(lr(500)).toBeGreaterThan(lr(501));
  });

  it('linear warm-up multiplies any schedule', () => {
    const lr = createLrSchedule({
      ...common,
      warmupSteps: 4,
      schedule: { kind: 'step', boundaries: [0.2], factors: [0.5] },
    });
    expect([0, 1, 2, 3, 4].map(lr).map((x) => Number(x.toFixed(6)))).toEqual([
      // warm-up ¼, ½, ¾, 1, 1 times the step schedule's 1, 1, ½, ½, ½ (boundary: step 2)
      0.0025, 0.005, 0.00375, 0.005, 0.005,
    ]);
  });
});

describe('planRun', () => {
  it("turns the VGG study's epochs into steps at the run's global batch", () => {
    const config = resolveTrainConfig({ model: 'vgg11a' });
    const one = planRun(config, 45_000);
    expect([one.stepsPerEpoch, one.totalSteps]).toEqual([352, 70_400]);
    expect([one.schedule(80 * 352 - 1), one.schedule(80 * 352)]).toEqual([0.01, 0.005]);
    // Four workers of 128 each: 88 steps per epoch, the drop still at epoch 80.
    const four = planRun(config, 45_000, 512);
    expect([four.stepsPerEpoch, four.totalSteps]).toEqual([88, 17_600]);
    expect(four.schedule(80 * 88)).toBe(0.005);
  });
});
