import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { KeyedDropout, setDropoutKeys } from '../../src/shared/models/keyed-dropout.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

afterEach(() => setDropoutKeys(null));

const SHAPE = [6, 5, 4]; // per sample

/** Runs a dropout layer in training mode on ones; returns each sample's output row. */
function rowsOf(layer: KeyedDropout, batch: number, training = true): number[][] {
  const out = tf.tidy(() => {
    const x = tf.ones([batch, ...SHAPE]);
    return layer.apply(x, { training }) as tf.Tensor;
  });
  const rows = out.arraySync() as number[][][][];
  out.dispose();
  return rows.map((r) => r.flat(2));
}

describe('KeyedDropout', () => {
  it('gives a sample the same mask wherever it sits in the batch and whatever is beside it', () => {
    const layer = new KeyedDropout({ name: 'd', rate: 0.5, key: 3 });
    setDropoutKeys({ seed: 1, epoch: 2, sampleIndices: [10, 11, 12, 13] });
    const a = rowsOf(layer, 4);
    setDropoutKeys({ seed: 1, epoch: 2, sampleIndices: [99, 12, 50] });
    const b = rowsOf(layer, 3);
    expect(b[1]).toEqual(a[2]);
    // Different samples get different masks.
    expect(a[0]).not.toEqual(a[1]);
    expect(b[0]).not.toEqual(a[2]);
  });

  it('draws a new mask in another epoch, with another seed or in another layer', () => {
    const layer = new KeyedDropout({ name: 'd', rate: 0.5, key: 3 });
    const other = new KeyedDropout({ name: 'd2', rate: 0.5, key: 4 });
    const row = (l: KeyedDropout, seed: number, epoch: number) => {
      setDropoutKeys({ seed, epoch, sampleIndices: [7] });
      return rowsOf(l, 1)[0];
    };
    const base = row(layer, 1, 0);
    expect(row(layer, 1, 0)).toEqual(base);
    expect(row(layer, 1, 1)).not.toEqual(base);
    expect(row(layer, 2, 0)).not.toEqual(base);
    expect(row(other, 1, 0)).not.toEqual(base);
  });

  it('drops about `rate` of the units and scales the rest by 1/(1 - rate)', () => {
    const layer = new KeyedDropout({ name: 'd', rate: 0.2, key: 0 });
    const n = 500;
    setDropoutKeys({ seed: 9, epoch: 0, sampleIndices: Array.from({ length: n }, (_, i) => i) });
    const values = rowsOf(layer, n).flat();
    const dropped = values.filter((v) => v === 0).length / values.length;
    expect(dropped).toBeGreaterThan(0.19);
    expect(dropped).toBeLessThan(0.21);
    expect(new Set(values.filter((v) => v !== 0))).toEqual(new Set([Math.fround(1 / 0.8)]));
  });

  it('is the identity at inference and when no keys are set', () => {
    const layer = new KeyedDropout({ name: 'd', rate: 0.5, key: 1 });
    setDropoutKeys({ seed: 1, epoch: 0, sampleIndices: [0, 1] });
    expect(
      rowsOf(layer, 2, false)
        .flat()
        .every((v) => v === 1),
    ).toBe(true);
    setDropoutKeys(null);
    expect(
      rowsOf(layer, 2, true)
        .flat()
        .every((v) => v === 1),
    ).toBe(true);
  });

  it('passes gradients through the kept units only, without leaking tensors', () => {
    const layer = new KeyedDropout({ name: 'd', rate: 0.5, key: 1 });
    setDropoutKeys({ seed: 4, epoch: 1, sampleIndices: [3, 8] });
    const before = tf.memory().numTensors;
    const x = tf.ones([2, ...SHAPE]);
    const grad = tf.grad((t: tf.Tensor) => tf.sum(layer.apply(t, { training: true }) as tf.Tensor))(
      x,
    );
    const forward = rowsOf(layer, 2).flat();
    expect(Array.from(grad.dataSync())).toEqual(forward.map(Math.fround));
    tf.dispose([x, grad]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses keys that do not match the batch', () => {
    const layer = new KeyedDropout({ name: 'd', rate: 0.5, key: 1 });
    setDropoutKeys({ seed: 1, epoch: 0, sampleIndices: [0, 1, 2] });
    expect(() => rowsOf(layer, 2)).toThrow(/3 samples but the batch has 2/);
  });

  it('makes a model output per sample independent of the batch it is in (worker-count invariance)', () => {
    const input = tfl.input({ shape: [8] });
    let x = tfl.layers
      .dense({
        units: 16,
        activation: 'relu',
        kernelInitializer: tfl.initializers.glorotUniform({ seed: 1 }),
      })
      .apply(input) as tfl.SymbolicTensor;
    x = new KeyedDropout({ name: 'drop', rate: 0.5, key: 1 }).apply(x) as tfl.SymbolicTensor;
    const out = tfl.layers
      .dense({ units: 3, kernelInitializer: tfl.initializers.glorotUniform({ seed: 2 }) })
      .apply(x) as tfl.SymbolicTensor;
    const model = tfl.model({ inputs: input, outputs: out });
    const data = tf.tensor2d(
      Array.from({ length: 4 * 8 }, (_, i) => Math.sin(i)),
      [4, 8],
    );

    const run = (rows: number[], training: boolean) =>
      tf.tidy(() => {
        setDropoutKeys({ seed: 5, epoch: 0, sampleIndices: rows.map((r) => 100 + r) });
        const batch = tf.gather(data, rows);
        return (model.apply(batch, { training }) as tf.Tensor).arraySync() as number[][];
      });
    const whole = run([0, 1, 2, 3], true);
    const half = run([3, 1], true);
    expect(half[0]).toEqual(whole[3]);
    expect(half[1]).toEqual(whole[1]);
    expect(whole).not.toEqual(run([0, 1, 2, 3], false));

    // Serialised as the standard Dropout layer, so plain tfjs can rebuild the model.
    const drop = model.getLayer('drop');
    expect(drop.getClassName()).toBe('Dropout');
    expect(drop.getConfig()).toMatchObject({ rate: 0.5, name: 'drop' });
    data.dispose();
    model.dispose();
  });
});
