// A replica whose step fails in its all-reduce (the peer went away, as when a coordinator dies
// after sending the next step's plan to one rank only) is left at its last step: weights and
// BatchNorm statistics as before the step, so that it still agrees with a replica that never
// started that step. Two replicas of baseline over an in-memory ring.
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createInMemoryCollectives } from '../../src/shared/collectives/in-memory-collectives.js';
import { resolveTrainConfig } from '../../src/shared/config/resolve-train-config.js';
import { loadDataset } from '../../src/shared/data/load-dataset.js';
import { inMemorySamples } from '../../src/shared/data/sample-source.js';
import { buildModel } from '../../src/shared/models/zoo.js';
import { Replica } from '../../src/shared/training/replica.js';
import { weightsFingerprint } from '../../src/shared/training/weights-fingerprint.js';

const replicas: Replica[] = [];

beforeAll(async () => {
  await tf.setBackend('cpu');
});

afterAll(() => {
  for (const r of replicas) r.dispose();
});

describe('a replica whose step fails in its all-reduce', () => {
  it('keeps the weights and BatchNorm statistics of its last step', async () => {
    const config = resolveTrainConfig({
      model: 'baseline',
      dataset: 'synthetic',
      batchSize: '8',
      seed: '3',
      steps: '2',
    });
    const data = await loadDataset({
      dataset: 'synthetic',
      valSize: 0,
      seed: 3,
      syntheticSize: { train: 64, val: 8 },
    });
    const samples = Promise.resolve(inMemorySamples(data, config));
    const options = {
      train: config,
      compression: 'none' as const,
      firstBucketBytes: 0,
      bucketBytes: 0,
      overlap: false,
    };
    const world = createInMemoryCollectives('ring', 2, { timeoutMs: 5000, chunkBytes: 1 << 16 });
    const [a, b] = [0, 1].map((rank) => {
      const replica = new Replica(buildModel('baseline', { seed: 3 }), options, samples);
      replica.useCollective(world.collectives[rank]);
      replicas.push(replica);
      return replica;
    });
    await Promise.all([a, b].map((r) => r.initialize(false, 0, () => Promise.reject())));
    const movingBefore = a.trainStep.getMovingStats();
    const weightsBefore = weightsFingerprint(a.trainStep.getWeights());
    expect(weightsFingerprint(b.trainStep.getWeights())).toBe(weightsBefore);

    // Rank 0 starts the step; rank 1 never does and goes away.
    const plan = {
      step: 0,
      epoch: 0,
      stepInEpoch: 0,
      sampleIndices: [0, 1, 2, 3],
      globalBatchSize: 8,
      learningRate: 0.05,
    };
    const failed = a.step(plan);
    world.transports[1].close();
    await expect(failed).rejects.toThrow();

    expect(Array.from(a.trainStep.getMovingStats())).toEqual(Array.from(movingBefore));
    expect(weightsFingerprint(a.trainStep.getWeights())).toBe(weightsBefore);
    await world.collectives[0].close();
  });
});
