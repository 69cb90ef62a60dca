import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/shared/backend/select-backend.js';

// The other kernels and the BatchNorm gradient that initBackend('wasm') installs for training,
// each checked against the cpu backend (computed first, with tfjs-core's own gradients), and a
// whole training step of a small conv/BN/pool/dense model.

/** Deterministic uniform values in [-1, 1). */
function randomValues(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = (state >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

function rand(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(
    randomValues(
      shape.reduce((a, b) => a * b, 1),
      seed,
    ),
    shape,
  );
}

function relativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < expected.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    scale = Math.max(scale, Math.abs(expected[i]));
  }
  return diff / scale;
}

/** Each named computation returns flat outputs; they run once per backend. */
const computations: Record<string, () => Float32Array[]> = {
  'Sum/Mean over leading axes (SIMD, folded and JS paths)': () =>
    tf.tidy(() => {
      const a = rand([4, 5, 3, 8], 1);
      const b = rand([3, 7, 6], 2);
      const c = rand([5, 3, 3], 3);
      return [
        tf.sum(a, [0, 1, 2]),
        tf.mean(a, [0, 1], true),
        tf.sum(b, [0, 1]),
        tf.mean(b, 0),
        tf.sum(c, [0, 1]),
        tf.sum(a, [1, 3]),
        tf.mean(a, -1),
      ].map((t) => t.dataSync() as Float32Array);
    }),
  'Tile, and the gradients of Sum and Mean that use it': () =>
    tf.tidy(() => {
      const a = rand([2, 1, 3], 15);
      const b = rand([3, 4, 2, 5], 16);
      const tiles = [
        tf.tile(a, [3, 4, 2]),
        tf.tile(rand([1, 1, 1, 6], 17), [2, 3, 4, 1]),
        tf.tile(tf.scalar(3), []),
      ];
      const intTile = tf.cast(tf.tile(tf.tensor2d([[1, 2]], [1, 2], 'int32'), [3, 2]), 'float32');
      const gradsOf = (f: (t: tf.Tensor) => tf.Tensor) =>
        tf.grad((t: tf.Tensor) => tf.sum(tf.mul(f(t), f(b))))(b);
      return [
        ...tiles,
        intTile,
        gradsOf((t) => tf.sum(t, [0, 1, 2])),
        gradsOf((t) => tf.mean(t, [1, 3], true)),
        gradsOf((t) => tf.mean(t)),
      ].map((t) => t.dataSync() as Float32Array);
    }),
  'MatMul with transposes': () =>
    tf.tidy(() => {
      const a = rand([7, 5], 4);
      const b = rand([5, 3], 5);
      return [
        tf.matMul(a, b),
        tf.matMul(tf.transpose(a), b, true, false),
        tf.matMul(a, tf.transpose(b), false, true),
        tf.matMul(tf.transpose(a), tf.transpose(b), true, true),
        tf.matMul(rand([2, 4, 5], 6), rand([2, 3, 5], 7), false, true),
      ].map((t) => t.dataSync() as Float32Array);
    }),
  'MaxPool gradient (2×2/2 and 3×3/2 same, ties, odd sizes)': () =>
    tf.tidy(() => {
      // Rounded values make ties inside windows: the first maximum gets the gradient.
      const tied = tf.round(tf.mul(rand([2, 7, 6, 6], 8), 2)) as tf.Tensor4D;
      const distinct = rand([2, 8, 7, 5], 11);
      const pooledSum = (k: number, pad: 'valid' | 'same', seed: number) => (v: tf.Tensor) => {
        const y = tf.maxPool(v as tf.Tensor4D, k, 2, pad);
        return tf.sum(tf.mul(y, rand(y.shape, seed)));
      };
      return [
        tf.grad(pooledSum(2, 'valid', 9))(tied),
        tf.grad(pooledSum(3, 'same', 10))(distinct),
      ].map((t) => t.dataSync() as Float32Array);
    }),
  'BatchNorm (moments + batchNorm, as tfjs-layers trains) gradients': () =>
    tf.tidy(() => {
      const x = rand([3, 5, 4, 8], 11);
      const gamma = rand([8], 12);
      const beta = rand([8], 13);
      const w = rand([3, 5, 4, 8], 14);
      const f = (xs: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
        const { mean, variance } = tf.moments(xs, [0, 1, 2]);
        return tf.sum(tf.mul(tf.batchNorm(xs, mean, variance, b, g, 1e-3), w));
      };
      return tf
        .grads((a, b, c) => f(a, b, c))([x, gamma, beta])
        .map((t) => t.dataSync() as Float32Array);
    }),
};

function trainStepGrads(): Float32Array[] {
  const model = tfl.sequential({
    layers: [
      tfl.layers.conv2d({ inputShape: [12, 12, 3], filters: 16, kernelSize: 3, padding: 'same' }),
      tfl.layers.batchNormalization(),
      tfl.layers.activation({ activation: 'relu' }),
      tfl.layers.conv2d({ filters: 16, kernelSize: 3, padding: 'same', useBias: false }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'same' }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 10 }),
    ],
  });
  // Deterministic weights, the same on both backends.
  tf.tidy(() => model.setWeights(model.weights.map((w, i) => rand(w.shape as number[], 100 + i))));
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const out = tf.tidy(() => {
    const x = rand([4, 12, 12, 3], 20);
    const labels = tf.oneHot(tf.tensor1d([1, 4, 9, 0], 'int32'), 10);
    const { grads } = tf.variableGrads(
      () => tf.losses.softmaxCrossEntropy(labels, model.apply(x, { training: true }) as tf.Tensor),
      variables,
    );
    return variables.map((v) => grads[v.name].dataSync() as Float32Array);
  });
  model.dispose();
  return out;
}

describe('wasm training kernels', () => {
  const reference = new Map<string, Float32Array[]>();

  beforeAll(async () => {
    await initBackend('cpu');
    for (const [name, f] of Object.entries(computations)) reference.set(name, f());
    reference.set('train step', trainStepGrads());
    await initBackend('wasm');
  });

  for (const name of Object.keys(computations)) {
    it(`${name}: match the cpu backend without leaking`, () => {
      const before = tf.memory().numTensors;
      const got = computations[name]();
      expect(tf.memory().numTensors).toBe(before);
      const expected = reference.get(name)!;
      expect(got.length).toBe(expected.length);
      got.forEach((g, i) => {
        expect(g.length).toBe(expected[i].length);
        expect(relativeError(g, expected[i])).toBeLessThan(1e-5);
      });
    });
  }

  it('train a conv/BN/pool/dense model: every gradient matches the cpu backend', () => {
    const before = tf.memory().numTensors;
    const got = trainStepGrads();
    expect(tf.memory().numTensors).toBe(before);
    const expected = reference.get('train step')!;
    expect(got.length).toBe(expected.length);
    // A first-layer bias before BatchNorm has a gradient of exactly 0 plus rounding; compare
    // every gradient against the scale of all of them.
    const scale = Math.max(...expected.map((g) => Math.max(...g.map(Math.abs))));
    got.forEach((g, i) => {
      const diff = Math.max(...g.map((v, j) => Math.abs(v - expected[i][j])));
      expect(diff / scale).toBeLessThan(1e-4);
    });
  });

  it('share data for Identity and same-dtype Cast instead of copying', () => {
    const x = tf.tensor1d([1, 2, 3]);
    const buffers = () => (tf.memory() as { numDataBuffers: number }).numDataBuffers;
    const before = buffers();
    const y = tf.clone(x);
    const z = tf.cast(x, 'float32');
    expect(buffers()).toBe(before);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3]);
    expect(Array.from(tf.cast(z, 'int32').dataSync())).toEqual([1, 2, 3]);
    tf.dispose([y, z]);
  });
});
