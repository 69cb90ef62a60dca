import { z } from 'zod';
import { BACKEND_REQUESTS } from '../backend/select-backend.js';
import { COLLECTIVE_NAMES } from '../collectives/create-collective.js';
import {
  DEFAULT_POWERSGD_RANK,
  GRAD_COMPRESSION_HELP,
  gradCompressionSchema,
} from '../collectives/grad-compression.js';
import { DATA_FROM } from '../distributed/run-settings.js';
import { MODEL_NAMES } from '../models/zoo.js';
import { decimal, oneOf, onOff, raw, text, whole } from './flag-values.js';
import { RECIPE_NAMES } from './recipes.js';
import { DATASETS, OPTIMIZER_KINDS, PREPROCESSINGS } from './train-config.js';

/**
 * Every flag of `train`, `coordinator` and `worker`, declared once: its argument, help, default,
 * environment variable (TFJS_DDP_ + the flag in UPPER_SNAKE, read by the Kubernetes manifests)
 * and the zod schema that validates the text given on the command line or in the environment.
 * src/cli/flag-options.ts turns entries into CLI options and reads them back, typed.
 *
 * The fields of the training configuration (TRAINING_FLAGS) stay text here: their defaults come
 * from the recipe and their ranges from trainConfigSchema (resolveTrainConfig names the flag).
 */
export interface FlagSpec<T = unknown> {
  /** '<n>' (required value), '[dir]' (optional value); absent: a switch. */
  arg?: string;
  description: string;
  /** Parses the given text (a switch: true, or its variable's text) into the value. */
  schema: z.ZodType<T, unknown>;
  /** Used when the flag is absent, as the user would type it. */
  default?: string;
  /** How help shows the default, when not the default itself. */
  defaultHelp?: string;
  /** The values the schema accepts, for the help (the schema refuses others). */
  choices?: readonly string[];
  required?: boolean;
  /** A switch that also has --no-<flag>. */
  negatable?: boolean;
}

/** An entry, its literal type kept (FlagValue reads `default` and `required` from it). */
const flag = <const S extends FlagSpec>(spec: S): S => spec;

export const FLAGS = {
  // The training configuration (what a checkpoint stores).
  model: flag({
    arg: '<name>',
    description: `model of the zoo: ${MODEL_NAMES.join(', ')}`,
    schema: raw(),
  }),
  recipe: flag({
    arg: '<name>',
    description: `training preset: ${RECIPE_NAMES.join(', ')} (default: the model's source)`,
    schema: raw(),
  }),
  epochs: flag({ arg: '<n>', description: 'epochs to train (default: the recipe)', schema: raw() }),
  steps: flag({ arg: '<n>', description: 'steps to train instead of epochs', schema: raw() }),
  batchSize: flag({
    arg: '<n>',
    description: 'images per step; with --workers, per worker (default: the recipe)',
    schema: raw(),
  }),
  optimizer: flag({
    arg: '<kind>',
    description: `optimiser: ${OPTIMIZER_KINDS.join(', ')}`,
    schema: raw(),
  }),
  lr: flag({ arg: '<rate>', description: 'base learning rate', schema: raw() }),
  momentum: flag({ arg: '<m>', description: 'SGD momentum, in [0, 1)', schema: raw() }),
  nesterov: flag({
    description: 'Nesterov momentum (SGD); --no-nesterov: plain momentum',
    schema: onOff(),
    negatable: true,
  }),
  weightDecay: flag({
    arg: '<lambda>',
    description: 'L2 decay: adds λ·w to the gradient of every kernel (Keras l2(c) is λ = 2c)',
    schema: raw(),
  }),
  schedule: flag({
    arg: '<spec>',
    description:
      'learning-rate schedule: constant, cosine[:MIN_FACTOR], step (80/140 epochs) or step:EPOCH=FACTOR,...',
    schema: raw(),
  }),
  warmupSteps: flag({
    arg: '<n>',
    description: 'linear learning-rate warm-up over the first n steps',
    schema: raw(),
  }),
  preprocessing: flag({
    arg: '<kind>',
    description: `input preprocessing: ${PREPROCESSINGS.join(', ')}`,
    schema: raw(),
  }),
  augment: flag({
    description: 'random 4-pixel crops and horizontal flips; --no-augment: none',
    schema: onOff(),
    negatable: true,
  }),
  data: flag({
    arg: '<dir>',
    description: 'CIFAR-10 folder in the binary layout (default: the cache)',
    schema: raw(),
  }),
  dataset: flag({
    arg: '<name>',
    description: `${DATASETS.join(' or ')} (generated, for smoke runs)`,
    schema: raw(),
  }),
  valSize: flag({
    arg: '<n>',
    description:
      'validation images held out of training when the data has no test batch (default 5000)',
    schema: raw(),
  }),
  seed: flag({
    arg: '<n>',
    description: 'seed of initial weights, data order, augmentation and dropout (default 0)',
    schema: raw(),
  }),
  evalBatchSize: flag({
    arg: '<n>',
    description: 'images per evaluation batch (default 256)',
    schema: raw(),
  }),

  // Where and how a run goes (train, coordinator).
  backend: flag({
    arg: '<name>',
    description: 'compute backend',
    schema: oneOf('backend', BACKEND_REQUESTS as readonly ['auto', ...string[]]),
    choices: BACKEND_REQUESTS,
    default: 'auto',
  }),
  out: flag({
    arg: '<dir>',
    description: 'run folder (default: a new folder under runs/)',
    schema: text(),
  }),
  checkpointEvery: flag({
    arg: '<steps>',
    description: 'checkpoint every K steps (default: every epoch); always at the end',
    schema: whole(1),
  }),
  resume: flag({
    arg: '[dir]',
    description:
      'continue the run in DIR (default: the latest under runs/), with its flags unless given again; ' +
      'auto: continue the --out folder if it holds a checkpoint, else start a run there',
    schema: z.union([z.literal(true), text()]),
  }),
  json: flag({
    description: 'print only the final summary as one JSON object on stdout',
    schema: onOff(),
  }),

  // A distributed run (train --workers, coordinator).
  globalBatchSize: flag({
    arg: '<n>',
    description:
      'images per step over all workers, split evenly (instead of --batch-size per worker)',
    schema: whole(1),
  }),
  allreduce: flag({
    arg: '<mode>',
    description: 'gradient all-reduce: ring between the workers, or star through the coordinator',
    schema: oneOf('all-reduce', COLLECTIVE_NAMES),
    choices: COLLECTIVE_NAMES,
    default: 'ring',
  }),
  gradCompression: flag({
    arg: '<kind>',
    description:
      'gradients on the wire: none (float32), bf16 or fp16 (half the bytes; fp16 scaled), ' +
      `powersgd[:RANK] (rank-RANK approximation with error feedback, default rank ${DEFAULT_POWERSGD_RANK})`,
    schema: gradCompressionSchema,
    choices: GRAD_COMPRESSION_HELP,
    default: 'none',
  }),
  bucketSizeMb: flag({
    arg: '<x>',
    description: 'gradients are all-reduced in fused buckets of this size',
    schema: decimal(0.001),
    default: '25',
  }),
  overlap: flag({
    description:
      'all-reduce each gradient bucket as soon as the backward pass has finished it, while it ' +
      'computes the earlier layers (the default); --no-overlap: after the whole backward pass',
    schema: onOff(),
    negatable: true,
    default: 'true',
  }),
  fingerprintEvery: flag({
    arg: '<k>',
    description: 'compare the replicas’ weights every K steps (0: never; always after the last)',
    schema: whole(0),
    default: '50',
  }),
  dataFrom: flag({
    arg: '<where>',
    description:
      'workers read the images from their own --data (local) or fetch them from the coordinator',
    schema: oneOf('data source', DATA_FROM as readonly ['local', 'coordinator']),
    choices: DATA_FROM,
    default: 'local',
  }),
  joinTimeout: flag({
    arg: '<s>',
    description:
      'seconds to wait for all workers to join (a worker: to reach and join the coordinator)',
    schema: decimal(1),
    default: '600',
  }),
  coordinatorGrace: flag({
    arg: '<s>',
    description:
      'a worker that lost its coordinator keeps its state and asks to rejoin for this many seconds (a coordinator pod restarting)',
    schema: decimal(0),
    default: '60',
  }),
  stepTimeout: flag({
    arg: '<s>',
    description: 'deadline in seconds of every collective and every wait (a step must fit in it)',
    schema: decimal(1),
    default: '300',
  }),
  minWorkers: flag({
    arg: '<n>',
    description:
      'below N workers the run pauses for joins, then checkpoints and ends (default: the world size)',
    schema: whole(1),
  }),
  maxWorkers: flag({
    arg: '<n>',
    description: 'a running job admits joining workers up to N (default: the world size)',
    schema: whole(1),
  }),
  maxRestarts: flag({
    arg: '<n>',
    description:
      'membership changes after lost workers before the run ends (train --workers: worker restarts)',
    schema: whole(0),
    default: '0',
  }),
  rejoinTimeout: flag({
    arg: '<s>',
    description: 'seconds a run below --min-workers waits for workers to join',
    schema: decimal(0),
    default: '60',
  }),

  // Seeing the run (train and coordinator): docs/observability.md.
  httpPort: flag({
    arg: '<port>',
    description: 'serve the live dashboard and Prometheus /metrics on this port (0: off)',
    schema: whole(0),
    default: '7080',
  }),
  httpToken: flag({
    arg: '<str>',
    description:
      'token the dashboard and /metrics ask for (coordinator: the join token by default)',
    schema: text(),
  }),
  trace: flag({
    description: 'write trace.json (Chrome trace events) into the run folder',
    schema: onOff(),
  }),
  traceSteps: flag({
    arg: '<a:b>',
    description: 'with --trace, record steps A to B only (default: 1:1000; A: for A on)',
    schema: text(),
  }),

  // train only: workers on this machine.
  workers: flag({
    arg: '<n>',
    description:
      'train with N worker processes on this machine (a coordinator here, over gRPC on 127.0.0.1)',
    schema: whole(1),
  }),
  gpus: flag({
    arg: '[list]',
    description: 'one worker per GPU: the CUDA ids to use (e.g. 0,1,2,3), or every visible GPU',
    schema: z.union([z.literal(true), text()]),
  }),
  allowOversubscribe: flag({
    description: 'allow more --workers than this machine’s cores can carry',
    schema: onOff(),
  }),

  // coordinator
  port: flag({
    arg: '<n>',
    description: 'gRPC port: coordinator service, star all-reduce, data, health, reflection',
    schema: whole(0),
    default: '7070',
  }),
  bindHost: flag({
    arg: '<addr>',
    description: 'interface to listen on',
    schema: text(),
    default: '0.0.0.0',
  }),
  worldSize: flag({
    arg: '<n>',
    // Not commander-mandatory: a resumed run has it from its run folder (checked by the command).
    description: 'number of workers (required; a resumed run keeps its own)',
    schema: whole(1),
  }),

  // worker
  coordinator: flag({
    arg: '<host:port>',
    description: 'where the coordinator listens',
    schema: z.string().regex(/^([^:\s[\]]+|\[[^\]]+\]):\d+$/, 'expected HOST:PORT'),
    required: true,
  }),
  peerPort: flag({
    arg: '<n>',
    description: 'port of this worker’s peer server for the ring (0: any free one)',
    schema: whole(0),
    default: '7071',
  }),
  advertiseHost: flag({
    arg: '<host>',
    description: 'how the other workers reach this one',
    schema: text(),
    defaultHelp: 'this machine’s hostname',
  }),
  gpu: flag({ description: 'require a GPU: fail rather than train on a CPU', schema: onOff() }),
  rank: flag({
    arg: '<n>',
    description: 'the rank to ask for (default: the lowest free one)',
    schema: whole(0),
  }),

  // coordinator and worker: who may join (values are never logged).
  token: flag({
    arg: '<str>',
    description: 'shared join token (prefer --token-file: arguments are visible to other users)',
    schema: z.string(),
  }),
  tokenFile: flag({
    arg: '<path>',
    description: 'file whose first line is the join token (a mounted Kubernetes Secret)',
    schema: z.string(),
  }),
  tlsCert: flag({
    arg: '<path>',
    description:
      'PEM certificate of this process (TLS on every gRPC connection; with --tls-key and --tls-ca)',
    schema: z.string(),
  }),
  tlsKey: flag({ arg: '<path>', description: 'PEM private key of --tls-cert', schema: z.string() }),
  tlsCa: flag({
    arg: '<path>',
    description: 'PEM certificate authority that signed every party’s certificate',
    schema: z.string(),
  }),
} as const satisfies Record<string, FlagSpec>;

export type FlagName = keyof typeof FLAGS;

/** The value of flag K after parsing: required or defaulted flags are always there. */
export type FlagValue<K extends FlagName> = (typeof FLAGS)[K] extends
  | { default: string }
  | { required: true }
  ? z.output<(typeof FLAGS)[K]['schema']>
  : z.output<(typeof FLAGS)[K]['schema']> | undefined;

export type FlagValues<K extends FlagName> = { [P in K]: FlagValue<P> };

/** '--batch-size' for 'batchSize'. */
export function flagOf(name: FlagName): string {
  return `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** 'TFJS_DDP_BATCH_SIZE' for 'batchSize': the variable that sets the flag. */
export function envOf(name: FlagName): string {
  return `TFJS_DDP_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}
