// A distributed run stopped after K steps and resumed with another number of workers ends
// where the uninterrupted run ends; workers that fetch their images from the coordinator
// (--data-from coordinator) train exactly what workers with a local copy train.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../../src/shared/training/checkpoint.js';
import { runCli } from '../cli/run-cli.js';
import { writeSyntheticCifar } from '../helpers/synthetic-cifar.js';
import {
  ensureBuilt,
  errorLines,
  finalWeights,
  lenet5RunFlags,
  relativeError,
  train,
} from './cli-runs.js';

let work: string;
let data: string;
let uninterrupted: Float32Array;

const run = (steps: number) => [...lenet5RunFlags(data, steps), '--global-batch-size', '24'];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ddp-resume-'));
  data = join(work, 'cifar');
  await writeSyntheticCifar(data, { perBatch: 30 });
  await ensureBuilt();
  const out = join(work, 'uninterrupted');
  await train([...run(8), '--workers', '2', '--out', out]);
  uninterrupted = await finalWeights(out);
}, 300_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('--resume of a distributed run', () => {
  it('continues with another number of workers and ends with the uninterrupted weights', async () => {
    const out = join(work, 'resumed');
    await train([...run(4), '--workers', '3', '--out', out]);
    const halfway = await readCheckpoint(out);
    expect(halfway.step).toBe(4);
    expect(halfway.cursor).toEqual({ epoch: 0, offset: 96 });
    // The stored configuration holds the global batch; 2 workers now take 12 each.
    expect((halfway.config as { batchSize: number }).batchSize).toBe(24);

    const { summary } = await train([
      '--resume',
      out,
      '--steps',
      '8',
      '--workers',
      '2',
      '--backend',
      'wasm',
    ]);
    expect(summary).toMatchObject({ workers: 2, steps: 8, runDir: out });
    expect(relativeError(await finalWeights(out), uninterrupted)).toBeLessThan(1e-5);
    const steps = (await readFile(join(out, 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((l) => l.type === 'step');
    expect(steps.map((l) => [l.step, l.workers])).toEqual([
      [1, 3],
      [2, 3],
      [3, 3],
      [4, 3],
      [5, 2],
      [6, 2],
      [7, 2],
      [8, 2],
    ]);
  });

  it('carries PowerSGD state (error feedback, warm-start Q) through the checkpoint', async () => {
    const powerSgd = ['--grad-compression', 'powersgd:2'];
    const straight = join(work, 'powersgd-uninterrupted');
    await train([...run(8), ...powerSgd, '--workers', '2', '--out', straight]);
    const out = join(work, 'powersgd-resumed');
    await train([...run(4), ...powerSgd, '--workers', '3', '--out', out]);
    const halfway = await readCheckpoint(out);
    const slots = Object.keys(halfway.optimizer.slots).filter((s) => s.startsWith('comm/'));
    expect(slots.sort()).toEqual(['comm/powersgd/error-sum', 'comm/powersgd/q']);
    const errorSum = halfway.optimizer.slots['comm/powersgd/error-sum'];
    expect(errorSum.some((e) => e !== 0)).toBe(true);
    await train([
      '--resume',
      out,
      '--steps',
      '8',
      ...powerSgd,
      '--workers',
      '2',
      '--backend',
      'wasm',
    ]);
    // PowerSGD's result depends on the sum of the ranks' errors only, which the checkpoint
    // keeps: the resumed run (3 workers, then 2) ends where the uninterrupted one does, far
    // closer to it than the compressed run is to the float32 run.
    const resumed = await finalWeights(out);
    const compressed = await finalWeights(straight);
    const drift = relativeError(resumed, compressed);
    expect(drift).toBeLessThan(1e-5);
    expect(drift).toBeLessThan(relativeError(compressed, uninterrupted) / 10);
  });

  it('refuses a per-worker batch that would change the global batch', async () => {
    const out = join(work, 'resumed');
    const result = await runCli([
      'train',
      '--resume',
      out,
      '--steps',
      '9',
      '--workers',
      '3',
      '--batch-size',
      '12',
    ]);
    expect(result.code).toBe(2);
    expect(errorLines(result.stderr).join('\n')).toMatch(/keeps its global batch of 24 .* give 36/);
  });
});

describe('--data-from coordinator', () => {
  it('trains bit for bit what workers with local data train', async () => {
    const out = join(work, 'served');
    await train([...run(8), '--workers', '2', '--data-from', 'coordinator', '--out', out]);
    expect(relativeError(await finalWeights(out), uninterrupted)).toBe(0);
  });
});
