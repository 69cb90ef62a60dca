import type { TrainConfig } from '../config/train-config.js';
import { type Batch, buildBatch } from './batch.js';
import type { DatasetSplits, LabeledImages } from './labeled-images.js';

/** Where a replica's samples come from: data in this process, or fetched from the coordinator. */
export interface SampleSource {
  /**
   * The training batch of `indices` (global indices into the training split) in `epoch`,
   * augmented by global index, so that it does not matter which rank builds it.
   */
  trainBatch(indices: readonly number[], epoch: number): Promise<Batch>;
  /** Validation images to evaluate: `indices` of `images`, or all of them when absent. */
  evalImages(
    indices: readonly number[],
  ): Promise<{ images: LabeledImages; indices?: readonly number[] }>;
}

/** Samples of splits already in memory (a worker's own copy, or the coordinator's). */
export function inMemorySamples(data: DatasetSplits, train: TrainConfig): SampleSource {
  return {
    trainBatch: async (indices, epoch) => buildBatch(data.train, indices, batchSpec(train, epoch)),
    evalImages: async (indices) => ({ images: data.val, indices }),
  };
}

/** How `train` builds the batches of `epoch` (preprocessing, augmentation keyed by seed). */
export function batchSpec(train: TrainConfig, epoch: number) {
  const { preprocessing, augment, seed } = train;
  return { preprocessing, augment, seed, epoch };
}
