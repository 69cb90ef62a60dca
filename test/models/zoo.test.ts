import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/shared/errors.js';
import {
  architectureFingerprint,
  buildArchitecture,
  buildModel,
  isModelName,
  logitsModel,
  MODEL_NAMES,
  MODEL_SPECS,
  parseModelName,
} from '../../src/shared/models/zoo.js';

beforeAll(async () => {
  await tf.setBackend('cpu');
});

/** Deterministic pseudo-images in [0, 1). */
function images(n: number): tf.Tensor4D {
  const values = new Float32Array(n * 32 * 32 * 3).map((_, i) => ((i * 7919) % 1000) / 1000);
  return tf.tensor4d(values, [n, 32, 32, 3]);
}

describe('buildModel', () => {
  it.each(['baseline', 'lenet5'] as const)(
    '%s maps [n,32,32,3] to [n,10] probabilities',
    (name) => {
      const model = buildModel(name, { seed: 1 });
      const before = tf.memory().numTensors;
      const x = images(3);
      const y = model.predict(x) as tf.Tensor;
      expect(y.shape).toEqual([3, 10]);
      const sum = tf.sum(y, 1);
      for (const s of sum.dataSync()) expect(s).toBeCloseTo(1, 5);
      tf.dispose([x, y, sum]);
      expect(tf.memory().numTensors).toBe(before);
      model.dispose();
    },
  );

  it('initialises identically from the same seed, differently from another', () => {
    const a = buildModel('baseline', { seed: 42 });
    const b = buildModel('baseline', { seed: 42 });
    const c = buildModel('baseline', { seed: 43 });
    // Layer and weight names depend only on the position in the model, not on what the
    // process built before.
    expect(b.layers.map((l) => l.name)).toEqual(a.layers.map((l) => l.name));
    const values = (m: tfl.LayersModel) => m.getWeights().map((w) => Array.from(w.dataSync()));
    expect(values(b)).toEqual(values(a));
    const kernel = (m: tfl.LayersModel) => m.getLayer('conv2d').getWeights()[0].dataSync();
    expect(Array.from(kernel(c))).not.toEqual(Array.from(kernel(a)));
    // Kernels of different layers of one build are not the same stream either.
    const k1 = a.getLayer('dense').getWeights()[0].dataSync();
    const k2 = a.getLayer('dense_1').getWeights()[0].dataSync();
    expect(Array.from(k2.slice(0, 16))).not.toEqual(Array.from(k1.slice(0, 16)));
    expect(architectureFingerprint(c)).toBe(architectureFingerprint(a));
    for (const m of [a, b, c]) m.dispose();
  });
});

describe('logitsModel', () => {
  it('shares the weights and outputs what the softmax layer receives', () => {
    const model = buildModel('lenet5', { seed: 5 });
    const logits = logitsModel(model);
    expect(logits.outputs[0].shape).toEqual([null, 10]);
    expect(logits.trainableWeights.length).toBe(model.trainableWeights.length);
    logits.trainableWeights.forEach((w, i) => {
      expect(w).toBe(model.trainableWeights[i]);
    });

    const x = images(2);
    const check = () =>
      tf.tidy(() => {
        const probs = model.predict(x) as tf.Tensor;
        const fromLogits = tf.softmax(logits.predict(x) as tf.Tensor);
        expect(tf.max(tf.abs(tf.sub(probs, fromLogits))).dataSync()[0]).toBeLessThan(1e-6);
        return probs;
      });
    const before = check();
    // A weight changed through the original model changes the logits model's output too.
    const last = model.getLayer('dense_2');
    last.setWeights(last.getWeights().map((w) => tf.tidy(() => tf.mul(w, 3))));
    const after = check();
    expect(Array.from(after.dataSync())).not.toEqual(Array.from(before.dataSync()));
    tf.dispose([x, before, after]);
    model.dispose();
  });
});

describe('names and specs', () => {
  it('lists the eleven models of MODELS.md with their sources', () => {
    expect(MODEL_NAMES).toHaveLength(11);
    expect(isModelName('vgg19e')).toBe(true);
    expect(isModelName('vgg19')).toBe(false);
    expect(MODEL_SPECS.vgg16d).toMatchObject({ source: 'vgg-study', l2Penalty: 1e-4 });
    expect(MODEL_SPECS.resnet34k.source).toBe('keras-resnet');
    expect(MODEL_SPECS.vgg16).toMatchObject({ source: 'keras-tutorials', l2Penalty: 0 });
  });

  it('rejects an unknown name with a UserError that lists the valid ones', () => {
    expect(() => parseModelName('resnet50')).toThrow(UserError);
    expect(() => parseModelName('resnet50')).toThrow(
      /--model.*resnet50.*baseline, lenet5.*resnet34k/,
    );
  });

  it('puts two-branch Add layers in the ResNets', () => {
    for (const name of ['resnet18', 'resnet34k'] as const) {
      const model = buildArchitecture(name);
      const adds = model.layers.filter((l) => l.getClassName() === 'Add');
      expect(adds.length).toBe(name === 'resnet18' ? 8 : 17);
      for (const add of adds) expect(add.inboundNodes[0].inboundLayers).toHaveLength(2);
      model.dispose();
    }
  });
});

describe('architectureFingerprint', () => {
  it('depends on the wiring, not only on the list of layers', () => {
    const build = (chained: boolean) => {
      const input = tfl.input({ shape: [4] });
      const a = tfl.layers.dense({ units: 4, name: 'a' }).apply(input) as tfl.SymbolicTensor;
      const bIn = chained ? a : input;
      const b = tfl.layers.dense({ units: 4, name: 'b' }).apply(bIn) as tfl.SymbolicTensor;
      const out = tfl.layers.add({ name: 'sum' }).apply([a, b]) as tfl.SymbolicTensor;
      return tfl.model({ inputs: input, outputs: out });
    };
    const chained = build(true);
    const parallel = build(false);
    expect(architectureFingerprint(chained)).toMatch(/^[0-9a-f]{64}$/);
    expect(architectureFingerprint(parallel)).not.toBe(architectureFingerprint(chained));
    chained.dispose();
    parallel.dispose();
  });
});
