import type { ScheduleConfig } from '../config/train-config.js';

/**
 * The learning rate of step `step` (0-based: the number of updates applied before it). A pure
 * function of the step, so that every replica, and a resumed run, uses the same rate without
 * exchanging it.
 */
export type LrSchedule = (step: number) => number;

export interface ScheduleOptions {
  baseLr: number;
  schedule: ScheduleConfig;
  /** Linear warm-up over the first N steps (0: none); multiplies the schedule's rate. */
  warmupSteps: number;
  /** Converts the step schedule's epoch boundaries into steps. */
  stepsPerEpoch: number;
  /** The cosine schedule's horizon. */
  totalSteps: number;
}

/**
 * Builds the schedule: baseLr × factor(step) × warm-up(step), where
 * - constant: factor 1;
 * - step: factors[i] from step boundaries[i]·stepsPerEpoch on (1 before the first boundary);
 * - cosine: minFactor + (1 − minFactor)·(1 + cos(π·step/totalSteps))/2, minFactor past the end;
 * - warm-up: min(1, (step + 1)/warmupSteps), so the first step already moves the weights.
 */
export function createLrSchedule(opts: ScheduleOptions): LrSchedule {
  const { baseLr, schedule, warmupSteps, stepsPerEpoch, totalSteps } = opts;
  const factor = scheduleFactor(schedule, stepsPerEpoch, totalSteps);
  return (step) => {
    const warm = warmupSteps > 0 ? Math.min(1, (step + 1) / warmupSteps) : 1;
    return baseLr * factor(step) * warm;
  };
}

function scheduleFactor(
  schedule: ScheduleConfig,
  stepsPerEpoch: number,
  totalSteps: number,
): (step: number) => number {
  switch (schedule.kind) {
    case 'constant':
      return () => 1;
    case 'step': {
      const starts = schedule.boundaries.map((epoch) => Math.round(epoch * stepsPerEpoch));
      return (step) => {
        let f = 1;
        starts.forEach((start, i) => {
          if (step >= start) f = schedule.factors[i];
        });
        return f;
      };
    }
    case 'cosine': {
      const { minFactor } = schedule;
      return (step) => {
        const progress = Math.min(1, step / Math.max(1, totalSteps));
        return minFactor + ((1 - minFactor) * (1 + Math.cos(Math.PI * progress))) / 2;
      };
    }
  }
}
