import { z } from 'zod';
import {
  CIFAR10_MEAN_RGB,
  CIFAR10_STD_RGB,
  channelAffine,
  type Preprocessing,
  VGG_MEAN_RGB,
} from '../data/batch.js';
import { IMAGE_SHAPE } from '../data/labeled-images.js';

/**
 * What an exported model expects as input and gives as output, written into its metadata
 * (tfjs-ddp.json, key `input` and `output`) so that someone loading model.json elsewhere, e.g.
 * with plain @tensorflow/tfjs in a browser, feeds it what it was trained on:
 * a float32 tensor [N, 32, 32, 3] (NHWC), channels in RGB order, each value
 * `(pixel - mean[c]) / std[c]` of the raw 0–255 pixel, which training computes as
 * `pixel * scale[c] + offset[c]` (both are written). docs/input-contract.md explains it.
 */
export const inputContractSchema = z.object({
  layout: z.literal('NHWC'),
  shape: z.tuple([z.null(), z.number(), z.number(), z.number()]),
  dtype: z.literal('float32'),
  channels: z.tuple([z.literal('red'), z.literal('green'), z.literal('blue')]),
  pixelRange: z.tuple([z.literal(0), z.literal(255)]),
  preprocessing: z.string(),
  formula: z.string(),
  mean: z.array(z.number()).length(3),
  std: z.array(z.number()).length(3),
  scale: z.array(z.number()).length(3),
  offset: z.array(z.number()).length(3),
});
export type InputContract = z.infer<typeof inputContractSchema>;

export const outputContractSchema = z.object({
  shape: z.tuple([z.null(), z.number()]),
  meaning: z.string(),
});
export type OutputContract = z.infer<typeof outputContractSchema>;

/** Per preprocessing: mean and std per channel (RGB) on the 0–255 scale, and where they come from. */
const NORMALISATIONS: Record<Preprocessing, { mean: number[]; std: number[]; source: string }> = {
  scale: { mean: [0, 0, 0], std: [255, 255, 255], source: 'pixel / 255, into [0, 1]' },
  'mean-subtract': {
    mean: [...VGG_MEAN_RGB],
    std: [1, 1, 1],
    source: 'VGG (Caffe ImageNet) mean RGB subtracted, not scaled',
  },
  standardize: {
    mean: [...CIFAR10_MEAN_RGB],
    std: [...CIFAR10_STD_RGB],
    source: 'CIFAR-10 training-set mean and std per channel',
  },
};

/** The input contract of a model trained with `preprocessing`: the same affine map as buildBatch. */
export function inputContract(preprocessing: Preprocessing): InputContract {
  const { scale, shift } = channelAffine(preprocessing);
  const { mean, std, source } = NORMALISATIONS[preprocessing];
  const [height, width, channels] = IMAGE_SHAPE;
  return {
    layout: 'NHWC',
    shape: [null, height, width, channels],
    dtype: 'float32',
    channels: ['red', 'green', 'blue'],
    pixelRange: [0, 255],
    preprocessing,
    formula: `input[n, h, w, c] = (pixel[n, h, w, c] - mean[c]) / std[c] (${source})`,
    mean,
    std,
    scale,
    offset: shift,
  };
}

/** Every model of the zoo ends with a softmax over the classes, in the order of `classNames`. */
export function outputContract(classCount: number): OutputContract {
  return {
    shape: [null, classCount],
    meaning: 'class probabilities (softmax), in the order of classNames',
  };
}
