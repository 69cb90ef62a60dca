import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE_BYTES, type LabeledImages } from '../../src/shared/data/labeled-images.js';
import { loadDataset } from '../../src/shared/data/load-dataset.js';
import { UserError } from '../../src/shared/errors.js';
import { type SyntheticCifar, writeSyntheticCifar } from '../helpers/synthetic-cifar.js';

let root: string;
let noTest: SyntheticCifar;
let withTest: SyntheticCifar;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'load-dataset-'));
  noTest = await writeSyntheticCifar(join(root, 'no-test'), { perBatch: 20 });
  withTest = await writeSyntheticCifar(join(root, 'with-test'), { perBatch: 20, withTest: true });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Each image as a string key (the synthetic images are all distinct). */
function keys(images: LabeledImages): string[] {
  return Array.from(
    { length: images.count },
    (_, k) =>
      `${images.labels[k]}:${Buffer.from(images.pixels.subarray(k * IMAGE_BYTES, (k + 1) * IMAGE_BYTES)).toString('base64')}`,
  );
}

describe('loadDataset (cifar10)', () => {
  it('holds out a seeded validation split when there is no test batch', async () => {
    const splits = await loadDataset({
      dataset: 'cifar10',
      dataDir: noTest.dir,
      valSize: 30,
      seed: 5,
    });
    expect(splits).toMatchObject({ name: 'cifar10', valSource: 'holdout', dataDir: noTest.dir });
    expect(splits.train.count).toBe(70);
    expect(splits.val.count).toBe(30);
    const all = keys(noTest.train);
    const train = keys(splits.train);
    const val = keys(splits.val);
    // Disjoint, together everything, and each part in file order.
    expect(new Set([...train, ...val]).size).toBe(100);
    expect(all.filter((k) => train.includes(k))).toEqual(train);
    expect(all.filter((k) => val.includes(k))).toEqual(val);
    // The split is random, not the last 30 images.
    expect(val).not.toEqual(all.slice(70));
  });

  it('holds out the same images for the same seed, others for another seed', async () => {
    const load = (seed: number) =>
      loadDataset({ dataset: 'cifar10', dataDir: noTest.dir, valSize: 30, seed });
    const [a, b, c] = await Promise.all([load(5), load(5), load(6)]);
    expect(keys(b.val)).toEqual(keys(a.val));
    expect(keys(c.val)).not.toEqual(keys(a.val));
  });

  it('uses test_batch.bin as the validation split when present, and all training batches', async () => {
    const splits = await loadDataset({
      dataset: 'cifar10',
      dataDir: withTest.dir,
      valSize: 30,
      seed: 0,
    });
    expect(splits.valSource).toBe('test');
    expect(keys(splits.train)).toEqual(keys(withTest.train));
    expect(keys(splits.val)).toEqual(keys(withTest.test!));
  });

  it('rejects a holdout as large as the training set, naming --val-size', async () => {
    await expect(
      loadDataset({ dataset: 'cifar10', dataDir: noTest.dir, valSize: 100, seed: 0 }),
    ).rejects.toThrow(/--val-size 100 must be smaller than the 100 training images/);
    await expect(
      loadDataset({ dataset: 'cifar10', dataDir: noTest.dir, valSize: -1, seed: 0 }),
    ).rejects.toThrow(UserError);
  });

  it('allows an empty holdout', async () => {
    const splits = await loadDataset({
      dataset: 'cifar10',
      dataDir: noTest.dir,
      valSize: 0,
      seed: 0,
    });
    expect([splits.train.count, splits.val.count]).toEqual([100, 0]);
  });

  describe('without --data', () => {
    const saved = process.env.TFJS_DDP_CACHE_DIR;
    afterEach(() => {
      if (saved === undefined) delete process.env.TFJS_DDP_CACHE_DIR;
      else process.env.TFJS_DDP_CACHE_DIR = saved;
    });

    it('reads the cache folder $TFJS_DDP_CACHE_DIR/cifar10', async () => {
      const cache = join(root, 'cache');
      const cached = await writeSyntheticCifar(join(cache, 'cifar10'), {
        perBatch: 4,
        withTest: true,
      });
      process.env.TFJS_DDP_CACHE_DIR = cache;
      const splits = await loadDataset({ dataset: 'cifar10', valSize: 5, seed: 0 });
      expect(splits.dataDir).toBe(join(cache, 'cifar10'));
      expect(keys(splits.val)).toEqual(keys(cached.test!));
    });
  });
});

describe('loadDataset (synthetic)', () => {
  it('generates 2,000 / 500 balanced images by default, the same every time and for any seed', async () => {
    const a = await loadDataset({ dataset: 'synthetic', valSize: 5000, seed: 0 });
    const b = await loadDataset({ dataset: 'synthetic', valSize: 5000, seed: 9 });
    expect([a.train.count, a.val.count]).toEqual([2000, 500]);
    expect(a.classNames).toHaveLength(10);
    expect(a.dataDir).toBeUndefined();
    expect(Array.from(a.train.labels.slice(0, 12))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    expect(Buffer.from(b.train.pixels).equals(Buffer.from(a.train.pixels))).toBe(true);
    expect(new Set(keys(a.val)).size).toBe(500);
    const valKeys = new Set(keys(a.val));
    expect(keys(a.train).some((k) => valKeys.has(k))).toBe(false);
  });

  it('takes its size from syntheticSize and rejects nonsense sizes', async () => {
    const s = await loadDataset({
      dataset: 'synthetic',
      valSize: 0,
      seed: 0,
      syntheticSize: { train: 30, val: 10 },
    });
    expect([s.train.count, s.val.count]).toEqual([30, 10]);
    await expect(
      loadDataset({
        dataset: 'synthetic',
        valSize: 0,
        seed: 0,
        syntheticSize: { train: 0, val: 10 },
      }),
    ).rejects.toThrow(/synthetic train size/);
    await expect(
      loadDataset({ dataset: 'synthetic', dataDir: root, valSize: 0, seed: 0 }),
    ).rejects.toThrow(/cannot be used with --dataset synthetic/);
  });

  it('is learnable, and needs more than colour: hue plus stripe direction tell the classes apart', async () => {
    const { train, val } = await loadDataset({ dataset: 'synthetic', valSize: 0, seed: 0 });
    const plane = (images: LabeledImages, k: number, c: number) =>
      images.pixels.subarray(k * IMAGE_BYTES + c * 1024, k * IMAGE_BYTES + (c + 1) * 1024);
    const meanColour = (images: LabeledImages, k: number) =>
      [0, 1, 2].map((c) => plane(images, k, c).reduce((s, v) => s + v, 0) / 1024);
    /** True when neighbours along a column differ more than along a row: stripes are rows. */
    const striped = (images: LabeledImages, k: number) => {
      let across = 0;
      let down = 0;
      for (let c = 0; c < 3; c++) {
        const p = plane(images, k, c);
        for (let i = 0; i < 31 * 32; i++) {
          if (i % 32 !== 31) across += Math.abs(p[i] - p[i + 1]);
          down += Math.abs(p[i] - p[i + 32]);
        }
      }
      return down > across;
    };
    const centroids = Array.from({ length: 10 }, () => [0, 0, 0]);
    for (let k = 0; k < train.count; k++) {
      meanColour(train, k).forEach((v, c) => {
        centroids[train.labels[k]][c] += v / (train.count / 10);
      });
    }
    let byColour = 0;
    let byColourAndStripes = 0;
    for (let k = 0; k < val.count; k++) {
      const colour = meanColour(val, k);
      const dist = centroids.map((m) => m.reduce((s, v, c) => s + (v - colour[c]) ** 2, 0));
      const nearest = dist.indexOf(Math.min(...dist));
      if (nearest === val.labels[k]) byColour++;
      if ((nearest % 5) + (striped(val, k) ? 0 : 5) === val.labels[k]) byColourAndStripes++;
    }
    expect(byColour / val.count).toBeGreaterThan(0.3);
    expect(byColour / val.count).toBeLessThan(0.7);
    expect(byColourAndStripes / val.count).toBeGreaterThan(0.9);
  });
});
