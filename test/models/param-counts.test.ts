import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  architectureFingerprint,
  buildArchitecture,
  buildModel,
  countParams,
  MODEL_NAMES,
  MODEL_SPECS,
  type ModelName,
} from '../../src/shared/models/zoo.js';

// MODELS.md, copied by hand: total, trainable, non-trainable.
const EXPECTED: Record<ModelName, [number, number, number]> = {
  baseline: [198_506, 198_494, 12],
  lenet5: [62_006, 62_006, 0],
  alexnet8: [9_639_178, 9_638_474, 704],
  vgg16: [15_262_026, 15_253_578, 8_448],
  resnet18: [11_183_562, 11_173_962, 9_600],
  vgg11a: [28_187_826, 28_165_918, 21_908],
  vgg13b: [28_373_106, 28_350_814, 22_292],
  vgg16c: [28_969_330, 28_944_478, 24_852],
  vgg16d: [33_687_922, 33_663_070, 24_852],
  vgg19e: [39_002_738, 38_975_326, 27_412],
  resnet34k: [22_926_730, 22_911_242, 15_488],
};

// tfjs's VarianceScaling configs of Keras's he_normal and glorot_uniform.
const INITIALIZERS = {
  he_normal: { mode: 'fanIn', scale: 2, distribution: 'normal' },
  glorot_uniform: { mode: 'fanAvg', scale: 1, distribution: 'uniform' },
};

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('the model zoo, built for real', () => {
  const fingerprints = new Map<string, ModelName>();

  // One real (seeded) build per model: ~10 s in all on this machine, most of it the
  // he_normal initialisation of the VGG-study models.
  it.each(MODEL_NAMES)('%s has the parameter counts of MODELS.md', (name) => {
    const before = tf.memory().numTensors;
    const model = buildModel(name, { seed: 7 });
    const [totalParams, trainableParams, nonTrainableParams] = EXPECTED[name];
    expect(countParams(model)).toEqual({ totalParams, trainableParams, nonTrainableParams });
    expect(model.inputs[0].shape).toEqual([null, 32, 32, 3]);
    expect(model.outputs[0].shape).toEqual([null, 10]);
    const last = model.layers[model.layers.length - 1];
    expect(last.name).toBe('probs');
    expect(last.getClassName()).toBe('Activation');
    expect(last.countParams()).toBe(0);
    // he_normal for the VGG study, Keras's glorot_uniform otherwise; never an L2 term in a layer.
    const conv = model.getLayer('conv2d').getConfig();
    const init = (conv.kernelInitializer as { config: Record<string, unknown> }).config;
    expect(init).toMatchObject(INITIALIZERS[MODEL_SPECS[name].kernelInitializer]);
    expect(conv.kernelRegularizer ?? null).toBeNull();

    // The cheap zero-weight build that `tfjs-ddp models` counts is the same architecture.
    const fingerprint = architectureFingerprint(model);
    const arch = buildArchitecture(name);
    expect(countParams(arch)).toEqual(countParams(model));
    expect(architectureFingerprint(arch)).toBe(fingerprint);
    arch.dispose();

    expect(fingerprints.get(fingerprint)).toBeUndefined();
    fingerprints.set(fingerprint, name);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
