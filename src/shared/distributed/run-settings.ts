import { z } from 'zod';
import {
  AllReduceMode,
  DataSource,
  GradCompression,
  type RunConfig,
} from '../../gen/tfjs_ddp/v1/coordinator.js';
import type { CollectiveName } from '../collectives/create-collective.js';
import {
  type GradCompression as CompressionSetting,
  powerSgdRank,
} from '../collectives/grad-compression.js';
import { parseTrainConfig, type TrainConfig } from '../config/train-config.js';
import { UserError } from '../errors.js';

/** Most samples one FetchSamples may ask for (25 MB of pixels). */
export const MAX_FETCH_SAMPLES = 8192;

/** Where workers read the training images from. */
export type DataFrom = 'local' | 'coordinator';
export const DATA_FROM: readonly DataFrom[] = ['local', 'coordinator'];

/**
 * Everything a worker trains with, decided by the coordinator and sent in JoinResponse.config.
 * `train.batchSize` is the GLOBAL batch G of the run (the sum of the workers' shares): it is
 * what a checkpoint stores, so a run resumed with another number of workers keeps its
 * schedule.
 */
export interface RunSettings {
  train: TrainConfig;
  /** architectureFingerprint of the coordinator's model: a worker that builds another refuses to run. */
  architecture: string;
  /** Sizes of the coordinator's splits: a worker's local copy must have the same. */
  trainCount: number;
  valCount: number;
  totalSteps: number;
  /** Steps already trained (the checkpoint's step when resuming, else 0). */
  startStep: number;
  resume: boolean;
  allReduce: CollectiveName;
  compression: CompressionSetting;
  firstBucketBytes: number;
  bucketBytes: number;
  /** Buckets leave during the backward pass (--no-overlap: after it). */
  overlap: boolean;
  chunkBytes: number;
  /** Deadline of every collective and every wait, in ms (--step-timeout). */
  stepTimeoutMs: number;
  heartbeatIntervalMs: number;
  fingerprintEvery: number;
  maxMessageBytes: number;
  dataFrom: DataFrom;
}

/** The part of RunSettings that RunConfig has no field for: carried as JSON. */
const extraSchema = z.object({
  train: z.unknown(),
  architecture: z.string().min(1),
  trainCount: z.number().int().positive(),
  valCount: z.number().int().min(0),
  totalSteps: z.number().int().positive(),
  startStep: z.number().int().min(0),
});

/** The RunConfig message for `s`. */
export function encodeRunSettings(s: RunSettings): RunConfig {
  const { train } = s;
  return {
    modelName: train.model,
    seed: train.seed,
    dataset: train.data.dataset,
    valSize: train.data.valSize,
    preprocessing: train.preprocessing,
    augment: train.augment,
    dataSource:
      s.dataFrom === 'coordinator'
        ? DataSource.DATA_SOURCE_COORDINATOR
        : DataSource.DATA_SOURCE_LOCAL,
    allReduce:
      s.allReduce === 'star'
        ? AllReduceMode.ALL_REDUCE_MODE_STAR
        : AllReduceMode.ALL_REDUCE_MODE_RING,
    gradCompression: COMPRESSION_CODE[s.compression.split(':')[0]],
    powersgdRank: powerSgdRank(s.compression) ?? 0,
    firstBucketBytes: s.firstBucketBytes,
    bucketBytes: s.bucketBytes,
    noOverlap: !s.overlap,
    chunkBytes: s.chunkBytes,
    collectiveTimeoutMs: s.stepTimeoutMs,
    heartbeatIntervalMs: s.heartbeatIntervalMs,
    fingerprintIntervalSteps: s.fingerprintEvery,
    maxMessageBytes: s.maxMessageBytes,
    trainingConfigJson: JSON.stringify({
      train,
      architecture: s.architecture,
      trainCount: s.trainCount,
      valCount: s.valCount,
      totalSteps: s.totalSteps,
      startStep: s.startStep,
    }),
    resume: s.resume,
  };
}

/**
 * Reads the RunConfig a coordinator sent. Throws UserError when it cannot be used (a
 * coordinator of another build that the protocol version did not tell apart).
 */
export function decodeRunSettings(c: RunConfig | undefined): RunSettings {
  const bad = (what: string) =>
    new UserError(`the coordinator sent a run configuration this worker cannot use: ${what}`);
  if (!c) throw bad('it is missing');
  let extra: z.infer<typeof extraSchema>;
  try {
    extra = extraSchema.parse(JSON.parse(c.trainingConfigJson));
  } catch (error) {
    throw bad(`training_config_json: ${(error as Error).message}`);
  }
  const parsed = parseTrainConfig(extra.train);
  if (!parsed.ok) throw bad(`${parsed.issues[0].path}: ${parsed.issues[0].message}`);
  const allReduce = ALL_REDUCE[c.allReduce];
  const compression =
    c.gradCompression === GradCompression.GRAD_COMPRESSION_POWERSGD
      ? c.powersgdRank >= 1
        ? (`powersgd:${c.powersgdRank}` as const)
        : undefined
      : COMPRESSION[c.gradCompression];
  const dataFrom = SOURCE[c.dataSource];
  if (!allReduce || !compression || !dataFrom) {
    throw bad(
      `unknown all-reduce mode, compression or data source (${c.allReduce}, ${c.gradCompression}, ${c.dataSource})`,
    );
  }
  if (!(c.chunkBytes > 0 && c.collectiveTimeoutMs > 0 && c.maxMessageBytes > 0)) {
    throw bad('chunk size, collective timeout and message limit must be positive');
  }
  return {
    ...extra,
    train: parsed.config,
    resume: c.resume,
    allReduce,
    compression,
    firstBucketBytes: c.firstBucketBytes,
    bucketBytes: c.bucketBytes,
    overlap: !c.noOverlap,
    chunkBytes: c.chunkBytes,
    stepTimeoutMs: c.collectiveTimeoutMs,
    heartbeatIntervalMs: c.heartbeatIntervalMs || 5000,
    fingerprintEvery: c.fingerprintIntervalSteps,
    maxMessageBytes: c.maxMessageBytes,
    dataFrom,
  };
}

const ALL_REDUCE: Partial<Record<AllReduceMode, CollectiveName>> = {
  [AllReduceMode.ALL_REDUCE_MODE_RING]: 'ring',
  [AllReduceMode.ALL_REDUCE_MODE_STAR]: 'star',
};
const COMPRESSION: Partial<Record<GradCompression, CompressionSetting>> = {
  [GradCompression.GRAD_COMPRESSION_NONE]: 'none',
  [GradCompression.GRAD_COMPRESSION_BF16]: 'bf16',
  [GradCompression.GRAD_COMPRESSION_FP16]: 'fp16',
};
/** By the setting's kind (the text before any ':'). */
const COMPRESSION_CODE: Record<string, GradCompression> = {
  none: GradCompression.GRAD_COMPRESSION_NONE,
  bf16: GradCompression.GRAD_COMPRESSION_BF16,
  fp16: GradCompression.GRAD_COMPRESSION_FP16,
  powersgd: GradCompression.GRAD_COMPRESSION_POWERSGD,
};
const SOURCE: Partial<Record<DataSource, DataFrom>> = {
  [DataSource.DATA_SOURCE_LOCAL]: 'local',
  [DataSource.DATA_SOURCE_COORDINATOR]: 'coordinator',
};
