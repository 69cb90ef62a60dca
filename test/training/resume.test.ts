import { appendFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainInProcess } from '../../src/coordinator/train-in-process.js';
import { initBackend } from '../../src/shared/backend/select-backend.js';
import { resolveTrainConfig } from '../../src/shared/config/resolve-train-config.js';
import { resumeTrainConfig } from '../../src/shared/config/resume-train-config.js';
import { readCheckpoint } from '../../src/shared/training/checkpoint.js';
import { readMetrics } from '../../src/shared/training/metrics-writer.js';
import { createRunDir, METRICS_FILE } from '../../src/shared/training/run-folder.js';

let work: string;
beforeAll(async () => {
  await initBackend('wasm');
  work = await mkdtemp(join(tmpdir(), 'resume-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

// BatchNorm, keyed dropout, augmentation, Nesterov momentum, weight decay, warm-up and a rate
// drop at step 4 (250 steps/epoch × 0.016): everything a resumed run must restore.
const flags = {
  model: 'baseline',
  dataset: 'synthetic',
  batchSize: '8',
  optimizer: 'sgd',
  lr: '0.05',
  momentum: '0.9',
  nesterov: true,
  weightDecay: '0.001',
  augment: true,
  warmupSteps: '2',
  schedule: 'step:0.016=0.5',
  evalBatchSize: '250',
  seed: '11',
};

describe('resume', () => {
  it('6 steps in one go and 3 + 3 resumed from the checkpoint end with identical weights', async () => {
    const straight = join(work, 'straight');
    const resumed = join(work, 'resumed');
    const run = (config: ReturnType<typeof resolveTrainConfig>, runDir: string, from?: unknown) =>
      trainInProcess({
        config,
        backend: 'wasm',
        runDir,
        resumeFrom: from as Parameters<typeof trainInProcess>[0]['resumeFrom'],
      });
    await run(
      resolveTrainConfig({ ...flags, steps: '6' }),
      await createRunDir('baseline', straight),
    );
    await run(
      resolveTrainConfig({ ...flags, steps: '3' }),
      await createRunDir('baseline', resumed),
    );

    const half = await readCheckpoint(resumed);
    expect(half.step).toBe(3);
    expect(half.cursor).toEqual({ epoch: 0, offset: 24 });
    // A line of a step the crashed run logged after its checkpoint: the resumed run drops it.
    appendFileSync(join(resumed, METRICS_FILE), `${JSON.stringify({ type: 'step', step: 4 })}\n`);
    const config = resumeTrainConfig(half.config, { steps: '6' }, 'test');
    const summary = await run(config, resumed, half);
    expect(summary.steps).toBe(6);

    const a = await readCheckpoint(straight);
    const b = await readCheckpoint(resumed);
    expect(b.step).toBe(6);
    expect(b.cursor).toEqual(a.cursor);
    expect(Buffer.from(b.weights.buffer).equals(Buffer.from(a.weights.buffer))).toBe(true);
    expect(b.optimizer.iterations).toBe(6);
    expect(Array.from(b.optimizer.slots.momentum)).toEqual(Array.from(a.optimizer.slots.momentum));

    const steps = readMetrics(join(resumed, METRICS_FILE)).filter((r) => r.type === 'step');
    expect(steps.map((r) => r.step)).toEqual([1, 2, 3, 4, 5, 6]);
    const straightSteps = readMetrics(join(straight, METRICS_FILE)).filter(
      (r) => r.type === 'step',
    );
    expect(steps.map((r) => [r.loss, r.lr])).toEqual(straightSteps.map((r) => [r.loss, r.lr]));
    expect(straightSteps.map((r) => r.lr)).toEqual([0.025, 0.05, 0.05, 0.05, 0.025, 0.025]);
  });

  it('refuses to resume a finished run without a longer --steps, and changed settings', async () => {
    const dir = join(work, 'resumed');
    const ckpt = await readCheckpoint(dir);
    const config = resumeTrainConfig(ckpt.config, {}, 'test');
    await expect(
      trainInProcess({ config, backend: 'wasm', runDir: dir, resumeFrom: ckpt }),
    ).rejects.toThrow(/already trained 6 steps of 6; give a larger --epochs or --steps/);
    expect(() => resumeTrainConfig(ckpt.config, { batchSize: '16' }, 'test')).toThrow(
      '--batch-size 16 differs from the resumed run',
    );
    expect(() =>
      resumeTrainConfig(ckpt.config, { model: 'baseline', batchSize: '8' }, 'test'),
    ).not.toThrow();
  });
});
