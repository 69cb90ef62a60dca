// Worker-count invariance (DESIGN.md): with the same seed, global batch and number of steps,
// N workers end with the weights one process ends with, up to float rounding, in ring and in
// star mode. The global batch of 25 splits unevenly over 2 (13/12) and 3 (9/8/8) workers,
// and the 170 training images leave an uneven last batch of 20 before the run crosses into
// epoch 1 (a new permutation); augmentation is on (keyed by global sample index).
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, runCli } from '../cli/run-cli.js';
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
let reference: Float32Array;

const STEPS = 9;
const common = () => lenet5RunFlags(data, STEPS);

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ddp-invariance-'));
  data = join(work, 'cifar');
  await writeSyntheticCifar(data, { perBatch: 38 });
  await ensureBuilt();
  const single = join(work, 'single');
  const { summary } = await train([...common(), '--batch-size', '25', '--out', single]);
  expect(summary).toMatchObject({ workers: 1, steps: STEPS });
  reference = await finalWeights(single);
}, 300_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('N workers train the weights one process trains', () => {
  it.each([
    ['ring', 2],
    ['ring', 3],
    ['star', 2],
    ['star', 3],
  ])('%s all-reduce with %i workers', async (mode, workers) => {
    const out = join(work, `${mode}-${workers}`);
    const { summary } = await train([
      ...common(),
      '--workers',
      String(workers),
      '--global-batch-size',
      '25',
      '--allreduce',
      mode,
      '--fingerprint-every',
      '1',
      '--out',
      out,
    ]);
    expect(summary).toMatchObject({
      model: 'lenet5',
      backend: 'wasm',
      workers,
      steps: STEPS,
      runDir: out,
    });
    expect(relativeError(await finalWeights(out), reference)).toBeLessThan(1e-5);
    // One line per step (with the workers' timings) and one evaluation per epoch end and at the end.
    const lines = (await readFile(join(out, 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const steps = lines.filter((l) => l.type === 'step');
    expect(steps.map((l) => l.images)).toEqual([25, 25, 25, 25, 25, 25, 20, 25, 25]);
    expect(steps.every((l) => l.workers === workers && l.timings.computeMs > 0)).toBe(true);
    expect(lines.filter((l) => l.type === 'eval').map((l) => l.step)).toEqual([7, 9]);
  });

  it('overlap (the default) changes no bit: 3 workers, lenet5 in 4 buckets, with and without', async () => {
    // 5 KB buckets cut lenet5's gradient into 4 (its layers, from the last): the three after
    // the first layer leave during the backward pass, from the transport thread.
    const run = async (name: string, extra: string[]) => {
      const out = join(work, name);
      await train([
        ...common(),
        ...['--workers', '3', '--global-batch-size', '25', '--bucket-size-mb', '0.005'],
        ...['--fingerprint-every', '1', '--out', out, ...extra],
      ]);
      return finalWeights(out);
    };
    const overlapped = await run('overlap', []);
    const after = await run('no-overlap', ['--no-overlap']);
    expect(Buffer.from(overlapped.buffer).equals(Buffer.from(after.buffer))).toBe(true);
    expect(relativeError(overlapped, reference)).toBeLessThan(1e-5);
  });

  it('compresses gradients to bf16 on the wire and still keeps the replicas identical', async () => {
    const out = join(work, 'bf16');
    await train([
      ...common(),
      '--workers',
      '2',
      '--global-batch-size',
      '25',
      '--grad-compression',
      'bf16',
      '--fingerprint-every',
      '1',
      '--out',
      out,
    ]);
    // Close to the float32 run (bf16 keeps 8 bits of mantissa), but not the same.
    const error = relativeError(await finalWeights(out), reference);
    expect(error).toBeGreaterThan(0);
    expect(error).toBeLessThan(1e-2);
  });
});

describe('compressed gradients keep the replicas identical', () => {
  // The coordinator compares the replicas' weight fingerprints after every step and fails the
  // run on any difference; the compressed runs are approximations of the float32 run.
  it.each([
    ['fp16', 'ring', 1e-2],
    ['powersgd:2', 'ring', 0.5],
    ['powersgd:2', 'star', 0.5],
  ])('%s over the %s all-reduce', async (compression, mode, tolerance) => {
    const out = join(work, `${compression.replace(':', '-')}-${mode}`);
    const { summary } = await train([
      ...common(),
      '--workers',
      '2',
      '--global-batch-size',
      '25',
      '--allreduce',
      mode,
      '--grad-compression',
      compression,
      '--fingerprint-every',
      '1',
      '--out',
      out,
    ]);
    expect(summary).toMatchObject({ workers: 2, steps: STEPS });
    const error = relativeError(await finalWeights(out), reference);
    expect(error).toBeGreaterThan(0);
    expect(error).toBeLessThan(tolerance);
  });
});

describe('a gradient that is not finite', () => {
  // A rate of 1e38 blows the weights up after step 1: from then on the loss is not finite.
  // One policy for one process and for N: skip the step on every replica, and after 10 in a
  // row stop the run with exit code 3.
  const diverging = () => {
    const args = common().map((a, i, all) => (all[i - 1] === '--lr' ? '1e38' : a));
    return args.map((a, i, all) => (all[i - 1] === '--steps' ? '20' : a));
  };
  const expectStoppedAfter11 = async (result: CliResult, out: string) => {
    expect(result.code).toBe(3);
    expect(errorLines(result.stderr).at(-1)).toMatch(
      /^training diverged: the gradient was not finite in 10 steps in a row \(steps 2 to 11, all skipped; at the last, rank \d's loss is NaN(; rank \d's loss is NaN)*\); try a lower --lr/,
    );
    const lines = (await readFile(join(out, 'metrics.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const steps = lines.filter((l) => l.type === 'step');
    expect(steps.map((l) => [l.step, l.skipped === true])).toEqual(
      Array.from({ length: 11 }, (_, i) => [i + 1, i > 0]),
    );
  };

  it('is skipped on every replica alike, and a run that keeps diverging is stopped', async () => {
    const out = join(work, 'diverged');
    const result = await runCli([
      'train',
      ...diverging(),
      '--workers',
      '2',
      '--global-batch-size',
      '25',
      '--fingerprint-every',
      '1',
      '--out',
      out,
    ]);
    // Replicas stayed identical throughout (fingerprints after every step), skipping 2..11.
    await expectStoppedAfter11(result, out);
  });

  it('is skipped the same way in one process (a world of one)', async () => {
    const out = join(work, 'diverged-alone');
    const result = await runCli(['train', ...diverging(), '--batch-size', '25', '--out', out]);
    await expectStoppedAfter11(result, out);
  });
});
