import * as tf from '@tensorflow/tfjs-core';
import type { OptimizerConfig } from '../config/train-config.js';
import { UserError } from '../errors.js';
import { readFlat, type WeightLayout, writeFlat } from './weight-layout.js';

/**
 * An optimiser's state in a form that outlives tensors and processes (checkpoints, and a
 * distributed run resumed with a different number of workers): every slot is a flat vector in
 * the layout of the trainable weights it belongs to.
 */
export interface OptimizerState {
  readonly kind: OptimizerConfig['kind'];
  /** Updates applied so far (Adam's bias correction depends on it). */
  readonly iterations: number;
  readonly slots: Readonly<Record<string, Float32Array>>;
}

/**
 * Updates a fixed list of variables from their gradients. Written with plain tf ops and explicit
 * state variables rather than tf.train.*: the rate changes every step, and the state must be
 * exported and imported exactly.
 */
export interface Optimizer {
  readonly kind: OptimizerConfig['kind'];
  /**
   * Applies one update at learning rate `lr`. `grads[i]` belongs to the i-th variable; the
   * caller owns the gradients (they are neither kept nor disposed here).
   */
  update(grads: readonly tf.Tensor[], lr: number): void;
  exportState(): OptimizerState;
  /** Throws UserError when the state is of another optimiser or another model. */
  importState(state: OptimizerState): void;
  /** Frees the state variables; the optimiser is unusable afterwards. */
  dispose(): void;
}

/** An optimiser over `variables`, laid out as `layout` (the trainable weights, same order). */
export function createOptimizer(
  config: OptimizerConfig,
  variables: readonly tf.Variable[],
  layout: WeightLayout,
): Optimizer {
  return config.kind === 'sgd'
    ? new SgdOptimizer(config.momentum, config.nesterov, variables, layout)
    : new AdamOptimizer(config.beta1, config.beta2, config.epsilon, variables, layout);
}

/** Shared bookkeeping: named slots of per-variable state tensors, and their (de)serialisation. */
abstract class SlotOptimizer implements Optimizer {
  abstract readonly kind: OptimizerConfig['kind'];
  protected iterations = 0;
  protected readonly slots: Record<string, tf.Variable[]> = {};

  constructor(
    protected readonly variables: readonly tf.Variable[],
    private readonly layout: WeightLayout,
    slotNames: readonly string[],
  ) {
    for (const name of slotNames) {
      this.slots[name] = variables.map((v) => tf.variable(tf.zerosLike(v), false));
    }
  }

  abstract update(grads: readonly tf.Tensor[], lr: number): void;

  exportState(): OptimizerState {
    const slots: Record<string, Float32Array> = {};
    for (const [name, vars] of Object.entries(this.slots))
      slots[name] = readFlat(vars, this.layout);
    return { kind: this.kind, iterations: this.iterations, slots };
  }

  importState(state: OptimizerState): void {
    const expected = Object.keys(this.slots).sort().join(',');
    const given = Object.keys(state.slots).sort().join(',');
    if (state.kind !== this.kind || given !== expected) {
      throw new UserError(
        `the saved optimiser state is for ${state.kind} (slots: ${given || 'none'}), ` +
          `but this run uses ${this.kind} (slots: ${expected || 'none'})`,
      );
    }
    for (const [name, vars] of Object.entries(this.slots)) {
      const flat = state.slots[name];
      if (flat.length !== this.layout.size) {
        throw new UserError(
          `the saved optimiser slot "${name}" holds ${flat.length} values, the model has ${this.layout.size}`,
        );
      }
      writeFlat(vars, this.layout, flat);
    }
    this.iterations = state.iterations;
  }

  dispose(): void {
    for (const vars of Object.values(this.slots)) for (const v of vars) v.dispose();
  }
}

/**
 * SGD with optional (Nesterov) momentum, PyTorch's formulation, where the rate multiplies the
 * whole step so that changing it does not rescale the momentum already built up:
 *   buf ← μ·buf + g;   w ← w − lr·(g + μ·buf) with Nesterov, w ← w − lr·buf without.
 */
class SgdOptimizer extends SlotOptimizer {
  readonly kind = 'sgd';

  constructor(
    private readonly momentum: number,
    private readonly nesterov: boolean,
    variables: readonly tf.Variable[],
    layout: WeightLayout,
  ) {
    super(variables, layout, momentum > 0 ? ['momentum'] : []);
  }

  update(grads: readonly tf.Tensor[], lr: number): void {
    tf.tidy(() => {
      const mu = tf.scalar(this.momentum);
      const rate = tf.scalar(-lr);
      this.variables.forEach((w, i) => {
        const g = grads[i];
        if (this.momentum === 0) {
          w.assign(tf.add(w, tf.mul(rate, g)));
          return;
        }
        const buf = this.slots.momentum[i];
        const next = tf.add(tf.mul(mu, buf), g);
        buf.assign(next);
        const step = this.nesterov ? tf.add(g, tf.mul(mu, next)) : next;
        w.assign(tf.add(w, tf.mul(rate, step)));
      });
    });
    this.iterations++;
  }
}

/**
 * Adam as Keras and tf.train.adam compute it (epsilon added to √v, not to the corrected √v̂):
 *   m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  w ← w − lr·√(1−β2ᵗ)/(1−β1ᵗ) · m/(√v + ε).
 */
class AdamOptimizer extends SlotOptimizer {
  readonly kind = 'adam';

  constructor(
    private readonly beta1: number,
    private readonly beta2: number,
    private readonly epsilon: number,
    variables: readonly tf.Variable[],
    layout: WeightLayout,
  ) {
    super(variables, layout, ['m', 'v']);
  }

  update(grads: readonly tf.Tensor[], lr: number): void {
    const t = this.iterations + 1;
    const alpha = (lr * Math.sqrt(1 - this.beta2 ** t)) / (1 - this.beta1 ** t);
    tf.tidy(() => {
      const b1 = tf.scalar(this.beta1);
      const b2 = tf.scalar(this.beta2);
      const c1 = tf.scalar(1 - this.beta1);
      const c2 = tf.scalar(1 - this.beta2);
      const eps = tf.scalar(this.epsilon);
      const rate = tf.scalar(-alpha);
      this.variables.forEach((w, i) => {
        const g = grads[i];
        const m = tf.add(tf.mul(b1, this.slots.m[i]), tf.mul(c1, g));
        const v = tf.add(tf.mul(b2, this.slots.v[i]), tf.mul(c2, tf.square(g)));
        this.slots.m[i].assign(m);
        this.slots.v[i].assign(v);
        w.assign(tf.add(w, tf.mul(rate, tf.div(m, tf.add(tf.sqrt(v), eps)))));
      });
    });
    this.iterations = t;
  }
}
