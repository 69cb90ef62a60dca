import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UserError } from '../../src/shared/errors.js';
import { loadModel, saveModel } from '../../src/shared/models/model-files.js';
import { architectureFingerprint, buildModel } from '../../src/shared/models/zoo.js';

const run = promisify(execFile);
const FIXTURE = fileURLToPath(new URL('./fixtures/load-and-predict.mjs', import.meta.url));
const BUILT = fileURLToPath(
  new URL('../../dist/src/shared/models/model-files.js', import.meta.url),
);

let root: string;
beforeAll(async () => {
  await tf.setBackend('cpu');
  root = await mkdtemp(path.join(tmpdir(), 'tfjs-ddp-models-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** The same pseudo-images as the fixture. */
function images(n: number): tf.Tensor4D {
  const values = new Float32Array(n * 32 * 32 * 3).map((_, i) => ((i * 7919) % 1000) / 1000);
  return tf.tensor4d(values, [n, 32, 32, 3]);
}

function predict(model: tfl.LayersModel, n: number): number[] {
  return tf.tidy(() => Array.from((model.predict(images(n)) as tf.Tensor).dataSync()));
}

describe('saveModel / loadModel', () => {
  it('round-trips baseline in the standard layers format, in this and in fresh processes', async () => {
    const dir = path.join(root, 'baseline');
    const model = buildModel('baseline', { seed: 11 });
    // Make the BatchNorm moving statistics non-trivial, so that losing them would show.
    const bn = model.getLayer('batch_normalization');
    bn.setWeights(bn.getWeights().map((w, i) => tf.tidy(() => tf.add(w, 0.1 * (i + 1)))));
    const expected = predict(model, 4);
    await saveModel(model, dir);

    expect((await readdir(dir)).sort()).toEqual(['group1-shard1of1.bin', 'model.json']);
    const json = JSON.parse(await readFile(path.join(dir, 'model.json'), 'utf8'));
    expect(json.format).toBe('layers-model');
    const layers = json.modelTopology.config.layers as { class_name: string }[];
    expect(layers.filter((l) => l.class_name === 'Dropout')).toHaveLength(2);
    const specs = json.weightsManifest[0].weights as { name: string }[];
    expect(specs.map((s) => s.name)).toContain('batch_normalization/moving_variance');

    const loaded = await loadModel(dir);
    expect(predict(loaded, 4)).toEqual(expected);
    expect(architectureFingerprint(loaded)).toBe(architectureFingerprint(model));
    loaded.dispose();
    model.dispose();

    expect(existsSync(BUILT), 'dist is missing: run `npm run build` before the tests').toBe(true);
    for (const mode of ['plain', 'ours']) {
      const { stdout } = await run(process.execPath, [FIXTURE, mode, dir, '4']);
      const out = JSON.parse(stdout) as { classes: string[]; predictions: number[] };
      expect(out.classes).toContain('Dropout');
      expect(out.predictions).toEqual(expected);
    }
  });

  it('splits big models into 4 MiB shards and restores every weight exactly', async () => {
    const dir = path.join(root, 'alexnet8');
    const model = buildModel('alexnet8', { seed: 2 });
    await saveModel(model, dir);
    // 9,639,178 float32 = 38,556,712 bytes = 9 full shards of 4 MiB and a partial tenth.
    const shards = Array.from({ length: 10 }, (_, i) => `group1-shard${i + 1}of10.bin`);
    expect((await readdir(dir)).sort()).toEqual(['model.json', ...shards].sort());
    const sizes = await Promise.all(shards.map(async (f) => (await stat(path.join(dir, f))).size));
    expect(sizes.slice(0, 9).every((size) => size === 4 * 1024 * 1024)).toBe(true);
    expect(sizes[9]).toBe(9_639_178 * 4 - 9 * 4 * 1024 * 1024);

    const loaded = await loadModel(dir);
    const a = model.getWeights();
    const b = loaded.getWeights();
    expect(b.map((w) => w.shape)).toEqual(a.map((w) => w.shape));
    // Byte comparison: vitest's deep equality takes minutes on 4M-element arrays.
    const bytes = (t: tf.Tensor) => Buffer.from((t.dataSync() as Float32Array).buffer);
    const differing = model.weights
      .filter((_, i) => !bytes(a[i]).equals(bytes(b[i])))
      .map((w) => w.originalName);
    expect(differing).toEqual([]);
    loaded.dispose();
    model.dispose();
  });

  it('reports a missing or damaged model as a UserError naming the file', async () => {
    await expect(loadModel(path.join(root, 'nowhere'))).rejects.toThrow(UserError);
    await expect(loadModel(path.join(root, 'nowhere'))).rejects.toThrow(/nowhere\/model\.json/);

    const dir = path.join(root, 'damaged');
    const model = buildModel('lenet5', { seed: 1 });
    await saveModel(model, dir);
    model.dispose();
    await truncate(path.join(dir, 'group1-shard1of1.bin'), 1000);
    await expect(loadModel(dir)).rejects.toThrow(UserError);
    await rm(path.join(dir, 'group1-shard1of1.bin'));
    await expect(loadModel(dir)).rejects.toThrow(/weight shard .*group1-shard1of1\.bin/);
  });
});
