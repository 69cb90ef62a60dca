import type { FlagName } from './flags.js';

// Which flags of the schema (src/shared/config/flags.ts) each command takes, by group.

/** The fields of the training configuration (resolveTrainConfig's TrainFlags). */
export const TRAINING_FLAGS = [
  'model',
  'recipe',
  'epochs',
  'steps',
  'batchSize',
  'optimizer',
  'lr',
  'momentum',
  'nesterov',
  'weightDecay',
  'schedule',
  'warmupSteps',
  'preprocessing',
  'augment',
  'data',
  'dataset',
  'valSize',
  'seed',
  'evalBatchSize',
] as const satisfies readonly FlagName[];

/** How a run is carried out and kept: train and coordinator. */
export const RUN_FLAGS = ['backend', 'out', 'checkpointEvery', 'resume', 'json'] as const;

/** The shape of a distributed run: train --workers and coordinator. */
export const DISTRIBUTED_FLAGS = [
  'globalBatchSize',
  'allreduce',
  'gradCompression',
  'bucketSizeMb',
  'overlap',
  'fingerprintEvery',
  'dataFrom',
  'joinTimeout',
  'stepTimeout',
  'minWorkers',
  'maxWorkers',
  'maxRestarts',
  'rejoinTimeout',
] as const satisfies readonly FlagName[];

export const LAUNCH_FLAGS = ['workers', 'gpus', 'allowOversubscribe'] as const;
/** The dashboard, /metrics and the trace: train and coordinator. */
export const OBSERVE_FLAGS = ['httpPort', 'httpToken', 'trace', 'traceSteps'] as const;
export const SECURITY_FLAGS = ['token', 'tokenFile', 'tlsCert', 'tlsKey', 'tlsCa'] as const;

export const TRAIN_COMMAND_FLAGS = [
  ...TRAINING_FLAGS,
  ...RUN_FLAGS,
  ...LAUNCH_FLAGS,
  ...DISTRIBUTED_FLAGS,
  ...OBSERVE_FLAGS,
] as const;
export const COORDINATOR_COMMAND_FLAGS = [
  ...TRAINING_FLAGS,
  ...RUN_FLAGS,
  ...DISTRIBUTED_FLAGS,
  ...OBSERVE_FLAGS,
  'port',
  'bindHost',
  'worldSize',
  ...SECURITY_FLAGS,
] as const;
export const WORKER_COMMAND_FLAGS = [
  'coordinator',
  'peerPort',
  'advertiseHost',
  'bindHost',
  'data',
  'backend',
  'gpu',
  'model',
  'rank',
  'joinTimeout',
  'coordinatorGrace',
  ...SECURITY_FLAGS,
] as const;
