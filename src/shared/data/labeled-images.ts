/** Bytes of one image: three 32×32 planes (red, green, blue), row-major, as in CIFAR-10's binary files. */
export const IMAGE_BYTES = 3072;
/** Bytes of one record in a CIFAR-10 binary batch: 1 label byte, then the image. */
export const RECORD_BYTES = 3073;
/** The shape of one image as the models see it (NHWC without N). */
export const IMAGE_SHAPE = [32, 32, 3];

/**
 * A set of images with their labels. `pixels` holds `count × IMAGE_BYTES` bytes in the
 * official CHW plane layout (image k starts at `k * IMAGE_BYTES`); `labels[k]` is its
 * class. Treat both arrays as read-only: splits and batches may share them.
 */
export interface LabeledImages {
  readonly count: number;
  readonly labels: Uint8Array;
  readonly pixels: Uint8Array;
}

/**
 * What `loadDataset` returns. `valSource` says whether `val` is a separate test set
 * ('test': CIFAR-10's test_batch.bin, or synthetic data drawn apart from train) or a
 * seeded holdout cut out of the training batches ('holdout').
 */
export interface DatasetSplits {
  readonly name: string;
  readonly classNames: readonly string[];
  readonly train: LabeledImages;
  readonly val: LabeledImages;
  readonly valSource: 'test' | 'holdout';
  /** The folder the images were read from; absent for generated data. */
  readonly dataDir?: string;
}

/** Copies the images at `indices` (in that order) into a new, contiguous set. */
export function selectImages(images: LabeledImages, indices: ArrayLike<number>): LabeledImages {
  const count = indices.length;
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(count * IMAGE_BYTES);
  for (let k = 0; k < count; k++) {
    const i = indices[k];
    labels[k] = images.labels[i];
    pixels.set(images.pixels.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES), k * IMAGE_BYTES);
  }
  return { count, labels, pixels };
}

/** How many images of each class (index = label) the set holds. */
export function classHistogram(images: LabeledImages, classCount: number): number[] {
  const counts = new Array<number>(classCount).fill(0);
  for (const label of images.labels) counts[label]++;
  return counts;
}
