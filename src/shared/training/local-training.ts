import { join } from 'node:path';
import type { TrainConfig } from '../config/train-config.js';
import { loadDataset } from '../data/load-dataset.js';
import { Interrupted, UserError } from '../errors.js';
import { log } from '../logging/logger.js';
import { architectureFingerprint, buildModel } from '../models/zoo.js';
import { type Checkpoint, writeCheckpoint } from './checkpoint.js';
import { EpochSampler } from './epoch-sampler.js';
import { Evaluator } from './evaluator.js';
import { MetricsWriter } from './metrics-writer.js';
import { createRunDir, exportModel, METRICS_FILE, writeRunConfig } from './run-folder.js';
import { planRun } from './run-plan.js';
import { runTrainLoop } from './train-loop.js';
import { TrainStep } from './train-step.js';
import { TrainingProgress } from './training-progress.js';

export interface LocalTrainingOptions {
  config: TrainConfig;
  /** The backend already initialised (initBackend), for the summary. */
  backend: string;
  /**
   * The run folder: for a resumed run, the one its checkpoint is in; absent for a new run, which
   * gets `out` (or a new folder under runs/), created once the data has loaded.
   */
  runDir?: string;
  out?: string;
  /** Continue from this checkpoint (its config must be `config` up to the run length). */
  resumeFrom?: Checkpoint;
  checkpointEvery?: number;
  signal?: AbortSignal;
}

/** The summary `train --json` prints. */
export interface TrainSummary {
  model: string;
  backend: string;
  workers: number;
  steps: number;
  imagesPerSec: number;
  finalLoss: number | null;
  valAccuracy: number | null;
  runDir: string;
}

/** Thrown when a run stops on a signal, after its checkpoint is written. */
export class TrainingInterrupted extends Interrupted {
  constructor(
    readonly step: number,
    readonly runDir: string,
    signal: string,
  ) {
    super(
      `interrupted by ${signal} after step ${step}; checkpoint written; ` +
        `continue with: tfjs-ddp train --resume ${runDir}`,
      signal,
    );
  }
}

/**
 * Trains one model in this process (one worker): loads the data, builds the model (or restores
 * it from `resumeFrom`), runs the loop, and exports the model to `<runDir>/model`. Throws
 * TrainingInterrupted when `signal` aborts (reason: the signal's name), after checkpointing.
 */
export async function trainLocally(opts: LocalTrainingOptions): Promise<TrainSummary> {
  const { config, resumeFrom } = opts;
  const data = await loadDataset({ ...config.data, seed: config.seed });
  const runDir = opts.runDir ?? (await createRunDir(config.model, opts.out));
  const plan = planRun(config, data.train.count);
  const { totalSteps } = plan;
  if (resumeFrom && resumeFrom.step >= totalSteps) {
    throw new UserError(
      `the run in ${runDir} already trained ${resumeFrom.step} steps of ${totalSteps}; ` +
        'give a larger --epochs or --steps to continue it',
    );
  }
  const model = buildModel(config.model, { seed: config.seed });
  const architecture = architectureFingerprint(model);
  const trainStep = new TrainStep({
    model,
    optimizer: config.optimizer,
    schedule: plan.schedule,
    weightDecay: config.weightDecay,
    seed: config.seed,
  });
  let metrics: MetricsWriter | undefined;
  try {
    if (resumeFrom) {
      if (resumeFrom.architecture !== architecture) {
        throw new UserError(
          `the checkpoint in ${runDir} is for another architecture than ${config.model}`,
        );
      }
      trainStep.setWeights(resumeFrom.weights);
      trainStep.importOptimizerState(resumeFrom.optimizer);
    }
    const startStep = resumeFrom?.step ?? 0;
    log().info(
      { model: config.model, recipe: config.recipe, runDir, totalSteps, startStep },
      `${resumeFrom ? 'resuming' : 'training'} ${config.model} on ${data.train.count} images ` +
        `(${plan.stepsPerEpoch} steps/epoch, batch ${config.batchSize}, ${totalSteps} steps) in ${runDir}`,
    );
    await writeRunConfig(runDir, config);
    metrics = await MetricsWriter.open(join(runDir, METRICS_FILE), resumeFrom?.step);
    const result = await runTrainLoop({
      config,
      trainStep,
      evaluator: new Evaluator(model),
      data,
      sampler: new EpochSampler(
        data.train.count,
        config.seed,
        config.batchSize,
        resumeFrom?.cursor,
      ),
      startStep,
      totalSteps,
      checkpointEvery: opts.checkpointEvery,
      saveCheckpoint: async (step, cursor) => {
        await writeCheckpoint(runDir, {
          step,
          cursor,
          seed: config.seed,
          config,
          architecture,
          weights: trainStep.getWeights(),
          optimizer: trainStep.exportOptimizerState(),
        });
      },
      metrics,
      progress: new TrainingProgress({ totalSteps, stepsPerEpoch: plan.stepsPerEpoch }),
      signal: opts.signal,
    });
    if (result.interrupted) {
      throw new TrainingInterrupted(
        result.steps,
        runDir,
        String(opts.signal?.reason ?? 'a signal'),
      );
    }
    await exportModel(model, runDir, {
      model: config.model,
      preprocessing: config.preprocessing,
      classNames: [...data.classNames],
      // An absolute folder, so that `eval` finds the data from any working directory.
      data: config.data.dataDir ? { ...config.data, dataDir: data.dataDir } : config.data,
      seed: config.seed,
      steps: result.steps,
      valAccuracy: result.lastEval?.accuracy ?? null,
    });
    return {
      model: config.model,
      backend: opts.backend,
      workers: 1,
      steps: result.steps,
      imagesPerSec: result.imagesPerSec,
      finalLoss: result.finalLoss,
      valAccuracy: result.lastEval?.accuracy ?? null,
      runDir,
    };
  } finally {
    metrics?.close();
    trainStep.dispose();
    model.dispose();
  }
}
