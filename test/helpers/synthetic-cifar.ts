import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CIFAR10_CLASS_NAMES,
  CIFAR10_META_FILE,
  CIFAR10_TEST_FILE,
  CIFAR10_TRAIN_FILES,
} from '../../src/shared/data/cifar-binary-reader.js';
import {
  IMAGE_BYTES,
  type LabeledImages,
  RECORD_BYTES,
} from '../../src/shared/data/labeled-images.js';
import { syntheticImages } from '../../src/shared/data/synthetic-images.js';

export interface SyntheticCifarOptions {
  /** Records in each of data_batch_1..5.bin. */
  perBatch: number;
  /** Also write test_batch.bin (default false). */
  withTest?: boolean;
  /** Records in test_batch.bin (default perBatch). */
  testCount?: number;
}

export interface SyntheticCifar {
  dir: string;
  /** What readCifarFolder(dir).train must return: the five batches in order. */
  train: LabeledImages;
  /** The test batch's images when withTest. */
  test?: LabeledImages;
  classNames: readonly string[];
}

/**
 * Writes a small data set in the official CIFAR-10 binary layout into `dir` (created):
 * data_batch_1..5.bin with `perBatch` records each, test_batch.bin when asked, and
 * batches.meta.txt with the official class names. The images are the learnable synthetic
 * ones (syntheticImages), so they are deterministic and a model can learn from them.
 */
export async function writeSyntheticCifar(
  dir: string,
  opts: SyntheticCifarOptions,
): Promise<SyntheticCifar> {
  await mkdir(dir, { recursive: true });
  const train = syntheticImages(5 * opts.perBatch, 0);
  for (const [b, file] of CIFAR10_TRAIN_FILES.entries()) {
    await writeFile(join(dir, file), encodeRecords(train, b * opts.perBatch, opts.perBatch));
  }
  let test: LabeledImages | undefined;
  if (opts.withTest) {
    test = syntheticImages(opts.testCount ?? opts.perBatch, 1);
    await writeFile(join(dir, CIFAR10_TEST_FILE), encodeRecords(test, 0, test.count));
  }
  await writeFile(join(dir, CIFAR10_META_FILE), `${CIFAR10_CLASS_NAMES.join('\n')}\n\n`);
  return { dir, train, test, classNames: CIFAR10_CLASS_NAMES };
}

/** Records `first..first+count-1` of `images` as CIFAR-10 binary: label byte, then 3,072 pixel bytes. */
export function encodeRecords(images: LabeledImages, first: number, count: number): Buffer {
  const out = Buffer.alloc(count * RECORD_BYTES);
  for (let k = 0; k < count; k++) {
    const i = first + k;
    out[k * RECORD_BYTES] = images.labels[i];
    out.set(images.pixels.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES), k * RECORD_BYTES + 1);
  }
  return out;
}
