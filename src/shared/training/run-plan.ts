import type { TrainConfig } from '../config/train-config.js';
import { createLrSchedule, type LrSchedule } from './lr-schedule.js';
import { stepsPerEpoch } from './sampler.js';

/** How long a run is and which learning rate each step uses: the same on every replica. */
export interface RunPlan {
  /** Samples per step, over all workers. */
  globalBatch: number;
  stepsPerEpoch: number;
  totalSteps: number;
  schedule: LrSchedule;
}

/**
 * Plans a run of `config` over `trainCount` training images. `globalBatch` is config.batchSize
 * for one worker; a distributed run passes N × batchSize (per-worker batch, as torchrun).
 * Epoch counts (--epochs, step-schedule boundaries) become steps at this global batch.
 */
export function planRun(
  config: TrainConfig,
  trainCount: number,
  globalBatch = config.batchSize,
): RunPlan {
  const perEpoch = stepsPerEpoch(trainCount, globalBatch);
  const totalSteps = config.steps ?? (config.epochs ?? 1) * perEpoch;
  return {
    globalBatch,
    stepsPerEpoch: perEpoch,
    totalSteps,
    schedule: createLrSchedule({
      baseLr: config.optimizer.lr,
      schedule: config.schedule,
      warmupSteps: config.warmupSteps,
      stepsPerEpoch: perEpoch,
      totalSteps,
    }),
  };
}
