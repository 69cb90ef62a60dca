import '@tensorflow/tfjs-backend-cpu';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../../src/shared/training/checkpoint.js';
import { type EvalMetrics, readMetrics } from '../../src/shared/training/metrics-writer.js';
import { writeSyntheticCifar } from '../helpers/synthetic-cifar.js';
import { ensureBuilt, errorLines, runCli } from './run-cli.js';

let work: string;
let data: string;
let run: string;
let summary: Record<string, unknown>;

beforeAll(async () => {
  await tf.setBackend('cpu');
  work = await mkdtemp(join(tmpdir(), 'train-cli-'));
  data = join(work, 'cifar');
  run = join(work, 'run');
  // 500 images in the official layout, no test batch: validation is a seeded holdout of 100.
  await writeSyntheticCifar(data, { perBatch: 100 });
  await ensureBuilt();
}, 180_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('tfjs-ddp train', () => {
  it('trains, evaluates each epoch, checkpoints, exports, and prints one JSON summary', async () => {
    const result = await runCli([
      'train',
      '--model',
      'baseline',
      '--data',
      data,
      '--val-size',
      '100',
      '--batch-size',
      '20',
      '--epochs',
      '2',
      '--checkpoint-every',
      '4',
      '--backend',
      'wasm',
      '--out',
      run,
      '--json',
    ]);
    expect(result.stderr).not.toMatch(/"level":5\d/);
    expect(result.code).toBe(0);
    expect(result.stdout.trim().split('\n')).toHaveLength(1);
    summary = JSON.parse(result.stdout);
    expect(Object.keys(summary).sort()).toEqual([
      'backend',
      'finalLoss',
      'imagesPerSec',
      'model',
      'runDir',
      'steps',
      'valAccuracy',
      'workers',
    ]);
    expect(summary).toMatchObject({
      model: 'baseline',
      backend: 'wasm',
      workers: 1,
      steps: 40,
      runDir: run,
    });
    expect(summary.imagesPerSec).toBeGreaterThan(0);
    // The synthetic classes are learnable: well above chance (10%) after 2 epochs.
    expect(summary.valAccuracy).toBeGreaterThan(0.3);

    expect((await readdir(run)).sort()).toEqual([
      'checkpoint.ckpt',
      'config.json',
      'metrics.jsonl',
      'model',
      'run-flags.json',
    ]);
    const config = JSON.parse(readFileSync(join(run, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      model: 'baseline',
      recipe: 'keras-tutorials',
      epochs: 2,
      batchSize: 20,
    });
    const metrics = readMetrics(join(run, 'metrics.jsonl'));
    expect(metrics.filter((m) => m.type === 'step').map((m) => m.step)).toEqual(
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    const evals = metrics.filter((m): m is EvalMetrics => m.type === 'eval');
    expect(evals.map((m) => [m.step, m.epoch, m.count])).toEqual([
      [20, 0, 100],
      [40, 1, 100],
    ]);
    expect(evals[1].accuracy).toBe(summary.valAccuracy);
    const ckpt = await readCheckpoint(run);
    expect([ckpt.step, ckpt.cursor]).toEqual([40, { epoch: 2, offset: 0 }]);

    // The export is the standard layers format: load it with tfjs' own loader from the files.
    const dir = join(run, 'model');
    const modelJson = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
    const shards = modelJson.weightsManifest.flatMap((g: { paths: string[] }) =>
      g.paths.map((p) => readFileSync(join(dir, p))),
    );
    const model = await tfl.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: modelJson.modelTopology,
        weightSpecs: modelJson.weightsManifest.flatMap((g: { weights: unknown[] }) => g.weights),
        weightData: new Uint8Array(Buffer.concat(shards)).buffer,
      }),
    );
    const exported = [...model.trainableWeights, ...model.nonTrainableWeights].flatMap((w) =>
      Array.from(w.read().dataSync()),
    );
    expect(exported).toEqual(Array.from(ckpt.weights));
    expect((model.predict(tf.zeros([2, 32, 32, 3])) as tf.Tensor).shape).toEqual([2, 10]);
    model.dispose();
    expect(JSON.parse(readFileSync(join(dir, 'tfjs-ddp.json'), 'utf8'))).toMatchObject({
      model: 'baseline',
      preprocessing: 'scale',
      data: { dataset: 'cifar10', dataDir: data, valSize: 100 },
      seed: 0,
    });
  });

  it('eval on the exported model reports the accuracy of the run’s last evaluation', async () => {
    const result = await runCli([
      'eval',
      '--model-dir',
      join(run, 'model'),
      '--backend',
      'wasm',
      '--json',
    ]);
    expect(result.code).toBe(0);
    const evaluation = JSON.parse(result.stdout);
    expect(Object.keys(evaluation).sort()).toEqual(['accuracy', 'confusion', 'loss', 'perClass']);
    expect(evaluation.accuracy).toBe(summary.valAccuracy);
    expect(evaluation.confusion.flat().reduce((a: number, b: number) => a + b, 0)).toBe(100);
    expect(evaluation.perClass[0]).toMatchObject({ class: 'airplane' });

    const table = await runCli([
      'eval',
      '--model-dir',
      join(run, 'model'),
      '--data',
      data,
      '--backend',
      'wasm',
    ]);
    expect(table.code).toBe(0);
    expect(table.stdout).toContain(
      `accuracy ${(100 * (summary.valAccuracy as number)).toFixed(2)}%`,
    );
    expect(table.stdout).toContain('confusion matrix (rows: true class, columns: predicted class)');
    expect(table.stdout).toMatch(/^9 truck +\d/m);
  });

  it.each([
    [
      ['--model', 'baseline', '--batch-size', '0'],
      '--batch-size: the batch size must be at least 1 (got "0")',
    ],
    [['--model', 'nope'], '--model: unknown model "nope": expected one of baseline'],
    [['--model', 'baseline', '--recipe', 'nope'], '--recipe: unknown recipe "nope"'],
    [
      ['--model', 'baseline', '--epochs', '1', '--steps', '2'],
      '--epochs and --steps: give one of them',
    ],
    [['--model', 'baseline', '--backend', 'gpu'], 'unknown backend "gpu"'],
    [
      ['--model', 'baseline', '--data', join(tmpdir(), 'no-such-cifar'), '--backend', 'cpu'],
      'no-such-cifar',
    ],
    [['--resume', join(tmpdir(), 'no-such-run')], 'there is no folder'],
  ])('train %j fails with one clear line and exit code 2', async (args, message) => {
    const result = await runCli(['train', ...args], { cwd: work });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    const errors = errorLines(result.stderr);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(message);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(existsSync(join(work, 'runs'))).toBe(false);
  });

  it('eval of a folder that is not an exported model fails with one clear line', async () => {
    const result = await runCli(['eval', '--model-dir', work, '--backend', 'cpu']);
    expect(result.code).toBe(2);
    expect(errorLines(result.stderr)).toEqual([
      `${join(work, 'tfjs-ddp.json')} is missing: --model-dir must be a model exported by \`tfjs-ddp train\` (<run>/model)`,
    ]);
  });
});
