import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/shared/backend/select-backend.js';
import { buildBatch } from '../../src/shared/data/batch.js';
import { syntheticImages } from '../../src/shared/data/synthetic-images.js';
import { buildModel, type ModelName } from '../../src/shared/models/zoo.js';
import { GradientTapError, tappedVariableGrads } from '../../src/shared/training/gradient-tap.js';
import { TrainStep } from '../../src/shared/training/train-step.js';

// The gradient tap on the backend training runs on here (wasm with our kernels, whose Identity
// shares data): every weight's gradient delivered once, from inside the backward pass, equal bit
// for bit to what tf.variableGrads returns, with no tensor left behind.

const images = syntheticImages(8, 0);
const spec = { preprocessing: 'scale' as const, augment: true, seed: 7, epoch: 0 };

beforeAll(async () => {
  await initBackend('wasm');
});

const models: tfl.LayersModel[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
});

function thrownBy(f: () => unknown): Error {
  try {
    f();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a throw');
}

const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('tappedVariableGrads through TrainStep.computeGradients', () => {
  // resnet18 has BatchNorm and skip connections (a tensor with two consumers); batch 2 keeps it short.
  for (const [name, count] of [
    ['lenet5', 4],
    ['baseline', 4],
    ['resnet18', 2],
  ] as [ModelName, number][]) {
    it(`delivers each of ${name}'s gradients once, final, bit-identical, last layer first`, () => {
      const model = buildModel(name, { seed: 3 });
      models.push(model);
      const step = new TrainStep({
        model,
        optimizer: { kind: 'sgd', lr: 0.1, momentum: 0, nesterov: false },
        weightDecay: 0,
        seed: 7,
      });
      const indices = Array.from({ length: count }, (_, i) => i);
      const batch = buildBatch(images, indices, spec);
      const plain = step.computeGradients(batch, indices, 0);

      const before = tf.memory().numTensors;
      const delivered: { parameter: number; values: Float32Array }[] = [];
      let backwardStarted = -1;
      const tapped = step.computeGradients(batch, indices, 0, undefined, {
        backwardStarted: () => {
          backwardStarted = delivered.length;
        },
        gradientReady: (parameter, grad) => {
          delivered.push({ parameter, values: grad.dataSync() as Float32Array });
        },
      });
      expect(tf.memory().numTensors).toBe(before);
      expect(backwardStarted).toBe(0);
      expect(model.trainableWeights.every((w) => !Object.hasOwn(w, 'read'))).toBe(true);

      expect(tapped.loss).toBe(plain.loss);
      expect(bytes(tapped.grads).equals(bytes(plain.grads))).toBe(true);
      const { offsets, sizes } = step.trainableLayout;
      const order = delivered.map((d) => d.parameter);
      expect([...order].sort((a, b) => a - b)).toEqual(sizes.map((_, p) => p));
      // The output layer's kernel and bias come first, the first convolution's last.
      const last = sizes.length - 1;
      expect(order.slice(0, 2).sort((a, b) => a - b)).toEqual([last - 1, last]);
      expect(order.slice(-2).sort((a, b) => a - b)).toEqual([0, 1]);
      for (const { parameter, values } of delivered) {
        const expected = plain.grads.subarray(
          offsets[parameter],
          offsets[parameter] + sizes[parameter],
        );
        expect([parameter, bytes(values).equals(bytes(expected))]).toEqual([parameter, true]);
      }
      step.dispose();
    });
  }
});

describe('tappedVariableGrads refuses what it cannot follow', () => {
  function denseModel(): tfl.LayersModel {
    const model = tfl.sequential({
      layers: [tfl.layers.dense({ units: 3, inputShape: [4], kernelInitializer: 'ones' })],
    });
    models.push(model);
    return model;
  }
  const x = () => tf.ones([2, 4]);

  it('reads a weight through an identity that shares its data (no copy)', () => {
    const model = denseModel();
    const [kernel] = model.trainableWeights;
    const variable = kernel.read() as tf.Variable;
    let sharesData = false;
    const ready: number[] = [];
    const { value, grads } = tappedVariableGrads(
      model.trainableWeights,
      () => {
        const read = kernel.read();
        sharesData = read !== variable && read.dataId === variable.dataId;
        return tf.sum(tf.matMul(x(), read)) as tf.Scalar;
      },
      { gradientReady: (parameter) => ready.push(parameter) },
    );
    expect(sharesData).toBe(true);
    // The bias, not read in this pass, has no gradient and is not waited for.
    expect(ready).toEqual([0]);
    expect(Object.keys(grads)).toEqual([variable.name]);
    tf.dispose([value, grads]);
  });

  it('throws, naming the weight, when a weight is read twice, and leaks nothing', () => {
    const model = denseModel();
    const [kernel] = model.trainableWeights;
    const before = tf.memory().numTensors;
    const error = thrownBy(() =>
      tappedVariableGrads(
        model.trainableWeights,
        () => {
          const once = model.apply(x()) as tf.Tensor;
          return tf.sum(tf.add(once, tf.sum(kernel.read()))) as tf.Scalar;
        },
        { gradientReady: () => undefined },
      ),
    );
    expect(error).toBeInstanceOf(GradientTapError);
    expect(error.message).toContain(`weight ${kernel.name} is read 2 times in one forward pass`);
    expect(tf.memory().numTensors).toBe(before);
    expect(Object.hasOwn(kernel, 'read')).toBe(false);
  });

  it('throws when a gradient was computed without going through read()', () => {
    const model = denseModel();
    const [kernel, bias] = model.trainableWeights;
    const before = tf.memory().numTensors;
    const biasVariable = bias.read();
    const error = thrownBy(() =>
      tappedVariableGrads(
        [kernel, bias],
        () => {
          // The bias used directly, as a tf.Variable: the tap never sees its gradient.
          return tf.sum(tf.add(tf.matMul(x(), kernel.read()), biasVariable)) as tf.Scalar;
        },
        { gradientReady: () => undefined },
      ),
    );
    expect(error).toBeInstanceOf(GradientTapError);
    expect(error.message).toMatch(
      /bias \(parameter 1\) was computed without going through its read\(\)/,
    );
    expect(tf.memory().numTensors).toBe(before);
  });
});
