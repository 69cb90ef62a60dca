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

/** What a replica trains with (a worker's RunSettings, or the coordinator's own settings). */
export interface ReplicaOptions {
  train: TrainConfig;
  compression: GradCompression;
  /** 0: the reducer's default. */
  firstBucketBytes: number;
  bucketBytes: number;
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

  constructor(
    model: tfl.LayersModel,
    private readonly settings: ReplicaOptions,
    private readonly samples: Promise<SampleSource>,
    private readonly report: (activity: string) => void = () => undefined,
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
      this.setState(state);
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

    const outcome = await this.trainStep.step(
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
    );
    this.statsDirty = true;
    this.idleSince = performance.now();
    const { computeMs, waitMs, allReduceMs, applyMs, buckets } = outcome.timings;
    return {
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
    await this.averageMovingStats();
    this.report(`fingerprinting its weights after step ${step}`);
    const fingerprint = weightsFingerprint(this.trainStep.getWeights());
    this.idleSince = performance.now();
    return fingerprint;
  }

  /** The state for a checkpoint when this rank is the sender, else undefined. */
  async checkpoint(cmd: CheckpointCommand): Promise<ReplicaState | undefined> {
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

  dispose(): void {
    this.trainStep.dispose();
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

  private setState(state: ReplicaState): void {
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
      this.comm.state?.importState(comm, this.need().worldSize);
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
