import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CIFAR10_MEAN_RGB, CIFAR10_STD_RGB } from '../../src/shared/data/batch.js';
import { CIFAR10_CLASS_NAMES } from '../../src/shared/data/cifar-binary-reader.js';
import { classHistogram } from '../../src/shared/data/labeled-images.js';
import { loadDataset } from '../../src/shared/data/load-dataset.js';

// The real training batches, where CI keeps them: ../shared/data/cifar10 beside the repo.
const DATA = fileURLToPath(new URL('../../../shared/data/cifar10', import.meta.url));
const present = existsSync(`${DATA}/data_batch_1.bin`);
const skipped = present ? '' : ` — SKIPPED: ${DATA} is absent (CI keeps the batches there)`;

describe('the real CIFAR-10 training batches', () => {
  it.skipIf(!present)(
    `reads 50,000 images, 5,000 per class, holds out 5,000${skipped}`,
    async () => {
      const splits = await loadDataset({
        dataset: 'cifar10',
        dataDir: DATA,
        valSize: 5000,
        seed: 0,
      });
      expect(splits.classNames).toEqual(CIFAR10_CLASS_NAMES);
      expect(splits.valSource).toBe('holdout');
      expect([splits.train.count, splits.val.count]).toEqual([45_000, 5_000]);
      const train = classHistogram(splits.train, 10);
      const val = classHistogram(splits.val, 10);
      expect(train.map((n, c) => n + val[c])).toEqual(new Array(10).fill(5000));
      // Official labels of the first images of data_batch_1 (frog, truck, truck, deer, automobile).
      const first = await loadDataset({ dataset: 'cifar10', dataDir: DATA, valSize: 0, seed: 0 });
      expect(Array.from(first.train.labels.subarray(0, 5))).toEqual([6, 9, 9, 4, 1]);
      // The standardisation constants (official statistics) fit this copy within 0.5 on 0–255.
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        let squares = 0;
        for (let k = 0; k < first.train.count; k++) {
          const plane = first.train.pixels.subarray(k * 3072 + c * 1024, k * 3072 + (c + 1) * 1024);
          for (const v of plane) {
            sum += v;
            squares += v * v;
          }
        }
        const n = first.train.count * 1024;
        const mean = sum / n;
        expect(mean).toBeCloseTo(CIFAR10_MEAN_RGB[c], 0);
        expect(Math.sqrt(squares / n - mean * mean)).toBeGreaterThan(CIFAR10_STD_RGB[c] - 0.5);
      }
    },
  );
});
