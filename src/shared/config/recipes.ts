import type { Preprocessing } from '../data/batch.js';
import type { ModelName } from '../models/zoo.js';
import type { OptimizerConfig, ScheduleConfig } from './train-config.js';

/**
 * Training recipes: one preset per source in MODELS.md. A recipe fills every training setting;
 * flags given explicitly override it (resolve-train-config.ts).
 *
 * Weight decay here is λ in "add λ·w to the gradient" (PyTorch's and the AlexNet paper's
 * convention). Keras' `l2(c)` regulariser adds c·Σw² to the loss, whose gradient is 2c·w, so
 * the VGG study's L2 penalty of 1e-4 is a weight decay of 2e-4 here.
 */
export const RECIPE_NAMES = [
  'keras-tutorials',
  'vgg-study',
  'keras-resnet',
  'alexnet-paper',
] as const;
export type RecipeName = (typeof RECIPE_NAMES)[number];

export interface Recipe {
  readonly name: RecipeName;
  /** Where it comes from, for `--help` and the run's config. */
  readonly source: string;
  /** The models this recipe is the default for (every model has exactly one). */
  readonly models: readonly ModelName[];
  readonly epochs: number;
  readonly batchSize: number;
  readonly optimizer: OptimizerConfig;
  readonly schedule: ScheduleConfig;
  readonly warmupSteps: number;
  readonly weightDecay: number;
  readonly preprocessing: Preprocessing;
  readonly augment: boolean;
}

/** Keras' Adam defaults (its epsilon is 1e-7, PyTorch's 1e-8). */
const KERAS_ADAM: OptimizerConfig = {
  kind: 'adam',
  lr: 0.001,
  beta1: 0.9,
  beta2: 0.999,
  epsilon: 1e-7,
};

/** What an optimiser starts from when a flag switches to a kind the recipe does not use. */
export const DEFAULT_OPTIMIZERS: Readonly<Record<OptimizerConfig['kind'], OptimizerConfig>> = {
  sgd: { kind: 'sgd', lr: 0.01, momentum: 0, nesterov: false },
  adam: KERAS_ADAM,
};

/** The VGG study's learning rate: 0.01 until epoch 80, 0.005 until 140, then 0.001. */
export const VGG_STEP_SCHEDULE: ScheduleConfig = {
  kind: 'step',
  boundaries: [80, 140],
  factors: [0.5, 0.1],
};

export const RECIPES: readonly Recipe[] = [
  {
    name: 'keras-tutorials',
    source: 'the Keras tutorial set (Adam, batch 32, inputs scaled to [0,1])',
    models: ['baseline', 'lenet5', 'alexnet8', 'vgg16', 'resnet18'],
    epochs: 10,
    batchSize: 32,
    optimizer: KERAS_ADAM,
    schedule: { kind: 'constant' },
    warmupSteps: 0,
    weightDecay: 0,
    preprocessing: 'scale',
    augment: false,
  },
  {
    name: 'vgg-study',
    source: 'the VGG-on-CIFAR-10 study (SGD + Nesterov, batch 128, 200 epochs, 80/140 steps)',
    models: ['vgg11a', 'vgg13b', 'vgg16c', 'vgg16d', 'vgg19e'],
    epochs: 200,
    batchSize: 128,
    optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9, nesterov: true },
    schedule: VGG_STEP_SCHEDULE,
    warmupSteps: 0,
    weightDecay: 2e-4,
    preprocessing: 'mean-subtract',
    augment: true,
  },
  {
    name: 'keras-resnet',
    source: 'the Keras functional ResNet (Adam, batch 64, 50 epochs)',
    models: ['resnet34k'],
    epochs: 50,
    batchSize: 64,
    optimizer: KERAS_ADAM,
    schedule: { kind: 'constant' },
    warmupSteps: 0,
    weightDecay: 0,
    preprocessing: 'scale',
    augment: false,
  },
  {
    // The paper divides the rate by 10 whenever validation error stops improving, three times
    // in ~90 epochs. Here the drops are at fixed epochs: the rate must be a pure function of
    // the step so that every replica and every resumed run agrees on it without extra traffic.
    name: 'alexnet-paper',
    source: 'the AlexNet paper (SGD, momentum 0.9, weight decay 5e-4, batch 128, /10 three times)',
    models: [],
    epochs: 90,
    batchSize: 128,
    optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9, nesterov: false },
    schedule: { kind: 'step', boundaries: [30, 60, 80], factors: [0.1, 0.01, 0.001] },
    warmupSteps: 0,
    weightDecay: 5e-4,
    preprocessing: 'mean-subtract',
    augment: true,
  },
];

export function isRecipeName(s: string): s is RecipeName {
  return (RECIPE_NAMES as readonly string[]).includes(s);
}

export function getRecipe(name: RecipeName): Recipe {
  const recipe = RECIPES.find((r) => r.name === name);
  if (!recipe) throw new Error(`no recipe named ${name}`);
  return recipe;
}

/** The recipe of the source a model comes from (MODELS.md). */
export function defaultRecipeFor(model: ModelName): Recipe {
  return RECIPES.find((r) => r.models.includes(model)) ?? RECIPES[0];
}
