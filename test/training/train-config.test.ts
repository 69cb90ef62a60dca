import { describe, expect, it } from 'vitest';
import { defaultRecipeFor, RECIPES } from '../../src/shared/config/recipes.js';
import {
  parseScheduleFlag,
  resolveTrainConfig,
  type TrainFlags,
} from '../../src/shared/config/resolve-train-config.js';
import { parseTrainConfig } from '../../src/shared/config/train-config.js';
import { MODEL_NAMES, MODEL_SPECS } from '../../src/shared/models/zoo.js';

const resolve = (flags: TrainFlags) => resolveTrainConfig(flags);

describe('recipes', () => {
  it("every model's default recipe is the one of its source in MODELS.md", () => {
    for (const model of MODEL_NAMES) {
      expect(defaultRecipeFor(model).name).toBe(MODEL_SPECS[model].source);
    }
  });

  it("the VGG study's Keras L2(1e-4) becomes weight decay 2e-4 (gradient 2λw)", () => {
    const vgg = RECIPES.find((r) => r.name === 'vgg-study');
    for (const model of vgg?.models ?? []) {
      expect(vgg?.weightDecay).toBeCloseTo(2 * MODEL_SPECS[model].l2Penalty, 12);
    }
  });

  it('every recipe is a valid configuration', () => {
    for (const recipe of RECIPES) {
      const config = resolve({ model: 'baseline', recipe: recipe.name });
      expect(config).toMatchObject({
        recipe: recipe.name,
        epochs: recipe.epochs,
        batchSize: recipe.batchSize,
        optimizer: recipe.optimizer,
        schedule: recipe.schedule,
        weightDecay: recipe.weightDecay,
        preprocessing: recipe.preprocessing,
        augment: recipe.augment,
      });
    }
  });
});

describe('resolveTrainConfig', () => {
  it('takes the model source recipe by default', () => {
    expect(resolve({ model: 'vgg11a' })).toMatchObject({
      recipe: 'vgg-study',
      batchSize: 128,
      optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9, nesterov: true },
      schedule: { kind: 'step', boundaries: [80, 140], factors: [0.5, 0.1] },
      preprocessing: 'mean-subtract',
      augment: true,
      data: { dataset: 'cifar10', valSize: 5000 },
    });
    expect(resolve({ model: 'baseline' })).toMatchObject({
      recipe: 'keras-tutorials',
      batchSize: 32,
      optimizer: { kind: 'adam', lr: 0.001 },
    });
  });

  it('lets every explicit flag override the preset', () => {
    const config = resolve({
      model: 'vgg11a',
      steps: '7',
      batchSize: '16',
      lr: '0.1',
      momentum: '0.5',
      nesterov: false,
      weightDecay: '0',
      schedule: 'cosine',
      warmupSteps: '3',
      preprocessing: 'standardize',
      augment: false,
      dataset: 'synthetic',
      valSize: '10',
      seed: '9',
    });
    expect(config).toMatchObject({
      steps: 7,
      epochs: undefined,
      batchSize: 16,
      optimizer: { kind: 'sgd', lr: 0.1, momentum: 0.5, nesterov: false },
      weightDecay: 0,
      schedule: { kind: 'cosine', minFactor: 0 },
      warmupSteps: 3,
      preprocessing: 'standardize',
      augment: false,
      data: { dataset: 'synthetic', valSize: 10 },
      seed: 9,
    });
    // Switching optimiser kind starts from that optimiser's defaults, not the recipe's.
    expect(resolve({ model: 'baseline', optimizer: 'sgd' }).optimizer).toEqual({
      kind: 'sgd',
      lr: 0.01,
      momentum: 0,
      nesterov: false,
    });
    expect(resolve({ model: 'baseline', data: '/tmp/x' }).data).toEqual({
      dataset: 'cifar10',
      dataDir: '/tmp/x',
      valSize: 5000,
    });
  });

  it.each([
    [{ batchSize: '0' }, '--batch-size: the batch size must be at least 1 (got "0")'],
    [{ batchSize: '2.5' }, '--batch-size: the batch size must be a whole number (got "2.5")'],
    [{ batchSize: 'abc' }, '--batch-size: "abc" is not a number'],
    [{ lr: '-1' }, '--lr: the learning rate must be greater than 0 (got "-1")'],
    [{ epochs: '2', steps: '3' }, '--epochs and --steps: give one of them, not both'],
    [{ recipe: 'fast' }, '--recipe: unknown recipe "fast"'],
    [{ optimizer: 'rmsprop' }, '--optimizer: unknown optimizer "rmsprop"'],
    [{ optimizer: 'sgd', momentum: '1' }, '--momentum: the momentum must be less than 1 (got "1")'],
    [{ momentum: '0.9' }, '--momentum and --nesterov apply to --optimizer sgd, not adam'],
    [{ preprocessing: 'none' }, '--preprocessing: the preprocessing must be one of'],
    [{ dataset: 'mnist' }, '--dataset: the dataset must be one of cifar10, synthetic'],
    [{ dataset: 'synthetic', data: '/x' }, '--data and --dataset synthetic'],
    [{ schedule: 'linear' }, '--schedule: unknown schedule "linear"'],
    [{ schedule: 'step:80=0.5,40=0.1' }, 'boundaries must increase'],
    [{ seed: '-1' }, '--seed: the seed must be at least 0'],
  ] as [TrainFlags, string][])('rejects %o with a message naming the flag', (flags, message) => {
    expect(() => resolve({ model: 'baseline', ...flags })).toThrow(message);
  });

  it('rejects an unknown or missing model', () => {
    expect(() => resolve({ model: 'resnet50' })).toThrow(
      /^--model: unknown model "resnet50": expected one of baseline, lenet5/,
    );
    expect(() => resolve({})).toThrow(/--model is required/);
  });
});

describe('schedule flag', () => {
  it('parses the forms of --schedule', () => {
    expect(parseScheduleFlag('constant')).toEqual({ kind: 'constant' });
    expect(parseScheduleFlag('cosine:0.1')).toEqual({ kind: 'cosine', minFactor: 0.1 });
    expect(parseScheduleFlag('step')).toEqual({
      kind: 'step',
      boundaries: [80, 140],
      factors: [0.5, 0.1],
    });
    expect(parseScheduleFlag('step:10=0.1,20=0.01')).toEqual({
      kind: 'step',
      boundaries: [10, 20],
      factors: [0.1, 0.01],
    });
  });
});

describe('parseTrainConfig', () => {
  it('round-trips a resolved configuration through JSON and rejects a damaged one', () => {
    const config = resolve({ model: 'lenet5', steps: '5' });
    const parsed = parseTrainConfig(JSON.parse(JSON.stringify(config)));
    expect(parsed).toEqual({ ok: true, config });
    const bad = parseTrainConfig({ ...config, batchSize: -3 });
    expect(bad.ok).toBe(false);
  });
});
