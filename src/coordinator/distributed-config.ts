import { DEFAULT_FIRST_BUCKET_BYTES } from '../shared/collectives/bucket-plan.js';
import type { CollectiveName } from '../shared/collectives/create-collective.js';
import type { GradCompression } from '../shared/collectives/grad-compression.js';
import type { FlagValues } from '../shared/config/flags.js';
import { resolveTrainConfig, type TrainFlags } from '../shared/config/resolve-train-config.js';
import { resumeTrainConfig } from '../shared/config/resume-train-config.js';
import { parseTrainConfig, type TrainConfig } from '../shared/config/train-config.js';
import type { DataFrom } from '../shared/distributed/run-settings.js';
import { UserError } from '../shared/errors.js';
import { type Checkpoint, readCheckpoint } from '../shared/training/checkpoint.js';

export interface DistributedConfigFlags extends TrainFlags {
  globalBatchSize?: number;
}

/** A distributed run's configuration; `config.batchSize` is the global batch G. */
export interface DistributedConfig {
  config: TrainConfig;
  resumeFrom?: Checkpoint;
}

/** How a distributed run moves its gradients and how long it waits (from the schema's flags). */
export interface DistributedSettings {
  allReduce: CollectiveName;
  compression: GradCompression;
  firstBucketBytes: number;
  bucketBytes: number;
  /** Buckets leave during the backward pass (--no-overlap: after it). */
  overlap: boolean;
  fingerprintEvery: number;
  dataFrom: DataFrom;
  joinTimeoutMs: number;
  stepTimeoutMs: number;
  checkpointEvery?: number;
  /** Below this many workers the run pauses for joins (default: the world size). */
  minWorkers?: number;
  /** Joins beyond this many workers are refused (default: the world size). */
  maxWorkers?: number;
  /** Membership changes caused by lost workers before the run ends (0: a lost worker ends it). */
  maxRestarts: number;
  /** How long a run below --min-workers waits for joins before it checkpoints and ends. */
  rejoinTimeoutMs: number;
}

/** The DistributedSettings of the parsed flags. */
export function distributedSettings(
  flags: FlagValues<
    | 'allreduce'
    | 'gradCompression'
    | 'bucketSizeMb'
    | 'overlap'
    | 'fingerprintEvery'
    | 'dataFrom'
    | 'joinTimeout'
    | 'stepTimeout'
    | 'checkpointEvery'
    | 'minWorkers'
    | 'maxWorkers'
    | 'maxRestarts'
    | 'rejoinTimeout'
  >,
): DistributedSettings {
  const bucketBytes = Math.round(flags.bucketSizeMb * 1024 * 1024);
  return {
    allReduce: flags.allreduce,
    compression: flags.gradCompression,
    firstBucketBytes: Math.min(DEFAULT_FIRST_BUCKET_BYTES, bucketBytes),
    bucketBytes,
    overlap: flags.overlap,
    fingerprintEvery: flags.fingerprintEvery,
    dataFrom: flags.dataFrom,
    joinTimeoutMs: 1000 * flags.joinTimeout,
    stepTimeoutMs: 1000 * flags.stepTimeout,
    checkpointEvery: flags.checkpointEvery,
    minWorkers: flags.minWorkers,
    maxWorkers: flags.maxWorkers,
    maxRestarts: flags.maxRestarts,
    rejoinTimeoutMs: 1000 * flags.rejoinTimeout,
  };
}

/**
 * The configuration of a distributed run of `worldSize` workers, new or resumed from the run
 * folder `resumeDir`. `--batch-size` is per worker (torchrun's and Horovod's convention:
 * G = worldSize × batch size); `--global-batch-size G` may be given instead. The configuration
 * stores G, the batch of the whole step, so that `--resume` continues the same schedule with
 * any number of workers: a resumed run keeps its G, and a batch flag that implies another one
 * is refused.
 */
export async function resolveDistributedConfig(
  flags: DistributedConfigFlags,
  worldSize: number,
  resumeDir?: string,
): Promise<DistributedConfig> {
  if (flags.globalBatchSize !== undefined && flags.batchSize !== undefined) {
    throw new UserError(
      '--batch-size (per worker) and --global-batch-size: give one of them, not both',
    );
  }
  if (resumeDir !== undefined) {
    const resumeFrom = await readCheckpoint(resumeDir);
    const config = resumeTrainConfig(
      resumeFrom.config,
      { ...flags, batchSize: undefined },
      `the checkpoint in ${resumeDir}`,
    );
    const implied =
      flags.globalBatchSize ??
      (flags.batchSize === undefined
        ? undefined
        : worldSize * positive('--batch-size', flags.batchSize));
    if (implied !== undefined && implied !== config.batchSize) {
      throw new UserError(
        `a resumed run keeps its global batch of ${config.batchSize} images per step, but the batch flags give ${implied}` +
          `${flags.batchSize !== undefined ? ` (${worldSize} workers × --batch-size ${flags.batchSize})` : ''}: omit them`,
      );
    }
    return { config, resumeFrom };
  }
  const perWorker = resolveTrainConfig(flags);
  const globalBatch = flags.globalBatchSize ?? worldSize * perWorker.batchSize;
  const checked = parseTrainConfig({ ...perWorker, batchSize: globalBatch });
  if (!checked.ok) {
    throw new UserError(`the global batch of ${globalBatch}: ${checked.issues[0].message}`);
  }
  return { config: checked.config };
}

function positive(flag: string, text: string): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1) {
    throw new UserError(`${flag}: expected a whole number ≥ 1 (got "${text}")`);
  }
  return Number(text);
}
