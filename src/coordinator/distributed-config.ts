import { resolve } from 'node:path';
import { resolveTrainConfig, type TrainFlags } from '../shared/config/resolve-train-config.js';
import { resumeTrainConfig } from '../shared/config/resume-train-config.js';
import { parseTrainConfig, type TrainConfig } from '../shared/config/train-config.js';
import { UserError } from '../shared/errors.js';
import { type Checkpoint, readCheckpoint } from '../shared/training/checkpoint.js';
import { latestRunDir } from '../shared/training/run-folder.js';

export interface DistributedConfigFlags extends TrainFlags {
  globalBatchSize?: string;
  out?: string;
  resume?: string | true;
}

/** A distributed run's configuration; `config.batchSize` is the global batch G. */
export interface DistributedConfig {
  config: TrainConfig;
  runDir?: string;
  resumeFrom?: Checkpoint;
}

/**
 * The configuration of a distributed run of `worldSize` workers. `--batch-size` is per worker
 * (torchrun's and Horovod's convention: G = worldSize × batch size); `--global-batch-size G`
 * may be given instead. The configuration stores G, the batch of the whole step, so that
 * `--resume` continues the same schedule with any number of workers: a resumed run keeps its G,
 * and a batch flag that implies another one is refused.
 */
export async function resolveDistributedConfig(
  flags: DistributedConfigFlags,
  worldSize: number,
): Promise<DistributedConfig> {
  if (flags.globalBatchSize !== undefined && flags.batchSize !== undefined) {
    throw new UserError(
      '--batch-size (per worker) and --global-batch-size: give one of them, not both',
    );
  }
  const globalFlag =
    flags.globalBatchSize === undefined
      ? undefined
      : positive('--global-batch-size', flags.globalBatchSize);
  if (flags.resume !== undefined) {
    const runDir = flags.resume === true ? await latestRunDir() : resolve(flags.resume);
    if (flags.out !== undefined && resolve(flags.out) !== runDir) {
      throw new UserError(
        `--out ${flags.out} and --resume ${runDir}: a resumed run stays in its folder`,
      );
    }
    const resumeFrom = await readCheckpoint(runDir);
    const config = resumeTrainConfig(
      resumeFrom.config,
      { ...flags, batchSize: undefined },
      `the checkpoint in ${runDir}`,
    );
    const implied =
      globalFlag ??
      (flags.batchSize === undefined
        ? undefined
        : worldSize * positive('--batch-size', flags.batchSize));
    if (implied !== undefined && implied !== config.batchSize) {
      throw new UserError(
        `a resumed run keeps its global batch of ${config.batchSize} images per step, but the batch flags give ${implied}` +
          `${flags.batchSize !== undefined ? ` (${worldSize} workers × --batch-size ${flags.batchSize})` : ''}: omit them`,
      );
    }
    return { config, runDir, resumeFrom };
  }
  const perWorker = resolveTrainConfig(flags);
  const globalBatch = globalFlag ?? worldSize * perWorker.batchSize;
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
