import type { EvaluationMetrics, StepMetrics, StepPlan } from '../gen/tfjs_ddp/v1/coordinator.js';
import type { ReplicaState } from '../shared/distributed/state-parts.js';
import type { DataCursor } from '../shared/training/sampler.js';
import type { MembershipRecord } from './membership-change.js';

/**
 * The replicas of a run as the coordinator's loop sees them, whatever carries the commands:
 * WorkerGroup (worker processes over control streams) or InProcessGroup (one replica in this
 * process: `train` without --workers).
 *
 * Ordering: each call hands its command to every rank at once, before it returns, and every
 * rank executes commands in call order; so the collective operations they imply (the
 * all-reduce of a step, BatchNorm averaging before evaluations, fingerprints and checkpoints)
 * line up on all ranks. Calls may overlap (a step's plan goes out before the previous step's
 * metrics are back). Failure: once any rank fails, every pending and later call rejects with
 * the run's failure (RunFailure for remote ranks); when the membership generation ends (a worker
 * lost), with MembershipChange: the loop then calls reform() and plans the steps after
 * committedSteps again.
 *
 * Ranks here are positions in the current generation (0..size-1).
 */
export interface ReplicaGroup {
  /** The ranks: 0..size-1. */
  readonly size: number;
  /** Steps every replica has applied (the commit rule: no replica applies a step not all completed). */
  readonly committedSteps: number;
  /** Workers wait to join or announced that they leave: reform() at the next step boundary. */
  readonly changePending: boolean;
  /** The compute backends the replicas run on, for the summary ("wasm", "tensorflow,wasm"). */
  readonly backend: string;
  /**
   * Connects the replicas (membership generation 1) and makes them identical: rank 0's initial
   * weights broadcast, or the checkpoint's state loaded, or (`keepHeldState`, workers of a
   * restarted coordinator) the state they kept. Resolves with each rank's fingerprint.
   */
  initialize(
    fromCheckpoint: boolean,
    startStep: number,
    keepHeldState?: boolean,
  ): Promise<string[]>;
  /** Runs step `step` (0-based), rank r training on `planFor(r)`; resolves with the metrics by rank. */
  step(step: number, planFor: (rank: number) => StepPlan): Promise<StepMetrics[]>;
  /** The fingerprint of every rank's weights after `step` steps (BatchNorm averaged first). */
  fingerprints(step: number): Promise<string[]>;
  /** Rank r evaluates validation samples `shardFor(r)` (BatchNorm averaged first). */
  evaluate(
    step: number,
    evaluationId: number,
    shardFor: (rank: number) => number[],
  ): Promise<EvaluationMetrics[]>;
  /** Rank 0's weights and optimiser state after `step` steps, BatchNorm averaged first. */
  state(step: number, checkpointId: number): Promise<Required<ReplicaState>>;
  /**
   * Forms the next membership generation at step `step` (all before it committed; the next
   * batch at `cursor`). Rejects with RunFailure when the run cannot go on, BelowMinimum below
   * --min-workers, MembershipChange when the new generation fails too.
   */
  reform(step: number, cursor: DataCursor): Promise<MembershipRecord>;
}
