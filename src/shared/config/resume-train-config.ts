import { UserError } from '../errors.js';
import { parseScheduleFlag, type TrainFlags } from './resolve-train-config.js';
import { parseTrainConfig, type TrainConfig } from './train-config.js';

/**
 * What each training flag sets in a configuration, to compare a flag given with --resume against
 * the resumed run's value. Flags absent here may change on resume: --epochs, --steps (the run's
 * length), --data (where the same data lives now) and --eval-batch-size.
 */
const SETS: Partial<Record<keyof TrainFlags, [string, (c: TrainConfig) => unknown]>> = {
  model: ['--model', (c) => c.model],
  recipe: ['--recipe', (c) => c.recipe],
  batchSize: ['--batch-size', (c) => c.batchSize],
  lr: ['--lr', (c) => c.optimizer.lr],
  optimizer: ['--optimizer', (c) => c.optimizer.kind],
  momentum: ['--momentum', (c) => (c.optimizer.kind === 'sgd' ? c.optimizer.momentum : undefined)],
  nesterov: ['--nesterov', (c) => (c.optimizer.kind === 'sgd' ? c.optimizer.nesterov : undefined)],
  weightDecay: ['--weight-decay', (c) => c.weightDecay],
  schedule: ['--schedule', (c) => JSON.stringify(c.schedule)],
  warmupSteps: ['--warmup-steps', (c) => c.warmupSteps],
  preprocessing: ['--preprocessing', (c) => c.preprocessing],
  augment: ['--augment', (c) => c.augment],
  dataset: ['--dataset', (c) => c.data.dataset],
  valSize: ['--val-size', (c) => c.data.valSize],
  seed: ['--seed', (c) => c.seed],
};

/**
 * The configuration of a resumed run: the one stored in its checkpoint (validated; `source`
 * names the file in errors), with a new length (--epochs/--steps) or data folder (--data) when
 * given. Any other flag must repeat the stored value: a resumed run continues its schedule, so
 * a different batch size, rate or seed is refused (start a new run for that).
 */
export function resumeTrainConfig(stored: unknown, flags: TrainFlags, source: string): TrainConfig {
  const parsed = parseTrainConfig(stored);
  if (!parsed.ok) {
    const issue = parsed.issues[0];
    throw new UserError(
      `${source}: the stored configuration is invalid: ${issue.path}: ${issue.message}`,
    );
  }
  const config = parsed.config;
  for (const [key, [flag, get]] of Object.entries(SETS) as [
    keyof TrainFlags,
    [string, (c: TrainConfig) => unknown],
  ][]) {
    const given = flags[key];
    if (given === undefined) continue;
    const value =
      key === 'schedule'
        ? JSON.stringify(parseScheduleFlag(String(given)))
        : typeof given === 'string' && typeof get(config) === 'number'
          ? Number(given)
          : given;
    if (value !== get(config)) {
      throw new UserError(
        `${flag} ${String(given)} differs from the resumed run's ${String(get(config))}: ` +
          'a resumed run keeps its configuration (only --epochs, --steps and --data may change)',
      );
    }
  }
  if (flags.epochs !== undefined && flags.steps !== undefined) {
    throw new UserError('--epochs and --steps: give one of them, not both');
  }
  const next: TrainConfig = { ...config, data: { ...config.data } };
  if (flags.epochs !== undefined)
    Object.assign(next, { epochs: Number(flags.epochs), steps: undefined });
  if (flags.steps !== undefined)
    Object.assign(next, { steps: Number(flags.steps), epochs: undefined });
  if (flags.data !== undefined) next.data.dataDir = flags.data;
  if (flags.evalBatchSize !== undefined) next.evalBatchSize = Number(flags.evalBatchSize);
  const checked = parseTrainConfig(JSON.parse(JSON.stringify(next)));
  if (!checked.ok) throw new UserError(`--${checked.issues[0].path}: ${checked.issues[0].message}`);
  return checked.config;
}
