import { performance } from 'node:perf_hooks';
import type { EvaluationMetrics, StepMetrics } from '../gen/tfjs_ddp/v1/coordinator.js';
import type { ReplicaState } from '../shared/distributed/state-parts.js';
import { log } from '../shared/logging/logger.js';
import type { MetricsWriter } from '../shared/training/metrics-writer.js';
import type { RunPlan } from '../shared/training/run-plan.js';
import { type DataCursor, type Sampler, shardIndices } from '../shared/training/sampler.js';
import type { TrainingProgress } from '../shared/training/training-progress.js';
import { fingerprintMismatch } from './fingerprints.js';
import { BelowMinimum, MembershipChange } from './membership-change.js';
import { membershipChanged } from './membership-log.js';
import { nowMs, type RankStep } from './observe/run-events.js';
import type { RunObservers } from './observe/run-observers.js';
import type { ReplicaGroup } from './replica-group.js';
import { RunFailure } from './run-failure.js';
import { summarizeStep } from './step-results.js';
import { combineTimings, type StepTimingStats } from './step-timings.js';

/** Step plans sent ahead of the results: a worker finds its next plan waiting when it finishes. */
const PLANS_AHEAD = 2;
/** Skipped steps in a row (gradient not finite) after which the run has diverged. */
const MAX_SKIPPED_IN_A_ROW = 10;

export interface TrainingLoopOptions {
  group: ReplicaGroup;
  plan: RunPlan;
  /** Positioned at the batch of step `startStep`. */
  sampler: Sampler;
  startStep: number;
  valCount: number;
  /** Checkpoint every K steps; absent: at the end of every epoch. The last step always does. */
  checkpointEvery?: number;
  /** Compare the replicas' fingerprints every K steps and after the last (0: never). */
  fingerprintEvery: number;
  /** Writes a checkpoint of rank 0's `state` after `step` steps, the next batch at `cursor`. */
  saveCheckpoint(step: number, cursor: DataCursor, state: Required<ReplicaState>): Promise<void>;
  metrics: MetricsWriter;
  progress: TrainingProgress;
  timings: StepTimingStats;
  /** Told of every step, evaluation and span (the dashboard, /metrics, the trace). */
  observers: RunObservers;
  /** Bytes each rank sends in one all-reduce. */
  allReduceBytesPerRank: number;
  /** Once aborted, the loop stops after the current step and checkpoints. */
  signal?: AbortSignal;
}

export interface TrainingLoopResult {
  steps: number;
  interrupted: boolean;
  imagesPerSec: number;
  finalLoss: number | null;
  valAccuracy: number | null;
  /** The last checkpoint's state (BatchNorm statistics averaged): what the run exports. */
  finalState: Required<ReplicaState> | undefined;
}

/** A step's global batch, kept until the step is committed (a membership change plans it again). */
interface PlannedBatch {
  epoch: number;
  /** Where the batch starts in the epoch's permutation. */
  offset: number;
  indices: Uint32Array;
  endsEpoch: boolean;
  /** The cursor after this batch: where a checkpoint after this step resumes. */
  cursor: DataCursor;
}

interface PendingStep {
  step: number;
  batch: PlannedBatch;
  lr: number;
  images: number;
  metrics: Promise<StepMetrics[]>;
}

/** What follows step `step` before the next is planned: fingerprints, evaluation, checkpoint. */
interface SyncDue {
  step: number;
  epoch: number;
  cursor: DataCursor;
  endsEpoch: boolean;
  last: boolean;
  fingerprint?: boolean;
  evaluation?: boolean;
  checkpoint?: boolean;
}

/**
 * The training loop of every run, a world of one as a world of N: per step it cuts the
 * global batch from the sampler, splits it evenly over the ranks (shardIndices: sizes differ
 * by at most one, so an uneven batch is fine, the all-reduce weighting by sample count) and
 * gives every rank its StepPlan, with the schedule's learning rate; it collects their
 * StepMetrics (stepCompleted: the one place where a step's figures are complete), evaluates,
 * compares fingerprints and checkpoints. One policy for every event: a step whose gradient is
 * not finite is skipped on every replica, and MAX_SKIPPED_IN_A_ROW in a row fail the run; a
 * signal (opts.signal) stops it after the current step with a checkpoint. Any rank's failure
 * rejects (see ReplicaGroup).
 */
export async function runTrainingLoop(opts: TrainingLoopOptions): Promise<TrainingLoopResult> {
  const { group, plan, sampler, signal } = opts;
  const { totalSteps, globalBatch } = plan;
  const pending: PendingStep[] = [];
  const epochSums = { loss: 0, correct: 0, images: 0, seconds: 0 };
  const run = { images: 0, seconds: 0 };
  let finalLoss: number | null = null;
  let valAccuracy: number | null = null;
  let finalState: Required<ReplicaState> | undefined;
  let lastCollected = performance.now();
  let nextId = 1;
  let step = opts.startStep;
  let checkpointedAt = -1;
  let skippedInARow = 0;

  const { observers } = opts;
  const stepCompleted = (p: PendingStep, all: StepMetrics[], collected: number) => {
    const now = performance.now();
    const seconds = (now - lastCollected) / 1000;
    lastCollected = now;
    const { count, loss, correct, skipped } = summarizeStep(all, p.step, p.images);
    if (skipped)
      log().warn({ step: p.step + 1 }, `step ${p.step + 1} skipped on every replica: ${skipped}`);
    const timings = combineTimings(all);
    opts.timings.add(timings);
    const accuracy = count > 0 ? correct / count : 0;
    const ranks = observers.stepCollected(
      {
        step: p.step + 1,
        epoch: p.batch.epoch,
        loss,
        accuracy,
        images: count,
        imagesPerSec: count / seconds,
        lr: p.lr,
        allReduceBytesPerRank: opts.allReduceBytesPerRank,
        skipped: skipped !== undefined,
      },
      all,
      collected,
    );
    opts.metrics.write({
      type: 'step',
      step: p.step + 1,
      epoch: p.batch.epoch,
      loss,
      accuracy,
      images: count,
      lr: p.lr,
      imagesPerSec: count / seconds,
      time: new Date().toISOString(),
      workers: group.size,
      timings,
      ...(skipped ? { skipped: true } : {}),
      ranks: ranks.map(roundedTimings),
    });
    run.images += count;
    run.seconds += seconds;
    epochSums.loss += loss * count;
    epochSums.correct += correct;
    epochSums.images += count;
    epochSums.seconds += seconds;
    opts.progress.update({
      step: p.step + 1,
      epoch: p.batch.epoch,
      loss: epochSums.loss / epochSums.images,
      accuracy: epochSums.correct / epochSums.images,
      imagesPerSec: epochSums.images / epochSums.seconds,
    });
    skippedInARow = skipped ? skippedInARow + 1 : 0;
    if (skippedInARow >= MAX_SKIPPED_IN_A_ROW) {
      throw new RunFailure(
        `training diverged: the gradient was not finite in ${skippedInARow} steps in a row ` +
          `(steps ${p.step + 2 - skippedInARow} to ${p.step + 1}, all skipped; at the last, ${skipped}); ` +
          'try a lower --lr or a --warmup-steps warm-up',
      );
    }
  };
  /** Collects the oldest pending step; it stays pending until its metrics are in (a membership change plans it again). */
  const collectOldest = async () => {
    await collect(pending[0]);
    pending.shift();
  };
  const collect = async (p: PendingStep) => {
    const collecting = nowMs();
    const all = await p.metrics;
    stepCompleted(p, all, nowMs());
    observers.span('collect', p.step + 1, collecting);
  };

  const replan: PlannedBatch[] = [];
  /** The batch of the next step: one a membership change left unfinished, else the sampler's. */
  const nextBatch = (): PlannedBatch => {
    const again = replan.shift();
    if (again) return again;
    const offset = sampler.cursor.offset;
    const { epoch, indices, endsEpoch } = sampler.next();
    return { epoch, offset, indices, endsEpoch, cursor: sampler.cursor };
  };
  /** Where the data of the next step to plan starts. */
  const nextCursor = (): DataCursor =>
    replan[0] ? { epoch: replan[0].epoch, offset: replan[0].offset } : sampler.cursor;

  /** The fingerprints, evaluation and checkpoint after `due.step` steps (every pending step collected). */
  const sync = async (due: SyncDue) => {
    const { step: at, epoch } = due;
    // These commands go out together, before any later step's plan.
    const fingerprints = due.fingerprint ? group.fingerprints(at) : undefined;
    const evaluated = due.evaluation ? evaluate(group, at, opts.valCount, nextId++) : undefined;
    const state = due.checkpoint ? group.state(at, nextId++) : undefined;
    for (const p of [fingerprints, evaluated, state]) p?.catch(() => undefined);
    if (fingerprints) {
      const comparing = nowMs();
      const mismatch = fingerprintMismatch(await fingerprints);
      observers.span('fingerprint', at, comparing);
      if (mismatch) throw new RunFailure(`the replicas diverged: after step ${at}, ${mismatch}`);
    }
    if (evaluated) {
      const evaluating = nowMs();
      const { loss, accuracy, count, results } = await evaluated;
      observers.events.emit({
        type: 'eval',
        step: at,
        epoch,
        loss,
        accuracy,
        count,
        startMs: evaluating,
        durationMs: nowMs() - evaluating,
        ranks: observers.evaluationSpans(results),
      });
      observers.span('evaluate', at, evaluating);
      valAccuracy = accuracy;
      opts.metrics.write({
        type: 'eval',
        step: at,
        epoch,
        loss,
        accuracy,
        count,
        time: new Date().toISOString(),
      });
      opts.progress.evaluated(at, epoch, accuracy, loss);
    }
    if (due.endsEpoch || due.last) {
      if (epochSums.images > 0) finalLoss = epochSums.loss / epochSums.images;
      if (due.endsEpoch) Object.assign(epochSums, { loss: 0, correct: 0, images: 0, seconds: 0 });
    }
    if (state) {
      const checkpointing = nowMs();
      finalState = await state;
      await opts.saveCheckpoint(at, due.cursor, finalState);
      observers.span('checkpoint', at, checkpointing);
      checkpointedAt = at;
    }
    lastCollected = performance.now();
  };

  /**
   * Forms the next membership generation at `step` (retried while new generations fail), and
   * records the change. Below --min-workers after --rejoin-timeout, checkpoints the survivors'
   * state and ends the run.
   */
  const reformWorld = async () => {
    for (;;) {
      try {
        membershipChanged(opts, await group.reform(step, nextCursor()));
        lastCollected = performance.now();
        return;
      } catch (error) {
        if (error instanceof MembershipChange) continue;
        if (!(error instanceof BelowMinimum) || !error.survivorsFormed) throw error;
        finalState = await group.state(step, nextId++);
        await opts.saveCheckpoint(step, nextCursor(), finalState);
        throw new RunFailure(`${error.message}; the checkpoint after step ${step} is written`);
      }
    }
  };

  /**
   * The generation ended: the steps it committed are kept (their metrics are in), the others
   * are planned again, same batches, over the next generation.
   */
  const recover = async () => {
    const committed = group.committedSteps;
    const again: PlannedBatch[] = [];
    for (const p of pending.splice(0)) {
      if (p.step < committed) await collect(p);
      else again.push(p.batch);
    }
    replan.unshift(...again);
    step = committed;
    if (due && due.step !== committed) due = undefined;
    await reformWorld();
  };

  let due: SyncDue | undefined;
  while (step < totalSteps && !signal?.aborted) {
    try {
      if (due) {
        await sync(due);
        due = undefined;
        continue;
      }
      if (group.changePending) {
        // Joins and announced leaves happen at a step boundary: every planned step collected.
        while (pending.length > 0) await collectOldest();
        await reformWorld();
        continue;
      }
      const batch = nextBatch();
      const { epoch, indices, endsEpoch } = batch;
      const shards = shardIndices(indices, group.size);
      const lr = plan.schedule(step);
      const current = step;
      const planning = nowMs();
      const metrics = group.step(current, (rank) => ({
        step: current,
        epoch,
        stepInEpoch: Math.floor(batch.offset / globalBatch),
        sampleIndices: Array.from(shards[rank]),
        globalBatchSize: indices.length,
        learningRate: lr,
      }));
      observers.span('plan', current, planning);
      // Awaited in order later; a failure meanwhile is the group's and surfaces there.
      metrics.catch(() => undefined);
      pending.push({ step: current, batch, lr, images: indices.length, metrics });
      step++;
      const last = step === totalSteps;
      const fingerprint = opts.fingerprintEvery > 0 && (step % opts.fingerprintEvery === 0 || last);
      const evaluation = (endsEpoch || last) && opts.valCount > 0;
      const checkpoint =
        (opts.checkpointEvery ? step % opts.checkpointEvery === 0 : endsEpoch) ||
        last ||
        signal?.aborted === true;
      const needsSync = fingerprint || evaluation || checkpoint;
      if (needsSync) {
        due = { step, epoch, cursor: batch.cursor, endsEpoch, last };
        Object.assign(due, { fingerprint, evaluation, checkpoint });
      }
      while (pending.length > (needsSync ? 0 : PLANS_AHEAD - 1)) await collectOldest();
      if (due) {
        await sync(due);
        due = undefined;
      }
    } catch (error) {
      if (!(error instanceof MembershipChange)) throw error;
      await recover();
    }
  }
  while (pending.length > 0) await collectOldest();
  // Interrupted between a step's plan and its checkpoint decision: checkpoint where it stopped.
  if (step < totalSteps && checkpointedAt !== step) {
    finalState = await group.state(step, nextId++);
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

/** A rank's timings as metrics.jsonl keeps them: the phases, to 0.01 ms. */
function roundedTimings(r: RankStep) {
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    rank: r.rank,
    dataMs: round(r.dataMs),
    computeMs: round(r.computeMs),
    waitMs: round(r.waitMs),
    allReduceMs: round(r.allReduceMs),
    applyMs: round(r.applyMs),
  };
}

/** Every rank evaluates its shard of the validation split (BatchNorm statistics averaged first). */
async function evaluate(
  group: ReplicaGroup,
  step: number,
  valCount: number,
  evaluationId: number,
): Promise<{ loss: number; accuracy: number; count: number; results: EvaluationMetrics[] }> {
  const shards = shardIndices(
    Uint32Array.from({ length: valCount }, (_, i) => i),
    group.size,
  );
  const results = await group.evaluate(step, evaluationId, (rank) => Array.from(shards[rank]));
  const count = results.reduce((n, r) => n + r.count, 0);
  if (count !== valCount) {
    throw new RunFailure(
      `the evaluation after step ${step} covered ${count} of ${valCount} samples`,
    );
  }
  const lossSum = results.reduce((s, r) => s + r.lossSum, 0);
  const correct = results.reduce((n, r) => n + r.correct, 0);
  return { loss: lossSum / count, accuracy: correct / count, count, results };
}
