import { keyedRandom } from '../keyed-random.js';
import { IMAGE_BYTES, type LabeledImages } from './labeled-images.js';

export type Preprocessing = 'scale' | 'mean-subtract' | 'standardize';

export interface BatchSpec {
  preprocessing: Preprocessing;
  augment: boolean;
  seed: number;
  epoch: number;
  /**
   * The global sample index of each batch entry, when `indices` point into a subset
   * rather than the whole training set (e.g. images served by the coordinator for one
   * batch). Augmentation is keyed by these; default: `indices` themselves.
   */
  sampleIds?: ArrayLike<number>;
}

/** `xs` holds `count` images as 32×32×3 NHWC floats; `labels[k]` is the class of image k. */
export interface Batch {
  count: number;
  xs: Float32Array;
  labels: Int32Array;
}

/**
 * The VGG study's recipe (Simonyan & Zisserman): subtract the mean RGB value on the
 * 0–255 scale (these are Caffe's ImageNet means, which the study's models use). It does
 * NOT scale afterwards: inputs stay roughly in [-124, 152].
 */
export const VGG_MEAN_RGB = [123.68, 116.779, 103.939] as const;

/**
 * Per-channel mean and standard deviation of CIFAR-10's 50,000 official training images
 * on the 0–255 scale (population statistics over every pixel of the channel; the common
 * (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616) times 255). The local copy in
 * shared/data/cifar10, partly rebuilt from JPEGs, gives 125.27/122.93/113.86 and
 * 62.59/61.93/66.49 — close enough that the official figures are used everywhere.
 */
export const CIFAR10_MEAN_RGB = [125.3069184, 122.95039455, 113.86538205] as const;
export const CIFAR10_STD_RGB = [62.99321865, 62.08870815, 66.7048992] as const;

/** Augmentation draws are keyed by (seed, epoch, sample, this), apart from dropout's keys. */
const AUGMENT_KEY = 0x41554721; // 'AUG!'
const SIDE = 32;
const PLANE = SIDE * SIDE;
const PAD = 4;

/**
 * Builds a batch from the images at `indices` (global indices into `images`, in batch
 * order): CHW bytes → NHWC floats, preprocessed per `spec.preprocessing`. With
 * `spec.augment`, each image is randomly cropped after zero padding by 4 pixels (the
 * padding is black on the 0–255 scale, as in torchvision's RandomCrop before
 * normalisation) and then flipped horizontally with probability 1/2. The draws for
 * sample i (its global index: `spec.sampleIds[k]`, else `indices[k]`) depend only on
 * (spec.seed, spec.epoch, i), never on the batch it is in or its position, so any split
 * of a global batch across workers yields the same pixels.
 * Returns new arrays owned by the caller; `images` is only read.
 */
export function buildBatch(
  images: LabeledImages,
  indices: ArrayLike<number>,
  spec: BatchSpec,
): Batch {
  const count = indices.length;
  const xs = new Float32Array(count * IMAGE_BYTES);
  const labels = new Int32Array(count);
  const { scale, shift } = channelAffine(spec.preprocessing);
  const ids = spec.sampleIds ?? indices;
  if (ids.length !== count) {
    throw new RangeError(`${ids.length} sample ids given for a batch of ${count}`);
  }
  for (let k = 0; k < count; k++) {
    const i = indices[k];
    if (!Number.isInteger(i) || i < 0 || i >= images.count) {
      throw new RangeError(`batch index ${i} at position ${k} is outside 0..${images.count - 1}`);
    }
    labels[k] = images.labels[i];
    let dx = 0;
    let dy = 0;
    let flip = false;
    if (spec.augment) {
      const random = keyedRandom(spec.seed, spec.epoch, ids[k], AUGMENT_KEY);
      dy = Math.floor(random() * (2 * PAD + 1)) - PAD;
      dx = Math.floor(random() * (2 * PAD + 1)) - PAD;
      flip = random() < 0.5;
    }
    writeImage(images.pixels, i * IMAGE_BYTES, xs, k * IMAGE_BYTES, dx, dy, flip, scale, shift);
  }
  return { count, xs, labels };
}

/**
 * Preprocessing as `value * scale[c] + shift[c]` per channel c (0 red, 1 green, 2 blue), on
 * raw 0–255 bytes. The exported model's input contract (models/input-contract.ts) states it.
 */
export function channelAffine(preprocessing: Preprocessing): { scale: number[]; shift: number[] } {
  switch (preprocessing) {
    case 'scale':
      return { scale: [1 / 255, 1 / 255, 1 / 255], shift: [0, 0, 0] };
    case 'mean-subtract':
      return { scale: [1, 1, 1], shift: VGG_MEAN_RGB.map((m) => -m) };
    case 'standardize':
      return {
        scale: CIFAR10_STD_RGB.map((s) => 1 / s),
        shift: CIFAR10_MEAN_RGB.map((m, c) => -m / CIFAR10_STD_RGB[c]),
      };
    default:
      throw new RangeError(`unknown preprocessing '${preprocessing as string}'`);
  }
}

/**
 * Writes one image: output pixel (y, x) reads source (y + dy, x' + dx) with x' = x, or
 * 31 − x when flipped; a source outside the image is padding (value 0 → shift[c]).
 * One tight loop over typed arrays; it runs for every image of every step.
 */
function writeImage(
  pixels: Uint8Array,
  src: number,
  out: Float32Array,
  dst: number,
  dx: number,
  dy: number,
  flip: boolean,
  scale: number[],
  shift: number[],
): void {
  const [s0, s1, s2] = scale;
  const [b0, b1, b2] = shift;
  let o = dst;
  for (let y = 0; y < SIDE; y++) {
    const sy = y + dy;
    if (sy < 0 || sy >= SIDE) {
      for (let x = 0; x < SIDE; x++, o += 3) {
        out[o] = b0;
        out[o + 1] = b1;
        out[o + 2] = b2;
      }
      continue;
    }
    const row = src + sy * SIDE;
    const sx0 = flip ? SIDE - 1 + dx : dx;
    const step = flip ? -1 : 1;
    for (let x = 0, sx = sx0; x < SIDE; x++, sx += step, o += 3) {
      if (sx < 0 || sx >= SIDE) {
        out[o] = b0;
        out[o + 1] = b1;
        out[o + 2] = b2;
      } else {
        const p = row + sx;
        out[o] = pixels[p] * s0 + b0;
        out[o + 1] = pixels[p + PLANE] * s1 + b1;
        out[o + 2] = pixels[p + 2 * PLANE] * s2 + b2;
      }
    }
  }
}
