// An exported model is usable outside tfjs-ddp: plain @tensorflow/tfjs-layers loads model.json,
// the input contract in tfjs-ddp.json turns raw CIFAR-10 bytes into its input, and the
// predictions are those of `tfjs-ddp eval`. eval also works on a folder holding only
// test_batch.bin.
import '@tensorflow/tfjs-backend-cpu';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, errorLines, runCli } from '../cli/run-cli.js';
import { writeSyntheticCifar } from '../helpers/synthetic-cifar.js';

const TEST_IMAGES = 60;
let work: string;
let data: string;
let testOnly: string;
let modelDir: string;

beforeAll(async () => {
  await tf.setBackend('cpu');
  work = await mkdtemp(join(tmpdir(), 'model-contract-'));
  data = join(work, 'cifar');
  testOnly = join(work, 'test-only');
  await writeSyntheticCifar(data, { perBatch: 40, withTest: true, testCount: TEST_IMAGES });
  await mkdir(testOnly);
  await copyFile(join(data, 'test_batch.bin'), join(testOnly, 'test_batch.bin'));
  await ensureBuilt();
  // standardize: per-channel constants, so a channel-order or scaling mistake shows.
  const train = await runCli([
    'train',
    '--model',
    'baseline',
    '--data',
    data,
    '--preprocessing',
    'standardize',
    '--batch-size',
    '20',
    '--epochs',
    '1',
    '--backend',
    'wasm',
    '--out',
    join(work, 'run'),
    '--json',
  ]);
  expect(errorLines(train.stderr)).toEqual([]);
  expect(train.code).toBe(0);
  modelDir = join(work, 'run', 'model');
}, 300_000);
afterAll(() => rm(work, { recursive: true, force: true }));

interface Evaluation {
  accuracy: number;
  loss: number;
  confusion: number[][];
}

async function evaluate(dir: string): Promise<Evaluation> {
  const r = await runCli([
    'eval',
    '--model-dir',
    modelDir,
    '--data',
    dir,
    '--backend',
    'cpu',
    '--json',
  ]);
  expect(errorLines(r.stderr)).toEqual([]);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as Evaluation;
}

describe('an exported model', () => {
  it('is evaluated on a folder that holds only test_batch.bin as on the full folder', async () => {
    const testOnlyResult = await evaluate(testOnly);
    expect(testOnlyResult.confusion.flat().reduce((a, b) => a + b, 0)).toBe(TEST_IMAGES);
    expect(testOnlyResult).toEqual(await evaluate(data));
  });

  it('gives eval’s predictions when loaded with plain tfjs-layers and fed per its contract', async () => {
    const metadata = JSON.parse(await readFile(join(modelDir, 'tfjs-ddp.json'), 'utf8'));
    const { input, output } = metadata;
    const classNames: string[] = metadata.classNames;
    expect(input).toMatchObject({
      layout: 'NHWC',
      shape: [null, 32, 32, 3],
      dtype: 'float32',
      channels: ['red', 'green', 'blue'],
      pixelRange: [0, 255],
      preprocessing: 'standardize',
    });
    // CIFAR-10's training-set statistics, 0–255 scale: input = (pixel − mean) / std, which
    // training computes as pixel × scale + offset.
    expect(input.mean).toEqual([125.3069184, 122.95039455, 113.86538205]);
    expect(input.std).toEqual([62.99321865, 62.08870815, 66.7048992]);
    for (let c = 0; c < 3; c++) {
      expect(input.scale[c]).toBeCloseTo(1 / input.std[c], 12);
      expect(input.offset[c]).toBeCloseTo(-input.mean[c] / input.std[c], 12);
    }
    expect(output).toMatchObject({ shape: [null, classNames.length] });

    // The contract applied by hand to the raw records: label byte, then R, G, B planes of 32×32.
    const bytes = await readFile(join(testOnly, 'test_batch.bin'));
    const count = bytes.length / 3073;
    const xs = new Float32Array(count * 32 * 32 * 3);
    const labels: number[] = [];
    for (let n = 0; n < count; n++) {
      const record = bytes.subarray(n * 3073, (n + 1) * 3073);
      labels.push(record[0]);
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) {
          for (let c = 0; c < 3; c++) {
            const pixel = record[1 + c * 1024 + y * 32 + x];
            xs[((n * 32 + y) * 32 + x) * 3 + c] = (pixel - input.mean[c]) / input.std[c];
          }
        }
      }
    }

    const modelJson = JSON.parse(await readFile(join(modelDir, 'model.json'), 'utf8'));
    const shards = await Promise.all(
      modelJson.weightsManifest.flatMap((g: { paths: string[] }) =>
        g.paths.map((p) => readFile(join(modelDir, p))),
      ),
    );
    const model = await tfl.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: modelJson.modelTopology,
        weightSpecs: modelJson.weightsManifest.flatMap((g: { weights: unknown[] }) => g.weights),
        weightData: new Uint8Array(Buffer.concat(shards)).buffer,
      }),
    );
    const probs = model.predict(tf.tensor4d(xs, [count, 32, 32, 3])) as tf.Tensor2D;
    const predicted = Array.from(tf.argMax(probs, 1).dataSync());
    const p = probs.arraySync();
    model.dispose();

    const confusion = classNames.map(() => new Array<number>(classNames.length).fill(0));
    for (const [n, label] of labels.entries()) confusion[label][predicted[n]]++;
    const loss = -labels.reduce((sum, label, n) => sum + Math.log(p[n][label]), 0) / count;
    const evaluation = await evaluate(testOnly);
    expect(confusion).toEqual(evaluation.confusion);
    expect(loss).toBeCloseTo(evaluation.loss, 4);
  });
});
