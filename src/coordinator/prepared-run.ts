import type * as tfl from '@tensorflow/tfjs-layers';
import type { TrainConfig } from '../shared/config/train-config.js';
import type { DatasetSplits } from '../shared/data/labeled-images.js';
import { loadDataset } from '../shared/data/load-dataset.js';
import { UserError } from '../shared/errors.js';
import { architectureFingerprint, buildModel } from '../shared/models/zoo.js';
import type { Checkpoint } from '../shared/training/checkpoint.js';
import { createRunDir } from '../shared/training/run-folder.js';
import { planRun, type RunPlan } from '../shared/training/run-plan.js';
import { readModelWeights, writeModelWeights } from '../shared/training/weight-layout.js';
import { weightsFingerprint } from '../shared/training/weights-fingerprint.js';

/** What the coordinator holds of a run before any worker joins. */
export interface PreparedRun {
  data: DatasetSplits;
  /**
   * The run folder: the resumed run's or --out (created now, so that a bad --out fails before
   * any worker joins); undefined for a new folder under runs/, created once the world formed.
   */
  runDir: string | undefined;
  plan: RunPlan;
  /**
   * The coordinator's copy of the model: it holds the weights the replicas start from, then
   * each checkpoint's, for the export. A world of one trains it in place.
   */
  model: tfl.LayersModel;
  /** Floats in the model's trainable weights: the gradient's size. */
  trainableSize: number;
  architecture: string;
  /** Fingerprint of the weights every replica must start from (the seed's, or the checkpoint's). */
  initialFingerprint: string;
  startStep: number;
}

/**
 * Loads the data (the coordinator shards it, and may serve it), plans the run at its global
 * batch (`config.batchSize`), creates --out, and builds the model with the
 * weights the replicas must start from. Throws UserError when the run cannot go on (a global
 * batch smaller than the world, a resumed run already complete, a checkpoint of another
 * architecture). The caller disposes `model`.
 */
export async function prepareRun(opts: {
  config: TrainConfig;
  worldSize: number;
  runDir?: string;
  out?: string;
  resumeFrom?: Checkpoint;
}): Promise<PreparedRun> {
  const { config, resumeFrom } = opts;
  if (config.batchSize < opts.worldSize) {
    throw new UserError(
      `the global batch of ${config.batchSize} cannot give each of ${opts.worldSize} workers a sample`,
    );
  }
  const data = await loadDataset({ ...config.data, seed: config.seed });
  const plan = planRun(config, data.train.count);
  if (resumeFrom && resumeFrom.step >= plan.totalSteps) {
    throw new UserError(
      `the run in ${opts.runDir} already trained ${resumeFrom.step} steps of ${plan.totalSteps}; ` +
        'give a larger --epochs or --steps to continue it',
    );
  }
  const runDir =
    opts.runDir ??
    (opts.out === undefined ? undefined : await createRunDir(config.model, opts.out));
  const model = buildModel(config.model, { seed: config.seed });
  const architecture = architectureFingerprint(model);
  if (resumeFrom) {
    if (resumeFrom.architecture !== architecture) {
      model.dispose();
      throw new UserError(
        `the checkpoint in ${opts.runDir} is for another architecture than ${config.model}`,
      );
    }
    writeModelWeights(model, resumeFrom.weights);
  }
  return {
    data,
    runDir,
    plan,
    model,
    trainableSize: model.trainableWeights.reduce(
      (n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1),
      0,
    ),
    architecture,
    initialFingerprint: weightsFingerprint(readModelWeights(model)),
    startStep: resumeFrom?.step ?? 0,
  };
}
