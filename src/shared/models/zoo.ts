import type * as tfl from '@tensorflow/tfjs-layers';
import { UserError } from '../errors.js';
import type { KernelInitializer, WeightInit } from './layer-builder.js';
import { buildResnet18, buildResnet34k } from './resnet-models.js';
import { buildAlexnet8, buildBaseline, buildLenet5, buildVgg16 } from './tutorial-models.js';
import { buildVggStudy } from './vgg-study-models.js';

export {
  architectureFingerprint,
  countParams,
  logitsModel,
  type ParamCounts,
} from './model-info.js';

export const MODEL_NAMES = [
  'baseline',
  'lenet5',
  'alexnet8',
  'vgg16',
  'resnet18',
  'vgg11a',
  'vgg13b',
  'vgg16c',
  'vgg16d',
  'vgg19e',
  'resnet34k',
] as const;

export type ModelName = (typeof MODEL_NAMES)[number];

/** Where a model comes from (MODELS.md): the recipe that trains it is chosen by this. */
export type ModelSource = 'keras-tutorials' | 'vgg-study' | 'keras-resnet';

export interface ModelSpec {
  readonly source: ModelSource;
  readonly kernelInitializer: KernelInitializer;
  /**
   * The source's L2 penalty factor λ on every Conv2D and Dense kernel (the weights named
   * `<layer>/kernel`), as Keras's `kernel_regularizer=l2(λ)`: it adds λ·Σw² to the loss, i.e.
   * 2λ·w to the gradient. 0 when the source has none. The layers do not apply it; the
   * training step does.
   */
  readonly l2Penalty: number;
}

const TUTORIAL: ModelSpec = {
  source: 'keras-tutorials',
  kernelInitializer: 'glorot_uniform',
  l2Penalty: 0,
};
const VGG_STUDY: ModelSpec = {
  source: 'vgg-study',
  kernelInitializer: 'he_normal',
  l2Penalty: 1e-4,
};

export const MODEL_SPECS: Readonly<Record<ModelName, ModelSpec>> = {
  baseline: TUTORIAL,
  lenet5: TUTORIAL,
  alexnet8: TUTORIAL,
  vgg16: TUTORIAL,
  resnet18: TUTORIAL,
  vgg11a: VGG_STUDY,
  vgg13b: VGG_STUDY,
  vgg16c: VGG_STUDY,
  vgg16d: VGG_STUDY,
  vgg19e: VGG_STUDY,
  resnet34k: { source: 'keras-resnet', kernelInitializer: 'glorot_uniform', l2Penalty: 0 },
};

export function isModelName(s: string): s is ModelName {
  return (MODEL_NAMES as readonly string[]).includes(s);
}

/** Checks a user-given model name; throws UserError naming the flag and the valid names. */
export function parseModelName(s: string, flag = '--model'): ModelName {
  if (!isModelName(s)) {
    throw new UserError(`${flag}: unknown model "${s}"; valid names: ${MODEL_NAMES.join(', ')}`);
  }
  return s;
}

/**
 * Builds a zoo model (MODELS.md): NHWC input [n, 32, 32, 3], output [n, 10] probabilities from
 * a last Activation('softmax') layer named 'probs'. Weights are initialised deterministically from
 * `opts.seed` (same seed, same weights, on any backend: tfjs draws initial values in JS).
 * The caller owns the model and disposes it (`model.dispose()`).
 */
export function buildModel(name: ModelName, opts: { seed: number }): tfl.LayersModel {
  return build(name, { seed: opts.seed });
}

/**
 * The same layers, weight shapes and parameter counts as buildModel(name), but with all-zero
 * kernels, which builds the he_normal-initialised VGG-study models many times faster: for
 * counting parameters, never for training. The caller disposes the model.
 */
export function buildArchitecture(name: ModelName): tfl.LayersModel {
  return build(name, 'zeros');
}

function build(name: ModelName, init: WeightInit): tfl.LayersModel {
  switch (name) {
    case 'baseline':
      return buildBaseline(init);
    case 'lenet5':
      return buildLenet5(init);
    case 'alexnet8':
      return buildAlexnet8(init);
    case 'vgg16':
      return buildVgg16(init);
    case 'resnet18':
      return buildResnet18(init);
    case 'resnet34k':
      return buildResnet34k(init);
    default:
      return buildVggStudy(name, init);
  }
}
