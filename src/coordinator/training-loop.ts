import { performance } from 'node:perf_hooks';
import { Split, type StepMetrics } from '../gen/tfjs_ddp/v1/coordinator.js';
import type { TrainConfig } from '../shared/config/train-config.js';
import type { ReplicaState } from '../shared/distributed/state-parts.js';
import { log } from '../shared/logging/logger.js';
import {
  type DataCursor,
  type EpochSampler,
  shardIndices,
} from '../shared/training/epoch-sampler.js';
import type { MetricsWriter } from '../shared/training/metrics-writer.js';
import type { RunPlan } from '../shared/training/run-plan.js';
import type { TrainingProgress } from '../shared/training/training-progress.js';
import { RunFailure } from './control-channel.js';
import { fingerprintMismatch } from './fingerprints.js';
import { summarizeStep } from './step-results.js';
import { combineTimings, type StepTimingStats } from './step-timings.js';
import type { WorkerGroup } from './worker-group.js';

/** Step plans sent ahead of the results: a worker finds its next plan waiting when it finishes. */
const PLANS_AHEAD = 2;
/** Skipped steps in a row (gradient not finite) after which the run has diverged. */
const MAX_SKIPPED_IN_A_ROW = 10;

export interface DistributedLoopOptions {
  group: WorkerGroup;
  config: TrainConfig;
  plan: RunPlan;
  /** Positioned at the batch of step `startStep`. */
  sampler: EpochSampler;
  startStep: number;
  valCount: number;
  /** Checkpoint every K steps; absent: at the end of every epoch. The last step always does. */
  checkpointEvery?: number;
  /** Compare the replicas' fingerprints every K steps and after the last (0: never). */
  fingerprintEvery: number;
  /** Writes a checkpoint of rank 0's `state` after `step` steps, the next batch at `cursor`. */
  saveCheckpoint(step: number, cursor: DataCursor, state: ReplicaState): Promise<void>;
  metrics: MetricsWriter;
  progress: TrainingProgress;
  timings: StepTimingStats;
  /** Once aborted, the loop stops after the current step and checkpoints. */
  signal?: AbortSignal;
}

export interface DistributedLoopResult {
  steps: number;
  interrupted: boolean;
  imagesPerSec: number;
  finalLoss: number | null;
  valAccuracy: number | null;
  /** The last checkpoint's state (BatchNorm statistics averaged): what the run exports. */
  finalState: ReplicaState | undefined;
}

interface PendingStep {
  step: number;
  epoch: number;
  lr: number;
  images: number;
  metrics: Promise<StepMetrics[]>;
}

/**
 * The coordinator's training loop, the distributed twin of runTrainLoop: per step it cuts the
 * global batch from the sampler, splits it evenly over the workers (shardIndices: sizes differ
 * by at most one, so an uneven batch is fine, the all-reduce weighting by sample count) and
 * sends every worker its StepPlan; it collects their StepMetrics, writes metrics.jsonl and
 * drives the progress bar. Commands reach every worker in the same order, so the collective
 * operations they imply (BatchNorm averaging before evaluations, fingerprints and
 * checkpoints) line up on all ranks. Any worker failure rejects (see WorkerGroup).
 */
export async function runDistributedLoop(
  opts: DistributedLoopOptions,
): Promise<DistributedLoopResult> {
  const { group, plan, sampler, signal } = opts;
  const { totalSteps, globalBatch } = plan;
  const pending: PendingStep[] = [];
  const epochSums = { loss: 0, correct: 0, images: 0, seconds: 0 };
  const run = { images: 0, seconds: 0 };
  let finalLoss: number | null = null;
  let valAccuracy: number | null = null;
  let finalState: ReplicaState | undefined;
  let lastCollected = performance.now();
  let nextId = 1;
  let step = opts.startStep;
  let checkpointedAt = -1;
  let skippedInARow = 0;

  const collect = async (p: PendingStep) => {
    const all = await p.metrics;
    const now = performance.now();
    const seconds = (now - lastCollected) / 1000;
    lastCollected = now;
    const { count, loss, correct, skipped } = summarizeStep(all, p.step, p.images);
    if (skipped)
      log().warn({ step: p.step + 1 }, `step ${p.step + 1} skipped on every replica: ${skipped}`);
    const timings = combineTimings(all);
    opts.timings.add(timings);
    opts.metrics.write({
      type: 'step',
      step: p.step + 1,
      epoch: p.epoch,
      loss,
      accuracy: count > 0 ? correct / count : 0,
      images: count,
      lr: p.lr,
      imagesPerSec: count / seconds,
      time: new Date().toISOString(),
      workers: group.size,
      timings,
      ...(skipped ? { skipped: true } : {}),
    });
    run.images += count;
    run.seconds += seconds;
    epochSums.loss += loss * count;
    epochSums.correct += correct;
    epochSums.images += count;
    epochSums.seconds += seconds;
    opts.progress.update({
      step: p.step + 1,
      epoch: p.epoch,
      loss: epochSums.loss / epochSums.images,
      accuracy: epochSums.correct / epochSums.images,
      imagesPerSec: epochSums.images / epochSums.seconds,
    });
    skippedInARow = skipped ? skippedInARow + 1 : 0;
    if (skippedInARow >= MAX_SKIPPED_IN_A_ROW) {
      throw new RunFailure(
        `training diverged: the gradient was not finite in ${skippedInARow} steps in a row, up to step ${p.step + 1} ` +
          `(${skipped}); try a lower --lr or a --warmup-steps warm-up`,
      );
    }
  };

  while (step < totalSteps && !signal?.aborted) {
    const offset = sampler.cursor.offset;
    const { epoch, indices, endsEpoch } = sampler.next();
    const cursor = sampler.cursor;
    const shards = shardIndices(indices, group.size);
    const lr = plan.schedule(step);
    const current = step;
    await group.send(
      (c) => ({
        $case: 'stepPlan',
        value: {
          step: current,
          epoch,
          stepInEpoch: Math.floor(offset / globalBatch),
          sampleIndices: Array.from(shards[c.rank]),
          globalBatchSize: indices.length,
          learningRate: lr,
        },
      }),
      `training step ${current + 1}`,
    );
    const metrics = group.all((c) => c.stepMetrics(current));
    // Awaited in order later; a failure meanwhile is the group's and surfaces there.
    metrics.catch(() => undefined);
    pending.push({ step: current, epoch, lr, images: indices.length, metrics });
    step++;
    const last = step === totalSteps;
    const fingerprint = opts.fingerprintEvery > 0 && (step % opts.fingerprintEvery === 0 || last);
    const evaluation = (endsEpoch || last) && opts.valCount > 0;
    const checkpoint =
      (opts.checkpointEvery ? step % opts.checkpointEvery === 0 : endsEpoch) ||
      last ||
      signal?.aborted === true;
    // These commands go out right after this step's plan, before any later one.
    const fingerprints = fingerprint ? requestFingerprints(group, step) : undefined;
    const evaluated = evaluation
      ? requestEvaluation(group, step, opts.valCount, nextId++)
      : undefined;
    const state = checkpoint ? requestState(group, step, nextId++) : undefined;
    for (const p of [fingerprints, evaluated, state]) p?.catch(() => undefined);
    const sync = fingerprints || evaluated || state;
    while (pending.length > (sync ? 0 : PLANS_AHEAD - 1))
      await collect(pending.shift() as PendingStep);
    if (!sync) continue;
    if (fingerprints) {
      const mismatch = fingerprintMismatch(await fingerprints);
      if (mismatch) throw new RunFailure(`the replicas diverged: after step ${step}, ${mismatch}`);
    }
    if (evaluated) {
      const { loss, accuracy, count } = await evaluated;
      valAccuracy = accuracy;
      opts.metrics.write({
        type: 'eval',
        step,
        epoch,
        loss,
        accuracy,
        count,
        time: new Date().toISOString(),
      });
      opts.progress.evaluated(step, epoch, accuracy, loss);
    }
    if (endsEpoch || last) {
      if (epochSums.images > 0) finalLoss = epochSums.loss / epochSums.images;
      if (endsEpoch) Object.assign(epochSums, { loss: 0, correct: 0, images: 0, seconds: 0 });
    }
    if (state) {
      finalState = await state;
      await opts.saveCheckpoint(step, cursor, finalState);
      checkpointedAt = step;
    }
    lastCollected = performance.now();
  }
  while (pending.length > 0) await collect(pending.shift() as PendingStep);
  // Interrupted between a step's plan and its checkpoint decision: checkpoint where it stopped.
  if (step < totalSteps && checkpointedAt !== step) {
    finalState = await requestState(group, step, nextId++);
    await opts.saveCheckpoint(step, sampler.cursor, finalState);
  }
  if (finalLoss === null && epochSums.images > 0) finalLoss = epochSums.loss / epochSums.images;
  opts.progress.stop();
  return {
    steps: step,
    interrupted: step < totalSteps,
    imagesPerSec: run.seconds > 0 ? run.images / run.seconds : 0,
    finalLoss,
    valAccuracy,
    finalState,
  };
}

function requestFingerprints(group: WorkerGroup, step: number): Promise<string[]> {
  return group
    .send(
      () => ({ $case: 'fingerprint', value: { step } }),
      `fingerprinting its weights after step ${step}`,
    )
    .then(() => group.all((c) => c.fingerprint(step)));
}

/** Every worker evaluates its shard of the validation split (BatchNorm statistics averaged first). */
async function requestEvaluation(
  group: WorkerGroup,
  step: number,
  valCount: number,
  evaluationId: number,
): Promise<{ loss: number; accuracy: number; count: number }> {
  const shards = shardIndices(
    Uint32Array.from({ length: valCount }, (_, i) => i),
    group.size,
  );
  await group.send(
    (c) => ({
      $case: 'evaluate',
      value: {
        evaluationId,
        step,
        split: Split.SPLIT_VAL,
        sampleIndices: Array.from(shards[c.rank]),
        averageBatchNormStats: true,
      },
    }),
    `evaluating after step ${step}`,
  );
  const results = await group.all((c) => c.evaluation(evaluationId));
  const count = results.reduce((n, r) => n + r.count, 0);
  if (count !== valCount) {
    throw new RunFailure(
      `the evaluation after step ${step} covered ${count} of ${valCount} samples`,
    );
  }
  const lossSum = results.reduce((s, r) => s + r.lossSum, 0);
  const correct = results.reduce((n, r) => n + r.correct, 0);
  return { loss: lossSum / count, accuracy: correct / count, count };
}

/** Rank 0's weights and optimiser state, after every rank averaged its BatchNorm statistics. */
async function requestState(
  group: WorkerGroup,
  step: number,
  checkpointId: number,
): Promise<ReplicaState> {
  const sender = group.channels[0];
  const state = sender.expectState(checkpointId, true);
  state.catch(() => undefined);
  await group.send(
    () => ({
      $case: 'checkpoint',
      value: {
        checkpointId,
        step,
        senderRank: 0,
        averageBatchNormStats: true,
        includeOptimizerState: true,
      },
    }),
    `preparing the checkpoint after step ${step}`,
  );
  const [result] = await group.all((c) => (c === sender ? state : Promise.resolve(undefined)));
  return result as ReplicaState;
}
