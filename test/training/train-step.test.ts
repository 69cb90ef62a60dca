import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OptimizerConfig } from '../../src/shared/config/train-config.js';
import { buildBatch } from '../../src/shared/data/batch.js';
import { syntheticImages } from '../../src/shared/data/synthetic-images.js';
import { buildModel, type ModelName } from '../../src/shared/models/zoo.js';
import { TrainStep } from '../../src/shared/training/train-step.js';
import { weightsFingerprint } from '../../src/shared/training/weights-fingerprint.js';

const images = syntheticImages(64, 0);
const spec = { preprocessing: 'scale' as const, augment: true, seed: 7, epoch: 0 };
const SGD: OptimizerConfig = { kind: 'sgd', lr: 0.05, momentum: 0.9, nesterov: true };

function batchOf(indices: number[], epoch = 0) {
  return buildBatch(images, indices, { ...spec, epoch });
}

function stepFor(model: tfl.LayersModel, weightDecay = 0, optimizer = SGD): TrainStep {
  return new TrainStep({ model, optimizer, weightDecay, seed: 7 });
}

function zoo(name: ModelName, seed = 1): tfl.LayersModel {
  return buildModel(name, { seed });
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

const models: tfl.LayersModel[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
});

describe('TrainStep.computeGradients', () => {
  it('returns the mean cross-entropy gradient of a softmax regression, computed by hand', () => {
    const model = tfl.sequential({
      layers: [
        tfl.layers.flatten({ inputShape: [32, 32, 3] }),
        tfl.layers.dense({ units: 10, kernelInitializer: 'glorotUniform', useBias: true }),
        tfl.layers.activation({ activation: 'softmax', name: 'probs' }),
      ],
    });
    models.push(model);
    const step = stepFor(model);
    const batch = batchOf([3, 1, 4, 15, 9]);
    const result = step.computeGradients(batch, [3, 1, 4, 15, 9], 0);

    // dL/dW = Xᵀ(softmax(XW + b) − Y)/n, dL/db = Σ(softmax − Y)/n.
    const [kernel, bias] = model.getWeights().map((w) => w.arraySync() as number[][] | number[]);
    const n = batch.count;
    const d = 3072;
    const gW = new Float64Array(d * 10);
    const gb = new Float64Array(10);
    let loss = 0;
    for (let s = 0; s < n; s++) {
      const z = (bias as number[]).slice();
      for (let i = 0; i < d; i++) {
        const x = batch.xs[s * d + i];
        for (let c = 0; c < 10; c++) z[c] += x * (kernel as number[][])[i][c];
      }
      const max = Math.max(...z);
      const e = z.map((v) => Math.exp(v - max));
      const sum = e.reduce((a, b) => a + b, 0);
      const p = e.map((v) => v / sum);
      loss -= Math.log(p[batch.labels[s]]) / n;
      p[batch.labels[s]] -= 1;
      for (let c = 0; c < 10; c++) {
        gb[c] += p[c] / n;
        for (let i = 0; i < d; i++) gW[i * 10 + c] += (batch.xs[s * d + i] * p[c]) / n;
      }
    }
    expect(result.count).toBe(5);
    expect(result.loss).toBeCloseTo(loss, 4);
    expect(step.trainableLayout.offsets).toEqual([0, d * 10]);
    expect(step.trainableLayout.shapes).toEqual([[d, 10], [10]]);
    let maxErr = 0;
    const expected = [...gW, ...gb];
    expected.forEach((g, i) => {
      maxErr = Math.max(maxErr, Math.abs(result.grads[i] - g));
    });
    expect(maxErr).toBeLessThan(1e-5);
    step.dispose();
  });

  it('lenet5: count-weighted shard gradients equal the whole batch gradient', () => {
    const model = zoo('lenet5');
    models.push(model);
    const step = stepFor(model);
    const indices = [5, 17, 2, 40, 33, 8, 61, 12];
    const whole = step.computeGradients(batchOf(indices), indices, 0);
    const a = step.computeGradients(batchOf(indices.slice(0, 3)), indices.slice(0, 3), 0);
    const b = step.computeGradients(batchOf(indices.slice(3)), indices.slice(3), 0);
    const combined = whole.grads.map((_, i) => (a.grads[i] * 3 + b.grads[i] * 5) / 8);
    let maxErr = 0;
    let maxAbs = 0;
    whole.grads.forEach((g, i) => {
      maxErr = Math.max(maxErr, Math.abs(g - combined[i]));
      maxAbs = Math.max(maxAbs, Math.abs(g));
    });
    expect(maxAbs).toBeGreaterThan(0);
    expect(maxErr / maxAbs).toBeLessThan(1e-5);
    expect(a.correct + b.correct).toBe(whole.correct);
    expect((a.loss * 3 + b.loss * 5) / 8).toBeCloseTo(whole.loss, 5);
    step.dispose();
  });

  it('an empty batch (a worker without samples this step) gives zeros and count 0', () => {
    const model = zoo('lenet5');
    models.push(model);
    const step = stepFor(model);
    const result = step.computeGradients(batchOf([]), [], 0);
    expect(result).toMatchObject({ loss: 0, correct: 0, count: 0 });
    expect(result.grads.every((g) => g === 0)).toBe(true);
    step.dispose();
  });

  it('baseline: updates BatchNorm moving statistics, keys dropout by (seed, epoch, index)', () => {
    const model = zoo('baseline');
    models.push(model);
    const step = stepFor(model);
    const before = step.getMovingStats();
    expect(before.length).toBe(12);
    const indices = [1, 2, 3, 4];
    const first = step.computeGradients(batchOf(indices), indices, 0);
    const after = step.getMovingStats();
    expect(Array.from(after)).not.toEqual(Array.from(before));
    // The same samples and epoch give the same dropout masks, hence the same gradient
    // (BN statistics come from the batch, not the moving averages, in training mode).
    const again = step.computeGradients(batchOf(indices), indices, 0);
    expect(Array.from(again.grads)).toEqual(Array.from(first.grads));
    const otherEpoch = step.computeGradients(batchOf(indices), indices, 1);
    expect(Array.from(otherEpoch.grads)).not.toEqual(Array.from(first.grads));
    step.dispose();
  });
});

describe('TrainStep weights and updates', () => {
  it('leaks no tensors over several steps', () => {
    const model = zoo('baseline');
    models.push(model);
    const step = stepFor(model, 1e-3, {
      kind: 'adam',
      lr: 1e-3,
      beta1: 0.9,
      beta2: 0.999,
      epsilon: 1e-7,
    });
    const run = (s: number) => {
      const indices = [s, s + 10, s + 20];
      const r = step.computeGradients(batchOf(indices), indices, 0);
      step.applyGradients(r.grads, 0.05);
    };
    run(0); // a first step may leave caches behind (tfjs' own); count from the second
    const tensors = tf.memory().numTensors;
    for (let s = 1; s < 5; s++) run(s);
    step.setWeights(step.getWeights());
    step.importOptimizerState(step.exportOptimizerState());
    expect(tf.memory().numTensors).toBe(tensors);
    step.dispose();
  });

  it('weight decay adds λ·w to kernels only', () => {
    const model = zoo('lenet5');
    models.push(model);
    const step = new TrainStep({
      model,
      optimizer: { kind: 'sgd', lr: 0.5, momentum: 0, nesterov: false },
      weightDecay: 0.1,
      seed: 0,
    });
    const before = step.getWeights();
    step.applyGradients(new Float32Array(step.trainableLayout.size), 0.5);
    const after = step.getWeights();
    const { shapes, offsets, sizes } = step.trainableLayout;
    shapes.forEach((shape, i) => {
      const factor = shape.length >= 2 ? 1 - 0.5 * 0.1 : 1;
      for (let k = offsets[i]; k < offsets[i] + sizes[i]; k += 97) {
        expect(after[k]).toBeCloseTo(before[k] * factor, 6);
      }
    });
    step.dispose();
  });

  it('flat weights move a replica into another model; fingerprints agree only then', () => {
    const a = zoo('baseline', 1);
    const b = zoo('baseline', 2);
    models.push(a, b);
    const stepA = stepFor(a);
    const stepB = stepFor(b);
    expect(stepA.weightsLayout.size).toBe(198_506);
    expect(stepA.trainableLayout.size).toBe(198_494);
    expect(weightsFingerprint(stepA.getWeights())).not.toBe(weightsFingerprint(stepB.getWeights()));
    stepB.setWeights(stepA.getWeights());
    expect(weightsFingerprint(stepB.getWeights())).toBe(weightsFingerprint(stepA.getWeights()));
    // Two replicas fed the same steps stay bit-identical.
    for (let s = 0; s < 3; s++) {
      const indices = [s * 3, s * 3 + 1, s * 3 + 2];
      const ga = stepA.computeGradients(batchOf(indices), indices, 0);
      const gb = stepB.computeGradients(batchOf(indices), indices, 0);
      stepA.applyGradients(ga.grads, 0.05);
      stepB.applyGradients(gb.grads, 0.05);
    }
    expect(weightsFingerprint(stepB.getWeights())).toBe(weightsFingerprint(stepA.getWeights()));
    expect(() => stepB.setWeights(new Float32Array(5))).toThrow(/5 floats/);
    stepA.dispose();
    stepB.dispose();
  });
});
