import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticImages } from '../../src/shared/data/synthetic-images.js';
import { buildModel } from '../../src/shared/models/zoo.js';
import { Evaluator, mergeEvalSums, summarizeEval } from '../../src/shared/training/evaluator.js';
import { shardIndices } from '../../src/shared/training/sampler.js';

const images = syntheticImages(50, 1);
let model: ReturnType<typeof buildModel>;

beforeAll(async () => {
  await tf.setBackend('cpu');
  model = buildModel('lenet5', { seed: 3 });
});
afterAll(() => model.dispose());

describe('Evaluator', () => {
  it('sums over batches and shards reduce to the whole-split result, without leaks', () => {
    const evaluator = new Evaluator(model);
    const opts = { preprocessing: 'scale' as const, batchSize: 16 };
    evaluator.run(images, opts);
    const before = tf.memory().numTensors;
    const whole = evaluator.run(images, { ...opts, batchSize: 50 });
    const all = Uint32Array.from({ length: 50 }, (_, i) => i);
    const parts = shardIndices(all, 3).map((indices) =>
      evaluator.run(images, { ...opts, indices }),
    );
    expect(tf.memory().numTensors).toBe(before);
    const merged = parts.reduce(mergeEvalSums);
    expect(merged.count).toBe(50);
    expect(merged.correct).toBe(whole.correct);
    expect(merged.confusion).toEqual(whole.confusion);
    expect(merged.lossSum).toBeCloseTo(whole.lossSum, 3);
    expect(merged.confusion.reduce((a, b) => a + b, 0)).toBe(50);

    // The loss is the mean cross-entropy of the model's own probabilities.
    const probs = tf.tidy(() => {
      const xs = tf.tensor4d(
        Float32Array.from({ length: 50 * 3072 }, (_, k) => {
          const [i, p] = [Math.floor(k / 3072), k % 3072];
          const [y, x, c] = [Math.floor(p / 96), Math.floor(p / 3) % 32, p % 3];
          return images.pixels[i * 3072 + c * 1024 + y * 32 + x] / 255;
        }),
        [50, 32, 32, 3],
      );
      return (model.predict(xs) as tf.Tensor).arraySync() as number[][];
    });
    const loss = probs.reduce((s, p, i) => s - Math.log(p[images.labels[i]]), 0) / 50;
    const summary = summarizeEval(whole, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']);
    expect(summary.loss).toBeCloseTo(loss, 4);
    expect(summary.accuracy).toBe(whole.correct / 50);
    expect(summary.perClass.map((c) => c.count)).toEqual(new Array(10).fill(5));
    expect(summary.confusion[3].reduce((a, b) => a + b, 0)).toBe(5);
  });
});
