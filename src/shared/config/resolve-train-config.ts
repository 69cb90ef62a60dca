import { UserError } from '../errors.js';
import { isModelName } from '../models/zoo.js';
import {
  DEFAULT_OPTIMIZERS,
  defaultRecipeFor,
  getRecipe,
  isRecipeName,
  RECIPE_NAMES,
  VGG_STEP_SCHEDULE,
} from './recipes.js';
import {
  OPTIMIZER_KINDS,
  type OptimizerConfig,
  parseTrainConfig,
  type ScheduleConfig,
  type TrainConfig,
} from './train-config.js';

/** The training flags as commander hands them over: strings, booleans, or absent. */
export interface TrainFlags {
  model?: string;
  recipe?: string;
  epochs?: string;
  steps?: string;
  batchSize?: string;
  lr?: string;
  optimizer?: string;
  momentum?: string;
  nesterov?: boolean;
  weightDecay?: string;
  schedule?: string;
  warmupSteps?: string;
  preprocessing?: string;
  augment?: boolean;
  data?: string;
  dataset?: string;
  valSize?: string;
  seed?: string;
  evalBatchSize?: string;
}

const DEFAULT_VAL_SIZE = 5000;
const DEFAULT_SEED = 0;
const DEFAULT_EVAL_BATCH_SIZE = 256;

/** The flag that sets each field of TrainConfig, to name it in errors. */
const FLAG_OF: Record<string, string> = {
  model: '--model',
  recipe: '--recipe',
  epochs: '--epochs',
  steps: '--steps',
  batchSize: '--batch-size',
  'optimizer.lr': '--lr',
  'optimizer.momentum': '--momentum',
  'optimizer.nesterov': '--nesterov',
  warmupSteps: '--warmup-steps',
  weightDecay: '--weight-decay',
  preprocessing: '--preprocessing',
  'data.dataset': '--dataset',
  'data.dataDir': '--data',
  'data.valSize': '--val-size',
  seed: '--seed',
  evalBatchSize: '--eval-batch-size',
};

/**
 * Builds the training configuration from flags: the recipe (given, or the one of the model's
 * source) fills every field, and each flag that is present overrides its field. Throws UserError
 * naming the flag for a value that is malformed or out of range, an unknown model or recipe,
 * `--epochs` together with `--steps`, or `--data` together with `--dataset synthetic`.
 */
export function resolveTrainConfig(flags: TrainFlags): TrainConfig {
  if (flags.model === undefined) throw new UserError('--model is required (see `tfjs-ddp models`)');
  if (flags.recipe !== undefined && !isRecipeName(flags.recipe)) {
    throw new UserError(
      `--recipe: unknown recipe "${flags.recipe}": expected one of ${RECIPE_NAMES.join(', ')}`,
    );
  }
  if (flags.epochs !== undefined && flags.steps !== undefined) {
    throw new UserError('--epochs and --steps: give one of them, not both');
  }
  if (flags.data !== undefined && flags.dataset === 'synthetic') {
    throw new UserError('--data and --dataset synthetic: give one of them, not both');
  }
  const recipe = flags.recipe
    ? getRecipe(flags.recipe as (typeof RECIPE_NAMES)[number])
    : isModelName(flags.model)
      ? defaultRecipeFor(flags.model)
      : undefined;
  const candidate = {
    model: flags.model,
    recipe: recipe?.name ?? 'none',
    epochs:
      flags.steps !== undefined ? undefined : numberFlag('--epochs', flags.epochs, recipe?.epochs),
    steps: numberFlag('--steps', flags.steps),
    batchSize: numberFlag('--batch-size', flags.batchSize, recipe?.batchSize),
    optimizer: resolveOptimizer(flags, recipe?.optimizer),
    schedule:
      flags.schedule !== undefined
        ? parseScheduleFlag(flags.schedule)
        : (recipe?.schedule ?? { kind: 'constant' }),
    warmupSteps: numberFlag('--warmup-steps', flags.warmupSteps, recipe?.warmupSteps ?? 0),
    weightDecay: numberFlag('--weight-decay', flags.weightDecay, recipe?.weightDecay ?? 0),
    preprocessing: flags.preprocessing ?? recipe?.preprocessing,
    augment: flags.augment ?? recipe?.augment ?? false,
    data: {
      dataset: flags.data !== undefined ? 'cifar10' : (flags.dataset ?? 'cifar10'),
      dataDir: flags.data,
      valSize: numberFlag('--val-size', flags.valSize, DEFAULT_VAL_SIZE),
    },
    seed: numberFlag('--seed', flags.seed, DEFAULT_SEED),
    evalBatchSize: numberFlag('--eval-batch-size', flags.evalBatchSize, DEFAULT_EVAL_BATCH_SIZE),
  };
  return validated(candidate, flags);
}

/** Validates a configuration built from flags, naming the offending flag and its value. */
function validated(candidate: unknown, flags: TrainFlags): TrainConfig {
  const result = parseTrainConfig(candidate);
  if (result.ok) return result.config;
  const issue = result.issues[0];
  const flag = FLAG_OF[issue.path] ?? '--' + issue.path.replaceAll('.', '-');
  const key = flag.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  const given = (flags as Record<string, unknown>)[key];
  const got = typeof given === 'string' ? ` (got "${given}")` : '';
  throw new UserError(`${flag}: ${issue.message}${got}`);
}

function resolveOptimizer(flags: TrainFlags, fromRecipe?: OptimizerConfig): OptimizerConfig {
  if (
    flags.optimizer !== undefined &&
    !(OPTIMIZER_KINDS as readonly string[]).includes(flags.optimizer)
  ) {
    throw new UserError(
      `--optimizer: unknown optimizer "${flags.optimizer}": expected one of ${OPTIMIZER_KINDS.join(', ')}`,
    );
  }
  const kind = (flags.optimizer ?? fromRecipe?.kind ?? 'sgd') as OptimizerConfig['kind'];
  const base = fromRecipe?.kind === kind ? fromRecipe : DEFAULT_OPTIMIZERS[kind];
  const lr = numberFlag('--lr', flags.lr, base.lr);
  if (base.kind === 'adam') {
    if (flags.momentum !== undefined || flags.nesterov) {
      throw new UserError('--momentum and --nesterov apply to --optimizer sgd, not adam');
    }
    return { ...base, lr };
  }
  return {
    ...base,
    lr,
    momentum: numberFlag('--momentum', flags.momentum, base.momentum),
    nesterov: flags.nesterov ?? base.nesterov,
  };
}

/**
 * Parses `--schedule`: `constant`; `cosine` or `cosine:MIN_FACTOR`; `step` (the VGG study's
 * 80/140 preset) or `step:EPOCH=FACTOR,EPOCH=FACTOR,...` (factors of the base rate from that
 * epoch on, e.g. `step:80=0.5,140=0.1`).
 */
export function parseScheduleFlag(text: string): ScheduleConfig {
  const [kind, args] = text.split(':', 2) as [string, string | undefined];
  if (kind === 'constant' && args === undefined) return { kind: 'constant' };
  if (kind === 'cosine') {
    return { kind: 'cosine', minFactor: numberFlag('--schedule', args, 0) };
  }
  if (kind === 'step') {
    if (args === undefined) return VGG_STEP_SCHEDULE;
    const pairs = args.split(',').map((p) => p.split('='));
    if (pairs.some((p) => p.length !== 2)) {
      throw new UserError(`--schedule: expected step:EPOCH=FACTOR,... (got "${text}")`);
    }
    return {
      kind: 'step',
      boundaries: pairs.map(([e]) => numberFlag('--schedule', e)),
      factors: pairs.map(([, f]) => numberFlag('--schedule', f)),
    };
  }
  throw new UserError(
    `--schedule: unknown schedule "${text}": expected constant, cosine[:MIN_FACTOR], step or step:EPOCH=FACTOR,...`,
  );
}

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function numberFlag(flag: string, text: string): number;
function numberFlag(flag: string, text: string | undefined): number | undefined;
function numberFlag(flag: string, text: string | undefined, fallback: number): number;
function numberFlag(flag: string, text: string | undefined, fallback?: number): number | undefined;
function numberFlag(flag: string, text: string | undefined, fallback?: number): number | undefined {
  if (text === undefined) return fallback;
  if (!NUMBER.test(text.trim())) throw new UserError(`${flag}: "${text}" is not a number`);
  return Number(text);
}
