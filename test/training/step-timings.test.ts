import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GradientReducer } from '../../src/shared/collectives/gradient-reducer.js';
import { buildBatch } from '../../src/shared/data/batch.js';
import { syntheticImages } from '../../src/shared/data/synthetic-images.js';
import { type StepOutcome, TrainStep } from '../../src/shared/training/train-step.js';
import { weightsFingerprint } from '../../src/shared/training/weights-fingerprint.js';
import { IMPLEMENTATIONS } from '../collectives/worlds.js';

const images = syntheticImages(32, 0);
/**
 * Long against what a loopback transfer of 31 KB takes even on a loaded machine (the bounds
 * below leave it SLOW_MS / 2), so that only a wrong split can fail the test.
 */
const SLOW_MS = 1000;

/** A softmax regression: a model the step trains in milliseconds, so the lag is all SLOW_MS. */
function smallModel(): tfl.LayersModel {
  return tfl.sequential({
    layers: [
      tfl.layers.flatten({ inputShape: [32, 32, 3] }),
      tfl.layers.dense({ units: 10, kernelInitializer: 'zeros', useBias: true }),
      tfl.layers.activation({ activation: 'softmax', name: 'probs' }),
    ],
  });
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});
const models: tfl.LayersModel[] = [];
afterAll(() => {
  for (const m of models) m.dispose();
});

describe('TrainStep.step timings: no barrier, the wait still apart from the transfer', () => {
  for (const impl of IMPLEMENTATIONS) {
    it(`${impl.name}: a slow rank shows as waiting on the fast ranks, not in their all-reduce`, async () => {
      const worldSize = 3;
      // One bucket, one chunk per ring step: the fewest hops, as with a real model's buckets.
      const world = await impl.create(worldSize, { timeoutMs: 10_000, chunkBytes: 1024 * 1024 });
      try {
        const steps = world.collectives.map((collective) => {
          const model = smallModel();
          models.push(model);
          const step = new TrainStep({
            model,
            optimizer: { kind: 'sgd', lr: 0.1, momentum: 0, nesterov: false },
            weightDecay: 0,
            seed: 1,
          });
          const reducer = new GradientReducer(collective, {
            parameterSizes: step.trainableLayout.sizes,
          });
          return { step, reducer, rank: collective.rank };
        });
        const run = (r: (typeof steps)[number]): Promise<StepOutcome> => {
          const indices = [2 * r.rank, 2 * r.rank + 1];
          const batch = buildBatch(images, indices, {
            preprocessing: 'scale',
            augment: false,
            seed: 1,
            epoch: 0,
          });
          return r.step.step(
            { batch, sampleIndices: indices, epoch: 0, globalBatchSize: 2 * worldSize, lr: 0.1 },
            r.reducer,
            r.rank,
          );
        };
        // The fast ranks compute and enter their all-reduce; the last rank comes SLOW_MS later
        // (as if its compute or its data were slow).
        const fast = steps.slice(0, -1).map(run);
        await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
        const outcomes = await Promise.all([...fast, run(steps[worldSize - 1])]);
        for (const o of outcomes) expect(o.skipped).toBeUndefined();
        for (const fast of outcomes.slice(0, -1)) {
          expect(fast.timings.waitMs).toBeGreaterThan(SLOW_MS * 0.9);
          expect(fast.timings.allReduceMs).toBeLessThan(SLOW_MS / 2);
        }
        const slow = outcomes[worldSize - 1];
        expect(slow.timings.waitMs).toBeLessThan(SLOW_MS / 2);
        expect(slow.timings.allReduceMs).toBeLessThan(SLOW_MS / 2);
        // And the step is still a step: every replica holds the same weights after it.
        const prints = steps.map((r) => weightsFingerprint(r.step.getWeights()));
        expect(new Set(prints).size).toBe(1);
        for (const r of steps) r.step.dispose();
      } finally {
        await world.close();
      }
    });
  }
});
