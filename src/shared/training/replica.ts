import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type * as tfl from '@tensorflow/tfjs-layers';
import type {
  CheckpointCommand,
  EvaluateCommand,
  EvaluationMetrics,
  StepMetrics,
  StepPlan,
} from '../gen/tfjs_ddp/v1/coordinator.js';
import type { Collective } from '../shared/collectives/collective.js';
import { commHook } from '../shared/collectives/comm-hooks.js';
import { GradientReducer } from '../shared/collectives/gradient-reducer.js';
import { findNonFinite } from '../shared/collectives/non-finite.js';
import type { RunSettings } from '../shared/distributed/run-settings.js';
import type { ReplicaState } from '../shared/distributed/state-parts.js';
import { UserError } from '../shared/errors.js';
import { type EvalSums, Evaluator, mergeEvalSums } from '../shared/training/evaluator.js';
import { TrainStep } from '../shared/training/train-step.js';
import { weightsFingerprint } from '../shared/training/weights-fingerprint.js';
import type { SampleSource } from './sample-source.js';

/**
 * One worker's replica of the model and the commands it executes. Every rank receives the same
 * commands in the same order, so the collective operations below (a barrier and the gradient
 * all-reduce per step, BatchNorm averaging, the initial broadcast) line up on all ranks.
 * `report` tells the coordinator what the replica is doing, for its error messages.
 */
export class Replica {
  readonly trainStep: TrainStep;
  private readonly evaluator: Evaluator;
  private readonly grads: Float32Array<ArrayBuffer>;
  private collective: Collective | undefined;
  private reducer: GradientReducer | undefined;
  /** The learning rate of the plan being applied: the coordinator's schedule is authoritative. */
  private planLr = 0;
  /** BatchNorm statistics changed since they were last averaged (the same on every rank). */
  private statsDirty = false;
  /** When the previous command finished: the time until the next plan is waiting. */
  private idleSince = performance.now();

  constructor(
    model: tfl.LayersModel,
    private readonly settings: RunSettings,
    private readonly samples: Promise<SampleSource>,
    private readonly report: (activity: string) => void,
  ) {
    const { train } = settings;
    this.trainStep = new TrainStep({
      model,
      optimizer: train.optimizer,
      schedule: () => this.planLr,
      weightDecay: train.weightDecay,
      seed: train.seed,
    });
    this.evaluator = new Evaluator(model);
    this.grads = new Float32Array(this.trainStep.trainableLayout.size);
  }

  /** Uses `collective` (this membership generation's) from now on. */
  useCollective(collective: Collective): void {
    this.collective = collective;
    this.reducer = new GradientReducer(collective, {
      parameterSizes: this.trainStep.trainableLayout.sizes,
      firstBucketBytes: this.settings.firstBucketBytes || undefined,
      bucketBytes: this.settings.bucketBytes || undefined,
      hook: commHook(this.settings.compression),
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

  /**
   * One synchronous step: batch → gradients → barrier → weighted all-reduce → NaN/Inf check →
   * apply. The check runs on the reduced gradient, bit-identical on every rank, so every rank
   * takes the same decision to skip without another message (a rank whose loss is not finite
   * makes its gradient NaN, which reaches every sum).
   */
  async step(plan: StepPlan): Promise<StepMetrics> {
    const n = plan.step + 1;
    const collective = this.need();
    const reducer = this.reducer as GradientReducer;
    let t = performance.now();
    let waitMs = t - this.idleSince;
    this.report(`loading the batch of step ${n}`);
    const batch = await (await this.samples).trainBatch(plan.sampleIndices, plan.epoch);
    const dataMs = performance.now() - t;

    this.report(`computing the gradients of step ${n}`);
    t = performance.now();
    const result = this.trainStep.computeGradients(
      batch,
      plan.sampleIndices,
      plan.epoch,
      this.grads,
    );
    const computeMs = performance.now() - t;
    const ownBad = !Number.isFinite(result.loss) || findNonFinite(this.grads) >= 0;
    // A non-finite loss poisons the gradient, so that the sum tells every rank to skip.
    if (ownBad) this.grads[0] = Number.NaN;

    // Waiting for the slowest worker here keeps it out of the all-reduce time, which then
    // measures the transfer alone.
    this.report(`waiting for the other workers before the all-reduce of step ${n}`);
    t = performance.now();
    await collective.barrier();
    waitMs += performance.now() - t;

    this.report(`all-reducing the gradients of step ${n}`);
    t = performance.now();
    await reducer.reduce(this.grads, result.count, plan.globalBatchSize);
    const allReduceMs = performance.now() - t;

    const bad = findNonFinite(this.grads);
    let applyMs = 0;
    if (bad < 0) {
      t = performance.now();
      this.planLr = plan.learningRate;
      this.trainStep.applyGradients(this.grads, plan.step);
      applyMs = performance.now() - t;
    }
    this.statsDirty = true;
    this.idleSince = performance.now();
    const rank = collective.rank;
    return {
      step: plan.step,
      epoch: plan.epoch,
      loss: result.loss,
      correct: result.correct,
      count: result.count,
      timings: { computeMs, allReduceMs, waitMs, dataMs, applyMs },
      skipped: bad >= 0,
      skipReason:
        bad < 0
          ? ''
          : ownBad
            ? `the loss or gradient of rank ${rank} is not finite (its loss is ${result.loss})`
            : `the summed gradient holds ${this.grads[bad]} at element ${bad} (from another rank)`,
    };
  }

  /** Evaluates this rank's shard; the coordinator adds the shards' sums. */
  async evaluate(cmd: EvaluateCommand): Promise<EvaluationMetrics> {
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
    this.idleSince = performance.now();
    if (cmd.senderRank !== this.need().rank) return undefined;
    return {
      weights: this.trainStep.getWeights(),
      optimizer: cmd.includeOptimizerState ? this.trainStep.exportOptimizerState() : undefined,
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
    if (state.optimizer) this.trainStep.importOptimizerState(state.optimizer);
  }

  private need(): Collective {
    if (!this.collective)
      throw new UserError('the coordinator sent a command before the membership');
    return this.collective;
  }
}
