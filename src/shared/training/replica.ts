import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type * as tfl from '@tensorflow/tfjs-layers';
import type {
  CheckpointCommand,
  EvaluateCommand,
  EvaluationMetrics,
  StepMetrics,
  StepPlan,
} from '../../gen/tfjs_ddp/v1/coordinator.js';
import type { Collective } from '../collectives/collective.js';
import type { CommHook, CommHookState } from '../collectives/comm-hook.js';
import { createCommHook } from '../collectives/comm-hooks.js';
import type { GradCompression } from '../collectives/grad-compression.js';
import { GradientReducer } from '../collectives/gradient-reducer.js';
import type { TrainConfig } from '../config/train-config.js';
import type { SampleSource } from '../data/sample-source.js';
import type { ReplicaState } from '../distributed/state-parts.js';
import { UserError } from '../errors.js';
import { wallClockAt, wallClockMs } from '../observe/wall-clock.js';
import { type EvalSums, Evaluator, mergeEvalSums } from './evaluator.js';
import type { OptimizerState } from './optimizer.js';
import { TrainStep } from './train-step.js';
import { weightsFingerprint } from './weights-fingerprint.js';

/** The step a replica held was abandoned by a membership change: so is the command that needed it. */
export class StepAbandoned extends Error {
  constructor(readonly step: number) {
    super(`step ${step + 1} was abandoned by a membership change`);
    this.name = 'StepAbandoned';
  }
}

/** What a replica trains with (a worker's RunSettings, or the coordinator's own settings). */
export interface ReplicaOptions {
  train: TrainConfig;
  compression: GradCompression;
  /** 0: the reducer's default. */
  firstBucketBytes: number;
  bucketBytes: number;
  /** Buckets leave while the backward pass runs (see TrainStep.step); needs a world of two or more. */
  overlap: boolean;
}

/**
 * One rank's replica of the model and the commands it executes: a worker process runs one
 * for its coordinator, and `train` without --workers runs one in the coordinator's process (a
 * world of one). It lives in src/shared because both roles run it; nothing here knows how
 * commands arrive. Every rank receives the same commands in the same order, so the collective
 * operations below (the gradient all-reduce per step, BatchNorm averaging, the initial
 * broadcast) line up on all ranks. `report` says what the replica is doing, for the
 * coordinator's error messages.
 */
export class Replica {
  readonly trainStep: TrainStep;
  private readonly evaluator: Evaluator;
  /** How gradients travel (--grad-compression); its state outlives membership changes. */
  private readonly comm: { hook: CommHook; state?: CommHookState };
  private collective: Collective | undefined;
  private reducer: GradientReducer | undefined;
  /** BatchNorm statistics changed since they were last averaged (the same on every rank). */
  private statsDirty = false;
  /** When the previous command finished: the time until the next plan is waiting. */
  private idleSince = performance.now();
  /**
   * The step whose reduced gradient this replica holds until its commit (see commitOf), with
   * its learning rate and the BatchNorm statistics from before its forward pass (restored when
   * the step is abandoned: the forward pass moved them).
   */
  private held: { step: number; lr: number; statsBefore: Float32Array | undefined } | undefined;
  /** How long the last update took (it is applied when the next command arrives). */
  private lastApplyMs = 0;
  /** Steps this replica has applied: every replica of the run has completed them. */
  committedSteps = 0;

  /**
   * `commitOf(step)` resolves true once every rank has completed `step` (its gradient may be
   * applied), false when the step is abandoned (a membership change): the commit rule; it
   * rejects when the coordinator is gone first. A world of one commits at once.
   */
  constructor(
    model: tfl.LayersModel,
    private readonly settings: ReplicaOptions,
    private readonly samples: Promise<SampleSource>,
    private readonly report: (activity: string) => void = () => undefined,
    private readonly commitOf: (step: number) => Promise<boolean> = async () => true,
  ) {
    const { train } = settings;
    this.trainStep = new TrainStep({
      model,
      optimizer: train.optimizer,
      weightDecay: train.weightDecay,
      seed: train.seed,
    });
    this.evaluator = new Evaluator(model);
    this.comm = createCommHook(settings.compression, this.trainStep.trainableLayout.shapes);
  }

  /** The membership generation of the collective in use (0: none yet). */
  get generation(): number {
    return this.collective?.generation ?? 0;
  }

  /** Uses `collective` (this membership generation's) from now on. */
  useCollective(collective: Collective): void {
    this.collective = collective;
    this.reducer = new GradientReducer(collective, {
      parameterSizes: this.trainStep.trainableLayout.sizes,
      firstBucketBytes: this.settings.firstBucketBytes || undefined,
      bucketBytes: this.settings.bucketBytes || undefined,
      hook: this.comm.hook,
    });
  }

  /**
   * Makes this replica identical to the others: rank `root`'s weights by broadcast, or the
   * resumed state from `fetchCheckpoint`. Returns the fingerprint of the weights.
   */
  async initialize(
    fromCheckpoint: boolean,
    root: number,
    fetchCheckpoint: () => Promise<ReplicaState>,
  ): Promise<string> {
    if (fromCheckpoint) {
      this.report('loading the checkpoint');
      const state = await fetchCheckpoint();
      this.setState(state, 1 / this.need().worldSize);
    } else {
      this.report(`receiving rank ${root}'s initial weights`);
      const weights = this.trainStep.getWeights();
      await this.need().broadcast(weights, root);
      this.trainStep.setWeights(weights);
    }
    this.idleSince = performance.now();
    return weightsFingerprint(this.trainStep.getWeights());
  }

  /** Loads this rank's share of the plan's batch and runs the step on it (TrainStep.step). */
  async step(plan: StepPlan): Promise<StepMetrics> {
    const n = plan.step + 1;
    const collective = this.need();
    const idleMs = performance.now() - this.idleSince;
    const startUnixMs = wallClockAt(this.idleSince);
    this.report(`loading the batch of step ${n}`);
    const t = performance.now();
    const batch = await (await this.samples).trainBatch(plan.sampleIndices, plan.epoch);
    const dataMs = performance.now() - t;
    // Loading the batch overlapped the wait for the previous step's commit.
    await this.settle();
    const applyMs = this.lastApplyMs;
    this.lastApplyMs = 0;
    const statsBefore =
      this.trainStep.movingStatsLayout.size > 0 ? this.trainStep.getMovingStats() : undefined;

    const outcome = await this.trainStep
      .step(
        {
          batch,
          sampleIndices: plan.sampleIndices,
          epoch: plan.epoch,
          globalBatchSize: plan.globalBatchSize,
          lr: plan.learningRate,
        },
        this.reducer as GradientReducer,
        collective.rank,
        (phase) => this.report(`${phase} of step ${n}`),
        this.settings.overlap && collective.worldSize > 1,
      )
      .catch((error: unknown) => {
        // The step failed in its all-reduce (a peer lost, the generation closed): the weights
        // are unchanged, but the forward pass moved the BatchNorm statistics. Undo that, so the
        // replica is at its last step, as the others that never started this one are.
        if (statsBefore) this.trainStep.setMovingStats(statsBefore);
        throw error;
      });
    this.statsDirty = true;
    this.held = { step: plan.step, lr: plan.learningRate, statsBefore };
    this.idleSince = performance.now();
    const { computeMs, waitMs, allReduceMs, buckets } = outcome.timings;
    return {
      generation: collective.generation,
      step: plan.step,
      epoch: plan.epoch,
      loss: outcome.loss,
      correct: outcome.correct,
      count: outcome.count,
      // Waiting for the plan and waiting for the slowest rank are both waiting.
      timings: {
        computeMs,
        allReduceMs,
        waitMs: idleMs + waitMs,
        dataMs,
        // The update of the previous step, applied once it was committed.
        applyMs,
        // The timeline (one clock, see wallClockMs): where the step starts, how its wait
        // splits, when this was sent.
        startUnixMs,
        barrierMs: waitMs,
        sentUnixMs: wallClockMs(),
        buckets,
      },
      skipped: outcome.skipped !== undefined,
      skipReason: outcome.skipped ?? '',
    };
  }

  /** Evaluates this rank's shard; the coordinator adds the shards' sums. */
  async evaluate(cmd: EvaluateCommand): Promise<EvaluationMetrics> {
    await this.settle();
    const started = performance.now();
    const startUnixMs = wallClockAt(started);
    if (cmd.averageBatchNormStats) await this.averageMovingStats();
    this.report(`evaluating ${cmd.sampleIndices.length} samples after step ${cmd.step}`);
    const { images, indices } = await (await this.samples).evalImages(cmd.sampleIndices);
    const all = indices ?? Array.from({ length: images.count }, (_, i) => i);
    const { preprocessing, evalBatchSize } = this.settings.train;
    let sums: EvalSums | undefined;
    for (let start = 0; start < all.length; start += evalBatchSize) {
      const batch = this.evaluator.run(images, {
        preprocessing,
        batchSize: evalBatchSize,
        indices: all.slice(start, start + evalBatchSize),
      });
      sums = sums ? mergeEvalSums(sums, batch) : batch;
      // A shard can take minutes on a CPU: let heartbeats out between batches.
      await yieldToEventLoop();
    }
    this.idleSince = performance.now();
    return {
      evaluationId: cmd.evaluationId,
      lossSum: sums?.lossSum ?? 0,
      correct: sums?.correct ?? 0,
      count: sums?.count ?? 0,
      // For the rank's evaluation span on the timeline.
      startUnixMs,
      durationMs: this.idleSince - started,
    };
  }

  /** Fingerprint of all weights, BatchNorm statistics averaged first so that replicas can agree. */
  async fingerprint(step: number): Promise<string> {
    await this.settle();
    await this.averageMovingStats();
    this.report(`fingerprinting its weights after step ${step}`);
    const fingerprint = weightsFingerprint(this.trainStep.getWeights());
    this.idleSince = performance.now();
    return fingerprint;
  }

  /** The state for a checkpoint when this rank is the sender, else undefined. */
  async checkpoint(cmd: CheckpointCommand): Promise<ReplicaState | undefined> {
    await this.settle();
    if (cmd.averageBatchNormStats) await this.averageMovingStats();
    // Every rank takes part: the hook's state may need a collective operation.
    const comm = cmd.includeOptimizerState
      ? await this.comm.state?.exportState(this.need())
      : undefined;
    this.idleSince = performance.now();
    if (cmd.senderRank !== this.need().rank) return undefined;
    return {
      weights: this.trainStep.getWeights(),
      optimizer: cmd.includeOptimizerState
        ? withCommState(this.trainStep.exportOptimizerState(), comm ?? {})
        : undefined,
    };
  }

  /**
   * A new membership generation starts after `committedSteps` steps: a held step before it
   * was committed (apply it), a held step at or after it is abandoned (discard its gradient,
   * restore the BatchNorm statistics of before its forward pass).
   */
  resolveHeld(committedSteps: number): void {
    const held = this.held;
    if (!held) return;
    if (held.step < committedSteps) this.apply(held);
    else this.discard(held);
  }

  /**
   * The coordinator is gone: the held step is applied when it had committed it; otherwise it
   * stays held (the next coordinator's first Membership decides, see restartPoint).
   */
  applyIfCommitted(committedSteps: number): void {
    if (this.held && this.held.step < committedSteps) this.apply(this.held);
  }

  /** Whether this replica holds the reduced gradient of step committedSteps + 1, uncommitted. */
  get holdsReducedStep(): boolean {
    return this.held !== undefined;
  }

  /**
   * Loads a current replica's state (a worker that joins a running job): weights with the
   * BatchNorm statistics, and the optimiser state, after `committedSteps` steps. Returns the
   * fingerprint of the weights.
   */
  loadState(state: ReplicaState, committedSteps: number): string {
    if (this.held) this.discard(this.held);
    // The others keep their error feedback: the joiner starts without any (PowerSGD).
    this.setState(state, 0);
    this.committedSteps = committedSteps;
    this.idleSince = performance.now();
    return weightsFingerprint(this.trainStep.getWeights());
  }

  dispose(): void {
    this.trainStep.dispose();
  }

  /**
   * Before anything that reads or changes the weights: applies the held step once it is
   * committed, or throws StepAbandoned when it is not (the command belongs to a generation
   * that ended). When the coordinator is gone before it said, commitOf rejects and the step
   * stays held.
   */
  private async settle(): Promise<void> {
    const held = this.held;
    if (!held) return;
    this.report(`waiting for the commit of step ${held.step + 1}`);
    if (await this.commitOf(held.step)) {
      this.apply(held);
      return;
    }
    this.discard(held);
    throw new StepAbandoned(held.step);
  }

  private apply(held: NonNullable<Replica['held']>): void {
    this.held = undefined;
    this.lastApplyMs = this.trainStep.applyHeld(held.lr);
    this.committedSteps = held.step + 1;
  }

  private discard(held: NonNullable<Replica['held']>): void {
    this.held = undefined;
    this.trainStep.discardHeld();
    if (held.statsBefore) this.trainStep.setMovingStats(held.statsBefore);
  }

  /** Replaces the moving mean and variance of every BatchNorm layer by their mean over the ranks. */
  private async averageMovingStats(): Promise<void> {
    const collective = this.need();
    if (
      !this.statsDirty ||
      this.trainStep.movingStatsLayout.size === 0 ||
      collective.worldSize === 1
    ) {
      this.statsDirty = false;
      return;
    }
    this.report('averaging BatchNorm statistics');
    const stats = this.trainStep.getMovingStats();
    await collective.allReduceSum(stats);
    for (let i = 0; i < stats.length; i++) stats[i] /= collective.worldSize;
    this.trainStep.setMovingStats(stats);
    this.statsDirty = false;
  }

  /** `commShare`: this rank's part of the hook's summed state (CommHookState.importState). */
  private setState(state: ReplicaState, commShare: number): void {
    const expected = this.trainStep.weightsLayout.size;
    if (state.weights.length !== expected) {
      throw new UserError(
        `the checkpoint holds ${state.weights.length} weights, this worker's ${this.settings.train.model} has ${expected}`,
      );
    }
    this.trainStep.setWeights(state.weights);
    if (state.optimizer) {
      const { optimizer, comm } = splitCommState(state.optimizer);
      this.trainStep.importOptimizerState(optimizer);
      this.comm.state?.importState(comm, commShare);
    }
  }

  private need(): Collective {
    if (!this.collective)
      throw new UserError('the coordinator sent a command before the membership');
    return this.collective;
  }
}

/**
 * The communication hook's state (PowerSGD's) travels in checkpoints as optimiser slots under
 * this prefix: like the optimiser's, it is per-run training state that a resume must restore,
 * and the checkpoint file and the state transfer carry named slots of any length.
 */
const COMM_SLOT_PREFIX = 'comm/';

function withCommState(
  optimizer: OptimizerState,
  comm: Readonly<Record<string, Float32Array>>,
): OptimizerState {
  const slots = { ...optimizer.slots };
  for (const [name, data] of Object.entries(comm)) slots[COMM_SLOT_PREFIX + name] = data;
  return { ...optimizer, slots };
}

function splitCommState(saved: OptimizerState): {
  optimizer: OptimizerState;
  comm: Record<string, Float32Array>;
} {
  const slots: Record<string, Float32Array> = {};
  const comm: Record<string, Float32Array> = {};
  for (const [name, data] of Object.entries(saved.slots)) {
    if (name.startsWith(COMM_SLOT_PREFIX)) comm[name.slice(COMM_SLOT_PREFIX.length)] = data;
    else slots[name] = data;
  }
  return { optimizer: { ...saved, slots }, comm };
}
