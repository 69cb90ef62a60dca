import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { TrainConfig } from '../config/train-config.js';
import { buildBatch } from '../data/batch.js';
import type { DatasetSplits } from '../data/labeled-images.js';
import { UserError } from '../errors.js';
import type { DataCursor, EpochSampler } from './epoch-sampler.js';
import { type EvalSummary, type Evaluator, summarizeEval } from './evaluator.js';
import type { MetricsWriter } from './metrics-writer.js';
import type { TrainStep } from './train-step.js';
import type { TrainingProgress } from './training-progress.js';

export interface TrainLoopOptions {
  config: TrainConfig;
  trainStep: TrainStep;
  evaluator: Evaluator;
  data: DatasetSplits;
  /** Positioned at the batch of step `startStep`. */
  sampler: EpochSampler;
  /** Steps already completed (0, or a checkpoint's step). */
  startStep: number;
  totalSteps: number;
  /** Checkpoint every K steps; absent: at the end of every epoch. The last step always does. */
  checkpointEvery?: number;
  /** Writes a checkpoint after `step` steps, the next batch starting at `cursor`. */
  saveCheckpoint(step: number, cursor: DataCursor): Promise<void>;
  metrics: MetricsWriter;
  progress: TrainingProgress;
  /** Once aborted, the loop stops after the current step and checkpoints. */
  signal?: AbortSignal;
}

export interface TrainLoopResult {
  /** Steps completed (== totalSteps unless interrupted). */
  steps: number;
  interrupted: boolean;
  /** Training images per second of step time (batch building and the step; no evaluation). */
  imagesPerSec: number;
  /** Mean training loss over the last epoch trained (or its part trained in this process). */
  finalLoss: number | null;
  /** The last evaluation on the validation split, if any ran. */
  lastEval: EvalSummary | null;
}

/**
 * The single-process driver: a thin loop over sampler → buildBatch → TrainStep, evaluating at
 * the end of every epoch and of the run, checkpointing, logging metrics and progress. A
 * distributed coordinator replaces exactly this loop (it sends each worker its share of the
 * sampler's batch) and reuses everything it calls.
 */
export async function runTrainLoop(opts: TrainLoopOptions): Promise<TrainLoopResult> {
  const { config, trainStep, sampler, totalSteps } = opts;
  const grads = new Float32Array(trainStep.trainableLayout.size);
  const epochSums = { loss: 0, correct: 0, images: 0, seconds: 0 };
  let trainSeconds = 0;
  let trainImages = 0;
  let finalLoss: number | null = null;
  let lastEval: EvalSummary | null = null;
  let step = opts.startStep;
  let checkpointedAt = -1;

  while (step < totalSteps && !opts.signal?.aborted) {
    const started = performance.now();
    const { epoch, indices, endsEpoch } = sampler.next();
    const batch = buildBatch(opts.data.train, indices, {
      preprocessing: config.preprocessing,
      augment: config.augment,
      seed: config.seed,
      epoch,
    });
    const result = trainStep.computeGradients(batch, indices, epoch, grads);
    if (!Number.isFinite(result.loss)) {
      throw new UserError(
        `training diverged: the loss is ${result.loss} at step ${step + 1}; ` +
          'try a lower --lr or a --warmup-steps warm-up',
      );
    }
    const { lr } = trainStep.applyGradients(result.grads, step);
    const seconds = (performance.now() - started) / 1000;
    step++;
    trainSeconds += seconds;
    trainImages += result.count;
    epochSums.loss += result.loss * result.count;
    epochSums.correct += result.correct;
    epochSums.images += result.count;
    epochSums.seconds += seconds;
    opts.metrics.write({
      type: 'step',
      step,
      epoch,
      loss: result.loss,
      accuracy: result.correct / result.count,
      images: result.count,
      lr,
      imagesPerSec: result.count / seconds,
      time: new Date().toISOString(),
    });
    opts.progress.update({
      step,
      epoch,
      loss: epochSums.loss / epochSums.images,
      accuracy: epochSums.correct / epochSums.images,
      imagesPerSec: epochSums.images / epochSums.seconds,
    });

    const last = step === totalSteps;
    if (endsEpoch || last) {
      finalLoss = epochSums.loss / epochSums.images;
      lastEval = evaluate(opts, step, epoch);
      if (endsEpoch) Object.assign(epochSums, { loss: 0, correct: 0, images: 0, seconds: 0 });
    }
    const due = opts.checkpointEvery ? step % opts.checkpointEvery === 0 : endsEpoch;
    if (due || last) {
      await opts.saveCheckpoint(step, sampler.cursor);
      checkpointedAt = step;
    }
    // Let signal handlers and timers run between steps (a step blocks the event loop).
    await yieldToEventLoop();
  }

  const interrupted = step < totalSteps;
  if (interrupted && checkpointedAt !== step) await opts.saveCheckpoint(step, sampler.cursor);
  if (finalLoss === null && epochSums.images > 0) finalLoss = epochSums.loss / epochSums.images;
  opts.progress.stop();
  return {
    steps: step,
    interrupted,
    imagesPerSec: trainSeconds > 0 ? trainImages / trainSeconds : 0,
    finalLoss,
    lastEval,
  };
}

function evaluate(opts: TrainLoopOptions, step: number, epoch: number): EvalSummary {
  const sums = opts.evaluator.run(opts.data.val, {
    preprocessing: opts.config.preprocessing,
    batchSize: opts.config.evalBatchSize,
  });
  const summary = summarizeEval(sums, opts.data.classNames);
  opts.metrics.write({
    type: 'eval',
    step,
    epoch,
    loss: summary.loss,
    accuracy: summary.accuracy,
    count: summary.count,
    time: new Date().toISOString(),
  });
  opts.progress.evaluated(step, epoch, summary.accuracy, summary.loss);
  return summary;
}
