import { resolve } from 'node:path';
import { UserError } from '../errors.js';
import { log } from '../logging/logger.js';
import { cifar10CacheDir } from './cache-dir.js';
import { CIFAR10_TEST_FILE, readCifarFolder, readCifarTestBatch } from './cifar-binary-reader.js';
import { downloadCifar10, folderProblem } from './cifar10-download.js';
import { type DatasetSplits, type LabeledImages, selectImages } from './labeled-images.js';
import { keyedPermutation } from './permutation.js';
import { SYNTHETIC_CLASS_NAMES, syntheticImages } from './synthetic-images.js';

export interface DatasetOptions {
  dataset: 'cifar10' | 'synthetic';
  /** A folder in the CIFAR-10 binary layout; default: the cache, downloading on first use. */
  dataDir?: string;
  /** Size of the validation holdout when the folder has no test_batch.bin (CIFAR-10 only). */
  valSize: number;
  /** Chooses the holdout; the same seed always holds out the same images. */
  seed: number;
  /** Sizes of the generated data set (dataset 'synthetic'); default DEFAULT_SYNTHETIC_SIZE. */
  syntheticSize?: { train: number; val: number };
}

export const DATASET_NAMES = ['cifar10', 'synthetic'] as const;
export const DEFAULT_VAL_SIZE = 5000;
export const DEFAULT_SYNTHETIC_SIZE = { train: 2000, val: 500 } as const;

/** Keeps the holdout's stream apart from the epoch permutations drawn from the same seed. */
const HOLDOUT_KEY = 0x484f4c44; // 'HOLD'

/**
 * Loads the training and validation splits.
 * - 'cifar10': from `dataDir`, or from the cache folder (see cifar10CacheDir), which is
 *   downloaded on first use. The validation split is test_batch.bin when the folder has
 *   it (valSource 'test'); otherwise `valSize` images of the training batches chosen by
 *   `seed` (valSource 'holdout'), both splits kept in file order.
 * - 'synthetic': generated in memory (see syntheticImages), fixed for any seed.
 * Throws UserError for unusable folders, sizes or a failed download, saying what to do.
 */
export async function loadDataset(opts: DatasetOptions): Promise<DatasetSplits> {
  if (!Number.isInteger(opts.valSize) || opts.valSize < 0) {
    throw new UserError(`--val-size must be a whole number ≥ 0, got ${opts.valSize}`);
  }
  if (opts.dataset === 'synthetic') return syntheticSplits(opts);
  if (opts.dataset !== 'cifar10') {
    throw new UserError(
      `--dataset must be one of ${DATASET_NAMES.join(', ')}, got '${opts.dataset}'`,
    );
  }
  const dir = opts.dataDir !== undefined ? resolve(opts.dataDir) : await cachedCifar10();
  const folder = await readCifarFolder(dir);
  const common = { name: 'cifar10', classNames: folder.classNames, dataDir: dir };
  if (folder.test !== undefined) {
    return { ...common, train: folder.train, val: folder.test, valSource: 'test' };
  }
  if (opts.valSize >= folder.train.count) {
    throw new UserError(
      `--val-size ${opts.valSize} must be smaller than the ${folder.train.count} training ` +
        `images in ${dir} (it has no ${CIFAR10_TEST_FILE}, so validation is held out of them)`,
    );
  }
  return {
    ...common,
    ...holdoutSplit(folder.train, opts.valSize, opts.seed),
    valSource: 'holdout',
  };
}

/**
 * The images `eval` measures a model on: the validation split of loadDataset(opts). For a
 * CIFAR-10 folder with test_batch.bin that split is the test batch, read alone, so a folder
 * holding only test_batch.bin (and optionally batches.meta.txt) is enough.
 */
export async function loadEvaluationSet(
  opts: DatasetOptions,
): Promise<{ classNames: readonly string[]; images: LabeledImages }> {
  if (opts.dataset === 'cifar10' && opts.dataDir !== undefined) {
    const testOnly = await readCifarTestBatch(resolve(opts.dataDir));
    if (testOnly) return { classNames: testOnly.classNames, images: testOnly.test };
  }
  const splits = await loadDataset(opts);
  return { classNames: splits.classNames, images: splits.val };
}

/** Splits off `valSize` images chosen by `seed`; both parts keep the original order. */
function holdoutSplit(
  all: LabeledImages,
  valSize: number,
  seed: number,
): { train: LabeledImages; val: LabeledImages } {
  const order = keyedPermutation(all.count, seed, HOLDOUT_KEY);
  const cut = all.count - valSize;
  return {
    train: selectImages(all, order.slice(0, cut).sort()),
    val: selectImages(all, order.slice(cut).sort()),
  };
}

function syntheticSplits(opts: DatasetOptions): DatasetSplits {
  if (opts.dataDir !== undefined) {
    throw new UserError(`--data ${opts.dataDir} cannot be used with --dataset synthetic`);
  }
  const size = opts.syntheticSize ?? DEFAULT_SYNTHETIC_SIZE;
  for (const [split, n] of Object.entries(size)) {
    if (!Number.isInteger(n) || n < 1) {
      throw new UserError(`synthetic ${split} size must be a whole number ≥ 1, got ${n}`);
    }
  }
  return {
    name: 'synthetic',
    classNames: SYNTHETIC_CLASS_NAMES,
    train: syntheticImages(size.train, 0),
    val: syntheticImages(size.val, 1),
    valSource: 'test',
  };
}

/** The cache folder, downloaded into when incomplete; download failures say how to avoid it. */
async function cachedCifar10(): Promise<string> {
  const dir = cifar10CacheDir();
  const problem = await folderProblem(dir);
  if (problem === undefined) return dir;
  log().info(`CIFAR-10 is not in the cache (${dir}); downloading it once`);
  try {
    return (await downloadCifar10({ dir })).dir;
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    throw new UserError(
      `CIFAR-10 is not in ${dir} and could not be downloaded: ${err.message}. ` +
        'Without internet access, point --data at a local copy of the binary batches ' +
        '(e.g. --data ../shared/data/cifar10), or use --dataset synthetic',
    );
  }
}
