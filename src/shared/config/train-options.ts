import { type Command, Option } from 'commander';
import { MODEL_NAMES } from '../models/zoo.js';
import { RECIPE_NAMES } from './recipes.js';
import { DATASETS, OPTIMIZER_KINDS, PREPROCESSINGS } from './train-config.js';

/**
 * Adds the flags that make up a TrainConfig (see resolveTrainConfig) to a command, each also
 * settable by an environment variable TFJS_DDP_<FLAG> (for `coordinator` in Kubernetes). Values
 * stay strings here and are validated in one place, resolveTrainConfig, so that every error
 * names its flag the same way. The command's opts() are then a TrainFlags.
 */
export function addTrainingOptions(command: Command): Command {
  const option = (flags: string, description: string, env: string) =>
    command.addOption(new Option(flags, description).env(`TFJS_DDP_${env}`));
  option('--model <name>', `model of the zoo: ${MODEL_NAMES.join(', ')}`, 'MODEL');
  option(
    '--recipe <name>',
    `training preset: ${RECIPE_NAMES.join(', ')} (default: the model's source)`,
    'RECIPE',
  );
  option('--epochs <n>', 'epochs to train (default: the recipe)', 'EPOCHS');
  option('--steps <n>', 'steps to train instead of epochs', 'STEPS');
  option('--batch-size <n>', 'images per step (default: the recipe)', 'BATCH_SIZE');
  option('--optimizer <kind>', `optimiser: ${OPTIMIZER_KINDS.join(', ')}`, 'OPTIMIZER');
  option('--lr <rate>', 'base learning rate', 'LR');
  option('--momentum <m>', 'SGD momentum, in [0, 1)', 'MOMENTUM');
  option('--nesterov', 'Nesterov momentum (SGD)', 'NESTEROV');
  option('--no-nesterov', 'plain momentum (SGD)', 'NO_NESTEROV');
  option(
    '--weight-decay <lambda>',
    'L2 decay: adds λ·w to the gradient of every kernel (Keras l2(c) is λ = 2c)',
    'WEIGHT_DECAY',
  );
  option(
    '--schedule <spec>',
    'learning-rate schedule: constant, cosine[:MIN_FACTOR], step (80/140 epochs) or step:EPOCH=FACTOR,...',
    'SCHEDULE',
  );
  option(
    '--warmup-steps <n>',
    'linear learning-rate warm-up over the first n steps',
    'WARMUP_STEPS',
  );
  option(
    '--preprocessing <kind>',
    `input preprocessing: ${PREPROCESSINGS.join(', ')}`,
    'PREPROCESSING',
  );
  option('--augment', 'random 4-pixel crops and horizontal flips', 'AUGMENT');
  option('--no-augment', 'no augmentation', 'NO_AUGMENT');
  option('--data <dir>', 'CIFAR-10 folder in the binary layout (default: the cache)', 'DATA');
  option('--dataset <name>', `${DATASETS.join(' or ')} (generated, for smoke runs)`, 'DATASET');
  option(
    '--val-size <n>',
    'validation images held out of training when the data has no test batch (default 5000)',
    'VAL_SIZE',
  );
  option(
    '--seed <n>',
    'seed of initial weights, data order, augmentation and dropout (default 0)',
    'SEED',
  );
  option('--eval-batch-size <n>', 'images per evaluation batch (default 256)', 'EVAL_BATCH_SIZE');
  return command;
}
