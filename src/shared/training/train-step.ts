import { performance } from 'node:perf_hooks';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import type { BucketTiming, GradientReducer } from '../collectives/gradient-reducer.js';
import { findNonFinite } from '../collectives/non-finite.js';
import type { OptimizerConfig } from '../config/train-config.js';
import type { Batch } from '../data/batch.js';
import { setDropoutKeys } from '../models/keyed-dropout.js';
import { logitsModel } from '../models/zoo.js';
import { type GradientListener, tappedVariableGrads } from './gradient-tap.js';
import { createOptimizer, type Optimizer, type OptimizerState } from './optimizer.js';
import {
  layoutOf,
  modelWeights,
  readFlat,
  unflatten,
  type WeightLayout,
  writeFlat,
} from './weight-layout.js';

export interface TrainStepOptions {
  /** A zoo model (buildModel): its weights are trained in place. The caller owns and disposes it. */
  model: tfl.LayersModel;
  optimizer: OptimizerConfig;
  /** λ of the L2 decay (see applyGradients). */
  weightDecay: number;
  /** The run's seed: keys dropout together with (epoch, sample index). */
  seed: number;
}

/** What one replica computes on its share of a step. */
export interface GradientResult {
  /** Mean softmax cross-entropy over the batch (0 for an empty batch). */
  loss: number;
  /** Samples whose arg-max logit is their label. */
  correct: number;
  /** Samples in the batch: the weight of `grads` in a sample-weighted all-reduce. */
  count: number;
  /** Gradient of the mean loss (zeros for an empty batch), in `trainableLayout`. */
  grads: Float32Array;
}

/** How a skip reason says that the non-finite value came from another rank's gradient. */
export const FROM_ANOTHER_RANK = 'from another rank';

/** One rank's share of a step, as the coordinator planned it. */
export interface StepInput {
  batch: Batch;
  /** The batch's global dataset indices, in batch order (they key dropout). */
  sampleIndices: ArrayLike<number>;
  epoch: number;
  /** G: the samples of the step over all ranks. */
  globalBatchSize: number;
  /** The coordinator's learning rate for this step (its schedule is authoritative). */
  lr: number;
}

/** What one rank reports of a step. */
export interface StepOutcome {
  /** This rank's mean loss, correct predictions and samples. */
  loss: number;
  correct: number;
  count: number;
  /** Why no rank applied the update (a non-finite gradient), or undefined when they all did. */
  skipped: string | undefined;
  /** In ms: the forward and backward pass, waiting for the other ranks, the transfer. */
  timings: {
    computeMs: number;
    waitMs: number;
    allReduceMs: number;
    /** Each all-reduce bucket's transfer (ReduceTimings.buckets). */
    buckets: BucketTiming[];
  };
}

/**
 * One replica's model and optimiser, and the training step, in one place (step()):
 *   computeGradients (local batch) → reducer: Σ count·grads / G over the ranks →
 *   applyGradients(grads, lr) (the same on every replica, so they stay identical).
 * A world of one goes through the same step; its reduction is a no-op. Weights and
 * optimiser state move as flat Float32Arrays in fixed layouts (the model's weight order), for
 * broadcast, fingerprints and checkpoints.
 *
 * Not re-entrant: one step at a time (dropout keys are process-global). Every tensor it makes is
 * disposed before a method returns; dispose() frees the optimiser state (not the model).
 */
export class TrainStep {
  /** The trainable weights: the layout of gradients and optimiser slots. */
  readonly trainableLayout: WeightLayout;
  /** Every weight (trainable first, then BatchNorm moving statistics): getWeights' layout. */
  readonly weightsLayout: WeightLayout;
  /** The non-trainable weights (BatchNorm moving mean/variance), a tail of weightsLayout. */
  readonly movingStatsLayout: WeightLayout;

  private readonly logits: tfl.LayersModel;
  /** The model's trainable LayerVariables, whose reads the gradient tap follows. */
  private readonly trainableWeights: tfl.LayerVariable[];
  private readonly trainable: tf.Variable[];
  private readonly all: tf.Variable[];
  private readonly moving: tf.Variable[];
  /** Whether each trainable weight is a kernel (rank ≥ 2), the only ones weight decay touches. */
  private readonly decays: boolean[];
  private readonly optimizer: Optimizer;
  private readonly classCount: number;
  /**
   * The gradient of the step in progress, reused: a full model's worth of floats, in shared
   * memory so that a collective run by another thread reduces it in place (TransportThread).
   */
  private readonly grads: Float32Array;
  /** `grads` holds a reduced gradient that step() left to applyHeld(). */
  private held = false;

  constructor(private readonly opts: TrainStepOptions) {
    const { model } = opts;
    const vars = (ws: tfl.LayerVariable[]) => ws.map((w) => w.read() as tf.Variable);
    const describe = (ws: tfl.LayerVariable[]) =>
      ws.map((w) => ({ name: w.originalName, shape: w.shape as number[] }));
    const weights = modelWeights(model);
    this.logits = logitsModel(model);
    this.trainableWeights = model.trainableWeights;
    this.trainable = vars(model.trainableWeights);
    this.moving = vars(model.nonTrainableWeights);
    this.all = weights.variables;
    this.trainableLayout = layoutOf(describe(model.trainableWeights));
    this.movingStatsLayout = layoutOf(describe(model.nonTrainableWeights));
    this.weightsLayout = weights.layout;
    this.decays = model.trainableWeights.map((w) => w.shape.length >= 2);
    this.optimizer = createOptimizer(opts.optimizer, this.trainable, this.trainableLayout);
    this.classCount = (model.outputs[0].shape as number[])[1];
    this.grads = new Float32Array(new SharedArrayBuffer(this.trainableLayout.size * 4));
  }

  /**
   * One synchronous step on this rank, up to its commit: gradients of its batch → the
   * sample-weighted mean over all ranks (`reducer`) → NaN/Inf check. With `overlap`, each bucket
   * of the gradient is handed to the reducer as soon as the backward pass has finished it
   * (gradient-tap.ts), so that it travels while the gradients of earlier layers are computed;
   * the result is the same bits either way. The check runs on the reduced gradient,
   * bit-identical on every rank, so every rank takes the same decision to skip without another
   * message (a rank whose loss or gradient is not finite poisons element 0, which reaches every
   * sum; ReducePass.finish). The caller decides when skipped steps mean the run diverged.
   * The weights are NOT updated here: the reduced gradient is held until the caller knows that
   * every rank completed the step and calls applyHeld(lr) (the commit rule, docs/design.md);
   * any other step or gradient computation first discards it. Rejects with the reducer's
   * error (a lost or stalled rank); the weights are then unchanged.
   * `report` hears each phase ("computing the gradients", ...), for heartbeats.
   */
  async step(
    input: StepInput,
    reducer: GradientReducer,
    rank: number,
    report: (phase: string) => void = () => undefined,
    overlap = false,
  ): Promise<StepOutcome> {
    this.held = false;
    report('computing the gradients');
    const t = performance.now();
    const pass = reducer.begin(this.grads, input.batch.count, input.globalBatchSize);
    const { loss, correct, count } = this.computeGradients(
      input.batch,
      input.sampleIndices,
      input.epoch,
      this.grads,
      overlap ? { gradientReady: (parameter) => pass.parameterReady(parameter) } : undefined,
    );
    const computeMs = performance.now() - t;

    report('all-reducing the gradients');
    const lossBad = !Number.isFinite(loss);
    const { waitMs, allReduceMs, buckets, ownNonFinite } = await pass.finish(lossBad);

    const ownBad = lossBad || ownNonFinite;
    // In a world of one the reduced gradient is this rank's own, checked by the reducer: a
    // second scan would cost a pass over every parameter per step (about 4% of a baseline step).
    const bad = ownBad || reducer.worldSize > 1 ? findNonFinite(this.grads) : -1;
    let skipped: string | undefined;
    if (bad < 0) {
      this.held = true;
    } else if (ownBad) {
      skipped = lossBad
        ? `rank ${rank}'s loss is ${loss}`
        : `rank ${rank}'s gradient is not finite`;
    } else {
      skipped = `the summed gradient holds ${this.grads[bad]} at element ${bad} (${FROM_ANOTHER_RANK})`;
    }
    return {
      loss,
      correct,
      count,
      skipped,
      timings: { computeMs, waitMs, allReduceMs, buckets },
    };
  }

  /**
   * Applies the gradient the last step() reduced, at learning rate `lr` (the commit of that
   * step); returns how long the update took in ms. Nothing to apply (the step was skipped, or
   * already applied or discarded): 0.
   */
  applyHeld(lr: number): number {
    if (!this.held) return 0;
    this.held = false;
    const t = performance.now();
    this.applyGradients(this.grads, lr);
    return performance.now() - t;
  }

  /** Discards the gradient the last step() reduced (its step was abandoned). */
  discardHeld(): void {
    this.held = false;
  }

  /**
   * Forward and backward pass on `batch` in training mode (dropout on, BatchNorm on batch
   * statistics, its moving statistics updated in place by the forward pass). `sampleIndices`
   * are the batch's global dataset indices (in batch order) and, with `epoch`, key the dropout
   * masks. Returns the gradient of the mean loss; pass `out` (trainableLayout.size floats) to
   * reuse a buffer, else a new one is returned. The weights are not changed.
   * With `listener`, each weight's gradient is written into `out` from inside the backward pass
   * as soon as it is final (gradient-tap.ts), and then the listener is told; the result is
   * bit-identical either way. Nothing is written into `out` after that, so the listener may hand
   * a finished part of it to another thread at once.
   */
  computeGradients(
    batch: Batch,
    sampleIndices: ArrayLike<number>,
    epoch: number,
    out: Float32Array = new Float32Array(this.trainableLayout.size),
    listener?: GradientListener,
  ): GradientResult {
    if (sampleIndices.length !== batch.count) {
      throw new Error(`${sampleIndices.length} sample indices for a batch of ${batch.count}`);
    }
    if (batch.count === 0) return { loss: 0, correct: 0, count: 0, grads: out.fill(0) };
    setDropoutKeys({ seed: this.opts.seed, epoch, sampleIndices });
    try {
      // The tidy returns plain numbers only: handed a Float32Array, tf.tidy walks it element
      // by element looking for tensors (20 s and 1.6 GB per ResNet-18 step).
      const { loss, correct } = tf.tidy(() => {
        const xs = tf.tensor4d(batch.xs, [batch.count, 32, 32, 3]);
        const labels = tf.tensor1d(batch.labels, 'int32');
        const oneHot = tf.oneHot(labels, this.classCount);
        let predicted: tf.Tensor | undefined;
        const loss = () => {
          const logits = this.logits.apply(xs, { training: true }) as tf.Tensor;
          predicted = tf.keep(tf.argMax(logits, 1));
          return tf.losses.softmaxCrossEntropy(oneHot, logits) as tf.Scalar;
        };
        let value: tf.Scalar;
        if (listener) {
          const offsets = this.trainableLayout.offsets;
          ({ value } = tappedVariableGrads(this.trainableWeights, loss, {
            backwardStarted: () => listener.backwardStarted?.(),
            gradientReady: (parameter, grad) => {
              out.set(grad.dataSync() as Float32Array, offsets[parameter]);
              listener.gradientReady(parameter, grad);
            },
          }));
        } else {
          const tape = tf.variableGrads(loss, this.trainable);
          value = tape.value;
          readFlat(
            this.trainable.map((v) => tape.grads[v.name]),
            this.trainableLayout,
            out,
          );
        }
        const correct = tf.sum(tf.cast(tf.equal(predicted as tf.Tensor, labels), 'int32'));
        const result = { loss: value.dataSync()[0], correct: correct.dataSync()[0] };
        predicted?.dispose();
        return result;
      });
      return { loss, correct, count: batch.count, grads: out };
    } finally {
      setDropoutKeys(null);
    }
  }

  /**
   * Applies a mean gradient (trainableLayout) at learning rate `lr`: adds the L2 decay λ·w to
   * every kernel's gradient (not to biases or BatchNorm parameters), then takes an optimiser
   * step. λ·w is the gradient of (λ/2)·Σw² (PyTorch's weight_decay, the AlexNet paper's);
   * Keras' l2(c) regulariser corresponds to λ = 2c. Every replica applies the same gradient to
   * the same weights and state, so replicas stay identical.
   */
  applyGradients(meanGrads: Float32Array, lr: number): void {
    if (meanGrads.length !== this.trainableLayout.size) {
      throw new Error(
        `gradient holds ${meanGrads.length} floats, the model has ${this.trainableLayout.size}`,
      );
    }
    const lambda = this.opts.weightDecay;
    tf.tidy(() => {
      const decay = tf.scalar(lambda);
      const grads = unflatten(meanGrads, this.trainableLayout).map((g, i) =>
        lambda > 0 && this.decays[i] ? tf.add(g, tf.mul(decay, this.trainable[i])) : g,
      );
      this.optimizer.update(grads, lr);
    });
  }

  /** All weights (weightsLayout), copied out: for broadcast, fingerprints and checkpoints. */
  getWeights(): Float32Array {
    return readFlat(this.all, this.weightsLayout);
  }

  /** Sets all weights (weightsLayout); `flat` is copied. Throws on a length mismatch. */
  setWeights(flat: Float32Array): void {
    writeFlat(this.all, this.weightsLayout, flat);
  }

  /** The BatchNorm moving statistics (movingStatsLayout), to average across replicas. */
  getMovingStats(): Float32Array {
    return readFlat(this.moving, this.movingStatsLayout);
  }

  setMovingStats(flat: Float32Array): void {
    writeFlat(this.moving, this.movingStatsLayout, flat);
  }

  exportOptimizerState(): OptimizerState {
    return this.optimizer.exportState();
  }

  /** Throws UserError when the state belongs to another optimiser kind or model. */
  importOptimizerState(state: OptimizerState): void {
    this.optimizer.importState(state);
  }

  /** Frees the optimiser's state. The model stays the caller's. */
  dispose(): void {
    this.optimizer.dispose();
  }
}
