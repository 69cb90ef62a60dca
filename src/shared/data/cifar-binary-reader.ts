import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { UserError } from '../errors.js';
import { log } from '../logging/logger.js';
import { IMAGE_BYTES, type LabeledImages, RECORD_BYTES } from './labeled-images.js';

export const CIFAR10_TRAIN_FILES = [1, 2, 3, 4, 5].map((n) => `data_batch_${n}.bin`);
export const CIFAR10_TEST_FILE = 'test_batch.bin';
export const CIFAR10_META_FILE = 'batches.meta.txt';
/** Records in each official batch file (five training batches and the test batch). */
export const CIFAR10_BATCH_RECORDS = 10_000;
export const CIFAR10_CLASS_NAMES: readonly string[] = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
];

/** The contents of a CIFAR-10 binary folder; `test` is absent when test_batch.bin is. */
export interface CifarFolder {
  readonly dir: string;
  readonly classNames: readonly string[];
  readonly train: LabeledImages;
  readonly test?: LabeledImages;
}

/**
 * Reads a folder in the official CIFAR-10 binary layout: data_batch_1..5.bin (required,
 * concatenated in that order into `train`), test_batch.bin (optional) and
 * batches.meta.txt (class names; the official names are used when it is missing).
 * Throws UserError naming the file when the folder or a batch is missing, a size is not
 * a positive multiple of RECORD_BYTES, or a label is outside 0–9.
 */
export async function readCifarFolder(dir: string): Promise<CifarFolder> {
  await checkCifarFolder(dir);
  const train = await readCifarBatches(CIFAR10_TRAIN_FILES.map((f) => join(dir, f)));
  const testPath = join(dir, CIFAR10_TEST_FILE);
  const test = (await exists(testPath)) ? await readCifarBatches([testPath]) : undefined;
  return { dir, classNames: await readClassNames(dir), train, test };
}

/**
 * Reads only test_batch.bin of `dir` and the class names, for evaluation, which needs no
 * training batches (a folder may hold the test batch alone). Undefined when the folder
 * has no test_batch.bin; UserError when it is unusable (as readCifarFolder).
 */
export async function readCifarTestBatch(
  dir: string,
): Promise<{ classNames: readonly string[]; test: LabeledImages } | undefined> {
  const testPath = join(dir, CIFAR10_TEST_FILE);
  if (!(await exists(testPath))) return undefined;
  return { classNames: await readClassNames(dir), test: await readCifarBatches([testPath]) };
}

/**
 * Checks without reading the records that `dir` holds the five training batches with
 * plausible sizes (and, if present, a plausible test batch). The official batches hold 10,000
 * records each, so when one training batch has that size every batch must have it; a smaller
 * copy (a subset for tests) must still have five equal training batches. A file cut or padded
 * at a record boundary is thus refused, naming it and the size expected. Throws UserError.
 */
export async function checkCifarFolder(dir: string): Promise<void> {
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) {
    throw new UserError(
      `CIFAR-10 folder ${dir} does not exist or is not a folder; it must hold ` +
        `${CIFAR10_TRAIN_FILES.join(', ')} (the official binary version)`,
    );
  }
  const counts: number[] = [];
  for (const file of CIFAR10_TRAIN_FILES) counts.push(await recordCount(join(dir, file)));
  const official = counts.includes(CIFAR10_BATCH_RECORDS);
  const expected = official ? CIFAR10_BATCH_RECORDS : mostCommon(counts);
  for (const [i, count] of counts.entries()) {
    if (count !== expected) throw wrongSize(join(dir, CIFAR10_TRAIN_FILES[i]), count, expected);
  }
  const testPath = join(dir, CIFAR10_TEST_FILE);
  if (await exists(testPath)) {
    const count = await recordCount(testPath);
    if (official && count !== CIFAR10_BATCH_RECORDS) {
      throw wrongSize(testPath, count, CIFAR10_BATCH_RECORDS);
    }
  }
}

function wrongSize(path: string, count: number, expected: number): UserError {
  const like =
    expected === CIFAR10_BATCH_RECORDS
      ? 'as every official CIFAR-10 batch'
      : 'as the other training batches of this folder';
  return new UserError(
    `${path}: ${count * RECORD_BYTES} bytes (${count} records), expected ${expected * RECORD_BYTES} ` +
      `(${expected} records, ${like}): the file was cut short or padded`,
  );
}

function mostCommon(values: readonly number[]): number {
  const tally = new Map<number, number>();
  for (const v of values) tally.set(v, (tally.get(v) ?? 0) + 1);
  return [...tally].sort((a, b) => b[1] - a[1])[0][0];
}

/** Reads binary batches and concatenates their records: one Buffer per file, one pixel array in all. */
export async function readCifarBatches(paths: readonly string[]): Promise<LabeledImages> {
  const counts: number[] = [];
  for (const path of paths) counts.push(await recordCount(path));
  const count = counts.reduce((a, b) => a + b, 0);
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(count * IMAGE_BYTES);
  let k = 0;
  for (const [f, path] of paths.entries()) {
    const bytes = await readFile(path);
    if (bytes.length !== counts[f] * RECORD_BYTES) {
      throw new UserError(`${path}: the file changed size while it was being read`);
    }
    for (let r = 0; r < counts[f]; r++, k++) {
      const offset = r * RECORD_BYTES;
      const label = bytes[offset];
      if (label > 9) {
        throw new UserError(
          `${path}: record ${r} (byte offset ${offset}) has label ${label}; CIFAR-10 labels ` +
            'are 0–9, so the file is corrupt or not CIFAR-10 binary (CIFAR-100 is not supported)',
        );
      }
      labels[k] = label;
      pixels.set(bytes.subarray(offset + 1, offset + RECORD_BYTES), k * IMAGE_BYTES);
    }
  }
  return { count, labels, pixels };
}

/** The number of records in a batch file, from its size; UserError when missing or mis-sized. */
async function recordCount(path: string): Promise<number> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new UserError(
      err.code === 'ENOENT'
        ? `${path} is missing; a CIFAR-10 folder holds ${CIFAR10_TRAIN_FILES.join(', ')} ` +
            `(and optionally ${CIFAR10_TEST_FILE})`
        : `${path} cannot be read: ${err.message}`,
    );
  });
  if (!info.isFile()) throw new UserError(`${path} is not a file`);
  if (info.size === 0) throw new UserError(`${path}: the file is empty`);
  if (info.size % RECORD_BYTES !== 0) {
    throw new UserError(
      `${path}: ${info.size} bytes is not a multiple of ${RECORD_BYTES} (record = 1 label byte + ` +
        `${IMAGE_BYTES} pixel bytes); the file is truncated or not CIFAR-10 binary`,
    );
  }
  return info.size / RECORD_BYTES;
}

async function readClassNames(dir: string): Promise<readonly string[]> {
  const path = join(dir, CIFAR10_META_FILE);
  if (!(await exists(path))) {
    log().warn(`${path} is missing; using the official CIFAR-10 class names`);
    return CIFAR10_CLASS_NAMES;
  }
  const names = (await readFile(path, 'utf8'))
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
  if (names.length !== 10) {
    throw new UserError(
      `${path}: found ${names.length} class names, expected 10 (one a line, in label order)`,
    );
  }
  return names;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}
