import { z } from 'zod';
import { isModelName, MODEL_NAMES, type ModelName } from '../models/zoo.js';

/**
 * The training configuration: everything that decides the maths of a run (which model, which
 * samples in which order, which optimiser and learning rate at every step). It is what a
 * checkpoint stores and what the coordinator hands to every worker, so it is plain JSON and
 * validated by one schema, here. Where the process runs (backend, run folder, output format)
 * is not part of it.
 */

export const OPTIMIZER_KINDS = ['sgd', 'adam'] as const;
export const PREPROCESSINGS = ['scale', 'mean-subtract', 'standardize'] as const;
export const DATASETS = ['cifar10', 'synthetic'] as const;

const positive = (what: string) =>
  z.number({ error: `${what} must be a number` }).positive(`${what} must be greater than 0`);
const fraction = (what: string) =>
  z
    .number({ error: `${what} must be a number` })
    .min(0, `${what} must be at least 0`)
    .lt(1, `${what} must be less than 1`);
const count = (what: string, min: number) =>
  z
    .number({ error: `${what} must be a number` })
    .int(`${what} must be a whole number`)
    .min(min, `${what} must be at least ${min}`)
    .max(2 ** 31 - 1, `${what} is too large`);

export const sgdConfigSchema = z
  .object({
    kind: z.literal('sgd'),
    lr: positive('the learning rate'),
    momentum: fraction('the momentum'),
    nesterov: z.boolean(),
  })
  .refine((o) => !o.nesterov || o.momentum > 0, {
    error: 'Nesterov momentum needs a momentum greater than 0',
    path: ['nesterov'],
  });

export const adamConfigSchema = z.object({
  kind: z.literal('adam'),
  lr: positive('the learning rate'),
  beta1: fraction('beta1'),
  beta2: fraction('beta2'),
  epsilon: positive('epsilon'),
});

export const optimizerConfigSchema = z.discriminatedUnion('kind', [
  sgdConfigSchema,
  adamConfigSchema,
]);

/**
 * The learning-rate curve, as a factor of the optimiser's base rate (so `--lr` rescales a
 * recipe's curve). `step`: the factor changes to factors[i] once epoch boundaries[i] is reached.
 * `cosine`: from 1 down to minFactor over the run's total steps.
 */
export const scheduleConfigSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('constant') }),
  z
    .object({
      kind: z.literal('step'),
      boundaries: z.array(positive('a step-schedule boundary')).min(1),
      factors: z.array(positive('a step-schedule factor')).min(1),
    })
    .refine((s) => s.boundaries.length === s.factors.length, {
      error: 'a step schedule needs one factor per boundary',
    })
    .refine((s) => s.boundaries.every((b, i) => i === 0 || b > s.boundaries[i - 1]), {
      error: 'step-schedule boundaries must increase',
    }),
  z.object({ kind: z.literal('cosine'), minFactor: z.number().min(0).max(1) }),
]);

export const dataConfigSchema = z.object({
  dataset: z.enum(DATASETS, { error: `the dataset must be one of ${DATASETS.join(', ')}` }),
  /** The CIFAR-10 folder; absent: the cache folder (downloaded on first use). */
  dataDir: z.string().min(1).optional(),
  valSize: count('the validation size', 0),
});

export const trainConfigSchema = z
  .object({
    model: z.string().refine(isModelName, {
      error: (iss) =>
        `unknown model "${String(iss.input)}": expected one of ${MODEL_NAMES.join(', ')}`,
    }),
    recipe: z.string(),
    /** Exactly one of epochs and steps says how long the run is. */
    epochs: count('the number of epochs', 1).optional(),
    steps: count('the number of steps', 1).optional(),
    batchSize: count('the batch size', 1).max(65536, 'the batch size must be at most 65536'),
    optimizer: optimizerConfigSchema,
    schedule: scheduleConfigSchema,
    warmupSteps: count('the number of warm-up steps', 0),
    /** L2 decay λ, added as λ·w to the mean gradient of every kernel (see train-step.ts). */
    weightDecay: z.number().min(0, 'the weight decay must be at least 0'),
    preprocessing: z.enum(PREPROCESSINGS, {
      error: `the preprocessing must be one of ${PREPROCESSINGS.join(', ')}`,
    }),
    augment: z.boolean(),
    data: dataConfigSchema,
    seed: count('the seed', 0).max(2 ** 32 - 1, 'the seed must be below 2^32'),
    evalBatchSize: count('the evaluation batch size', 1),
  })
  .refine((c) => (c.epochs === undefined) !== (c.steps === undefined), {
    error: 'give either a number of epochs or a number of steps, not both (nor neither)',
    path: ['epochs'],
  });

export type OptimizerConfig = z.infer<typeof optimizerConfigSchema>;
export type ScheduleConfig = z.infer<typeof scheduleConfigSchema>;
export type DataConfig = z.infer<typeof dataConfigSchema>;
export type TrainConfig = Omit<z.infer<typeof trainConfigSchema>, 'model'> & { model: ModelName };

/**
 * Validates a configuration (from flags, a checkpoint or config.json). Returns the issues as
 * `{ path, message }` rather than throwing, so each caller can name its own source (a flag, a
 * file) in the error it raises.
 */
export function parseTrainConfig(
  value: unknown,
): { ok: true; config: TrainConfig } | { ok: false; issues: { path: string; message: string }[] } {
  const result = trainConfigSchema.safeParse(value);
  if (result.success) return { ok: true, config: result.data as TrainConfig };
  return {
    ok: false,
    issues: result.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
  };
}
