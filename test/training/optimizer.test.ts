import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import type { OptimizerConfig } from '../../src/shared/config/train-config.js';
import { createOptimizer } from '../../src/shared/training/optimizer.js';
import { layoutOf } from '../../src/shared/training/weight-layout.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Runs `steps` updates of one optimiser on w = [1, 2] with the given gradients and rates. */
function run(config: OptimizerConfig, grads: number[][], lrs: number[]): number[] {
  const w = tf.variable(tf.tensor1d([1, 2]));
  const opt = createOptimizer(config, [w], layoutOf([{ name: 'w', shape: [2] }]));
  grads.forEach((g, i) => {
    const t = tf.tensor1d(g);
    opt.update([t], lrs[i]);
    t.dispose();
  });
  const out = Array.from(w.dataSync());
  opt.dispose();
  w.dispose();
  return out;
}

const G = [0.5, -1];

describe('SGD', () => {
  it('plain SGD takes w - lr*g', () => {
    const w = run({ kind: 'sgd', lr: 0, momentum: 0, nesterov: false }, [G, G], [0.1, 0.2]);
    expect(w[0]).toBeCloseTo(1 - 0.05 - 0.1, 6);
    expect(w[1]).toBeCloseTo(2 + 0.1 + 0.2, 6);
  });

  it('momentum: buf = mu*buf + g, w -= lr*buf', () => {
    // step 1: buf = g, w = [0.95, 2.1]; step 2: buf = 1.9 g, w = [0.855, 2.29]
    const w = run({ kind: 'sgd', lr: 0, momentum: 0.9, nesterov: false }, [G, G], [0.1, 0.1]);
    expect(w[0]).toBeCloseTo(0.855, 6);
    expect(w[1]).toBeCloseTo(2.29, 6);
  });

  it('Nesterov: w -= lr*(g + mu*buf)', () => {
    // step 1: buf = g, d = 1.9 g → [0.905, 2.19]; step 2: buf = 1.9 g, d = 2.71 g → [0.7695, 2.461]
    const w = run({ kind: 'sgd', lr: 0, momentum: 0.9, nesterov: true }, [G, G], [0.1, 0.1]);
    expect(w[0]).toBeCloseTo(0.7695, 6);
    expect(w[1]).toBeCloseTo(2.461, 6);
  });

  it('a changed rate scales only the new step, not the momentum already built up', () => {
    // step 1 at lr 0.1: w0 = 0.95; step 2 at lr 0.01 with buf = 0.95: w0 = 0.95 - 0.0095
    const w = run({ kind: 'sgd', lr: 0, momentum: 0.9, nesterov: false }, [G, G], [0.1, 0.01]);
    expect(w[0]).toBeCloseTo(0.9405, 6);
  });
});

describe('Adam', () => {
  it('matches the Keras formula computed by hand', () => {
    const [b1, b2, eps, lr] = [0.9, 0.999, 1e-7, 0.1];
    const grads = [G, [0.2, 0.3], [-1, 0.1]];
    const expected = [1, 2];
    const m = [0, 0];
    const v = [0, 0];
    grads.forEach((g, step) => {
      const t = step + 1;
      const alpha = (lr * Math.sqrt(1 - b2 ** t)) / (1 - b1 ** t);
      for (let i = 0; i < 2; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        expected[i] -= (alpha * m[i]) / (Math.sqrt(v[i]) + eps);
      }
    });
    const w = run({ kind: 'adam', lr, beta1: b1, beta2: b2, epsilon: eps }, grads, [lr, lr, lr]);
    expect(w[0]).toBeCloseTo(expected[0], 5);
    expect(w[1]).toBeCloseTo(expected[1], 5);
    // The first Adam step moves each weight by about lr whatever the gradient's scale.
    expect(run({ kind: 'adam', lr, beta1: b1, beta2: b2, epsilon: eps }, [G], [lr])[0]).toBeCloseTo(
      0.9,
      4,
    );
  });
});

describe('optimiser state', () => {
  for (const config of [
    { kind: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true },
    { kind: 'adam', lr: 0.1, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 },
  ] as OptimizerConfig[]) {
    it(`${config.kind}: exported after 2 steps and imported elsewhere, continues identically`, () => {
      const layout = layoutOf([{ name: 'w', shape: [2] }]);
      const a = tf.variable(tf.tensor1d([1, 2]));
      const b = tf.variable(tf.tensor1d([0, 0]));
      const optA = createOptimizer(config, [a], layout);
      const optB = createOptimizer(config, [b], layout);
      const g1 = tf.tensor1d(G);
      const g2 = tf.tensor1d([0.3, 0.7]);
      optA.update([g1], 0.1);
      optA.update([g2], 0.1);
      const state = optA.exportState();
      expect(state.iterations).toBe(2);
      optB.importState(state);
      b.assign(a.clone());
      optA.update([g1], 0.05);
      optB.update([g1], 0.05);
      expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
      for (const t of [a, b, g1, g2]) t.dispose();
      optA.dispose();
      optB.dispose();
    });
  }

  it('refuses the state of another optimiser', () => {
    const layout = layoutOf([{ name: 'w', shape: [2] }]);
    const w = tf.variable(tf.tensor1d([1, 2]));
    const sgd = createOptimizer(
      { kind: 'sgd', lr: 1, momentum: 0.9, nesterov: false },
      [w],
      layout,
    );
    const adam = createOptimizer(
      { kind: 'adam', lr: 1, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 },
      [w],
      layout,
    );
    expect(() => adam.importState(sgd.exportState())).toThrow(/optimiser state is for sgd/);
    sgd.dispose();
    adam.dispose();
    w.dispose();
  });
});
