// What `train --workers N` decides before it starts anything: the workers' GPUs, and the
// global batch of a new or resumed distributed run.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveDistributedConfig } from '../../src/coordinator/distributed-config.js';
import { planGpus } from '../../src/coordinator/gpu-plan.js';
import { resolveTrainConfig } from '../../src/shared/config/resolve-train-config.js';
import { writeCheckpoint } from '../../src/shared/training/checkpoint.js';

const none = { gpuPackageInstalled: false, visible: [] };
const fourGpus = { gpuPackageInstalled: true, visible: ['0', '1', '2', '3'] };

describe('planGpus', () => {
  it('runs CPU workers where there is no tfjs-node-gpu or no GPU', () => {
    expect(planGpus({ workers: 3, backend: 'auto' }, none)).toEqual({ workers: 3 });
    expect(
      planGpus({ workers: 2, backend: 'auto' }, { ...fourGpus, gpuPackageInstalled: false }),
    ).toEqual({
      workers: 2,
    });
    expect(planGpus({ workers: 2, backend: 'wasm' }, fourGpus)).toEqual({ workers: 2 });
  });

  it('gives each worker its own GPU: listed, every visible one, or the first N', () => {
    expect(planGpus({ gpus: '2,0', backend: 'auto' }, fourGpus)).toEqual({
      workers: 2,
      devices: ['2', '0'],
    });
    expect(planGpus({ gpus: true, backend: 'tensorflow' }, fourGpus)).toEqual({
      workers: 4,
      devices: ['0', '1', '2', '3'],
    });
    expect(planGpus({ workers: 2, backend: 'auto' }, fourGpus)).toEqual({
      workers: 2,
      devices: ['0', '1'],
    });
  });

  it('refuses GPUs that cannot be had, saying why', () => {
    expect(() => planGpus({ gpus: '0', backend: 'auto' }, none)).toThrow(
      /tfjs-node-gpu is not installed/,
    );
    expect(() =>
      planGpus({ gpus: '0', backend: 'auto' }, { gpuPackageInstalled: true, visible: [] }),
    ).toThrow(/no GPU is visible/);
    expect(() => planGpus({ gpus: '7', backend: 'auto' }, fourGpus)).toThrow(
      /GPU 7 is not visible/,
    );
    expect(() => planGpus({ gpus: '0,0', backend: 'auto' }, fourGpus)).toThrow(/listed twice/);
    expect(() => planGpus({ gpus: '0', backend: 'wasm' }, fourGpus)).toThrow(
      /needs the tensorflow backend/,
    );
    expect(() => planGpus({ workers: 3, gpus: '0,1', backend: 'auto' }, fourGpus)).toThrow(
      /one worker per GPU/,
    );
    expect(() => planGpus({ workers: 5, backend: 'auto' }, fourGpus)).toThrow(
      /only 4 GPUs are visible/,
    );
  });
});

describe('resolveDistributedConfig', () => {
  let work: string;
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'ddp-config-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });
  const flags = { model: 'lenet5', dataset: 'synthetic', steps: '4' };

  it('stores the global batch: N × the per-worker --batch-size, or --global-batch-size', async () => {
    expect(
      (await resolveDistributedConfig({ ...flags, batchSize: '16' }, 3)).config.batchSize,
    ).toBe(48);
    expect(
      (await resolveDistributedConfig({ ...flags, globalBatchSize: 50 }, 3)).config.batchSize,
    ).toBe(50);
    // The recipe's batch (32 for the Keras tutorials) is per worker too.
    expect((await resolveDistributedConfig(flags, 2)).config.batchSize).toBe(64);
    await expect(
      resolveDistributedConfig({ ...flags, batchSize: '8', globalBatchSize: 16 }, 2),
    ).rejects.toThrow(/give one of them/);
  });

  it('resumes with the stored global batch, whatever the number of workers', async () => {
    const config = { ...resolveTrainConfig({ ...flags, batchSize: '24' }) };
    await writeCheckpoint(work, {
      step: 2,
      cursor: { epoch: 0, offset: 48 },
      seed: 0,
      config,
      architecture: 'a',
      weights: new Float32Array(1),
      optimizer: { kind: 'adam', iterations: 2, slots: {} },
    });
    const resumed = await resolveDistributedConfig({ steps: '8' }, 3, work);
    expect(resumed.config.batchSize).toBe(24);
    expect(resumed.resumeFrom?.step).toBe(2);
    expect((await resolveDistributedConfig({ batchSize: '12' }, 2, work)).config.batchSize).toBe(
      24,
    );
    await expect(resolveDistributedConfig({ batchSize: '12' }, 3, work)).rejects.toThrow(
      /keeps its global batch of 24/,
    );
  });
});
