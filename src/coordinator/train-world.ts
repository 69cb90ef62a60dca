import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CollectiveName } from '../shared/collectives/create-collective.js';
import type { GradCompression } from '../shared/collectives/grad-compression.js';
import type { TrainConfig } from '../shared/config/train-config.js';
import { Interrupted } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import {
  CHECKPOINT_FILE,
  type Checkpoint,
  writeCheckpoint,
} from '../shared/training/checkpoint.js';
import { MetricsWriter } from '../shared/training/metrics-writer.js';
import {
  createRunDir,
  exportModel,
  METRICS_FILE,
  writeRunConfig,
} from '../shared/training/run-folder.js';
import { Sampler } from '../shared/training/sampler.js';
import { TrainingProgress } from '../shared/training/training-progress.js';
import { writeModelWeights } from '../shared/training/weight-layout.js';
import { fingerprintMismatch } from './fingerprints.js';
import { membershipChanged } from './membership-log.js';
import { nowMs } from './observe/run-events.js';
import type { RunObservers } from './observe/run-observers.js';
import type { PreparedRun } from './prepared-run.js';
import type { ReplicaGroup } from './replica-group.js';
import type { RestartPoint } from './restart-point.js';
import { RunFailure } from './run-failure.js';
import { StepTimingStats, type TimingSummary } from './step-timings.js';
import { runTrainingLoop } from './training-loop.js';

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

/** What trainWorld needs besides the replicas. */
export interface WorldRun {
  config: TrainConfig;
  prepared: PreparedRun;
  resumeFrom?: Checkpoint;
  /** A restarted coordinator's workers: where they go on (see restartPoint). */
  restart?: RestartPoint;
  /** Checkpoint every K steps; absent: at the end of every epoch (and always at the end). */
  checkpointEvery?: number;
  /** Compare the replicas' fingerprints every K steps and after the last (0: never). */
  fingerprintEvery: number;
  /** How gradients travel between processes; absent in a world of one. */
  allReduce?: { mode: CollectiveName; compression: GradCompression };
  /** Once aborted (reason: the signal's name), the run stops after the current step. */
  signal?: AbortSignal;
  /** Told of the run's events (the dashboard, /metrics, the trace). */
  observers: RunObservers;
}

/**
 * Trains a formed world, of one replica in this process or of N worker processes: makes the
 * replicas identical (rank 0's initial weights, or the checkpoint) and checks that they are,
 * runs the loop, and exports the final model (rank 0's weights after BatchNorm averaging,
 * written into the prepared run's model) to <run>/model. Throws TrainingInterrupted after a
 * signal, once the checkpoint is written; RunFailure when the replicas fail or diverge.
 */
export async function trainWorld(w: WorldRun, group: ReplicaGroup): Promise<TrainSummary> {
  const { config, prepared, resumeFrom } = w;
  const { plan, data, model } = prepared;
  const held = w.restart?.held === true;
  const startStep = w.restart?.step ?? prepared.startStep;
  const runDir = prepared.runDir ?? (await createRunDir(config.model));
  const initial = await group.initialize(resumeFrom !== undefined, startStep, held);
  // Kept state is checked by the replicas' agreement: the coordinator's copy is the checkpoint's.
  const mismatch = fingerprintMismatch(initial, held ? undefined : prepared.initialFingerprint);
  if (mismatch)
    throw new RunFailure(`the replicas do not start from the same weights: ${mismatch}`);
  const doing = resumeFrom ? 'resuming' : 'training';
  const shape = `(${plan.stepsPerEpoch} steps/epoch, ${plan.totalSteps} steps) in ${runDir}`;
  if (w.allReduce) {
    const { mode, compression } = w.allReduce;
    log().info(
      { workers: group.size, allReduce: mode, globalBatch: plan.globalBatch },
      `${group.size} worker${group.size > 1 ? 's' : ''} ready (${mode} all-reduce${compression === 'bf16' ? ', bf16' : ''}); ` +
        `${doing} ${config.model} on ${data.train.count} images, global batch ${plan.globalBatch} ${shape}`,
    );
  } else {
    log().info(
      {
        model: config.model,
        recipe: config.recipe,
        runDir,
        totalSteps: plan.totalSteps,
        startStep,
      },
      `${doing} ${config.model} on ${data.train.count} images, batch ${plan.globalBatch} ${shape}`,
    );
  }

  await writeRunConfig(runDir, config);
  // The records up to where the run goes on are kept: a resumed run's, and those of a run
  // whose coordinator restarted before its first checkpoint (its workers kept their state;
  // see restartPoint). A new run keeps none.
  const metrics = await MetricsWriter.open(join(runDir, METRICS_FILE), startStep);
  const gradientBytes = prepared.trainableSize * (w.allReduce?.compression === 'bf16' ? 2 : 4);
  const ring = w.allReduce?.mode !== 'star';
  const timings = new StepTimingStats(group.size, gradientBytes, ring);
  const n = group.size;
  const { observers } = w;
  observers.openTrace(runDir);
  const started = nowMs();
  observers.events.emit({
    type: 'run-started',
    time: started,
    runDir,
    config: { ...config, workers: n, ...(w.allReduce ? { allReduce: w.allReduce } : {}) },
    worldSize: n,
    totalSteps: plan.totalSteps,
    stepsPerEpoch: plan.stepsPerEpoch,
    globalBatch: plan.globalBatch,
    startStep,
    gradientBytes,
    allReduce: w.allReduce?.mode ?? 'none',
  });
  observers.events.emit({
    type: 'membership',
    time: started,
    generation: 1,
    worldSize: n,
    step: startStep,
    reason: 'the world formed',
  });
  for (let rank = 0; rank < n; rank++) {
    observers.events.emit({ type: 'worker', time: started, rank, state: 'training' });
  }
  if (w.restart) {
    const { ranks, reason } = w.restart;
    membershipChanged(
      { metrics, observers },
      {
        generation: 1,
        worldSize: n,
        step: startStep,
        cause: reason,
        lost: [],
        left: [],
        joined: ranks,
        ranks,
        seconds: process.uptime(),
      },
    );
  }
  const sampler = new Sampler(data.train.count, config.seed, plan.globalBatch, resumeFrom?.cursor);
  // Kept state is newer than the checkpoint: its batches were trained already.
  for (let done = resumeFrom?.step ?? 0; done < startStep; done++) sampler.next();
  try {
    const result = await runTrainingLoop({
      group,
      plan,
      sampler,
      startStep,
      valCount: data.val.count,
      checkpointEvery: w.checkpointEvery,
      fingerprintEvery: w.fingerprintEvery,
      saveCheckpoint: async (step, cursor, state) => {
        // The export takes the last checkpoint's state (BatchNorm statistics averaged).
        writeModelWeights(model, state.weights);
        const writing = nowMs();
        await writeCheckpoint(runDir, {
          step,
          cursor,
          seed: config.seed,
          config,
          architecture: prepared.architecture,
          weights: state.weights,
          optimizer: state.optimizer,
        });
        observers.events.emit({
          type: 'checkpoint',
          step,
          startMs: writing,
          durationMs: nowMs() - writing,
          bytes: (await stat(join(runDir, CHECKPOINT_FILE))).size,
        });
      },
      metrics,
      progress: new TrainingProgress({
        totalSteps: plan.totalSteps,
        stepsPerEpoch: plan.stepsPerEpoch,
        startStep,
      }),
      timings,
      observers,
      // A world of one sends nothing.
      allReduceBytesPerRank: n === 1 ? 0 : ring ? (2 * (n - 1) * gradientBytes) / n : gradientBytes,
      signal: w.signal,
    });
    logTimings(timings.summary(), group.size, w.allReduce?.mode);
    if (result.interrupted) {
      throw new TrainingInterrupted(result.steps, runDir, String(w.signal?.reason ?? 'a signal'));
    }
    await exportModel(model, runDir, {
      model: config.model,
      preprocessing: config.preprocessing,
      classNames: [...data.classNames],
      // An absolute folder, so that `eval` finds the data from any working directory.
      data: config.data.dataDir ? { ...config.data, dataDir: data.dataDir } : config.data,
      seed: config.seed,
      steps: result.steps,
      valAccuracy: result.valAccuracy,
    });
    return {
      model: config.model,
      backend: group.backend,
      workers: group.size,
      steps: result.steps,
      imagesPerSec: result.imagesPerSec,
      finalLoss: result.finalLoss,
      valAccuracy: result.valAccuracy,
      runDir,
    };
  } finally {
    metrics.close();
  }
}

function logTimings(
  t: TimingSummary | undefined,
  workers: number,
  mode: CollectiveName | undefined,
): void {
  if (!t) return;
  const ms = (x: number) => Number(x.toFixed(1));
  if (!mode) {
    log().info(
      {
        stepTimings: {
          steps: t.steps,
          computeMs: ms(t.computeMs),
          dataMs: ms(t.dataMs),
          applyMs: ms(t.applyMs),
        },
      },
      `per step (mean of ${t.steps}): compute ${ms(t.computeMs)} ms, data ${ms(t.dataMs)} ms, apply ${ms(t.applyMs)} ms`,
    );
    return;
  }
  log().info(
    {
      stepTimings: {
        steps: t.steps,
        computeMs: ms(t.computeMs),
        allReduceMs: ms(t.allReduceMs),
        waitMs: ms(t.waitMs),
        dataMs: ms(t.dataMs),
        applyMs: ms(t.applyMs),
        gradientBytes: t.gradientBytes,
        allReduceMBps: ms(t.allReduceMBps),
        busMBps: ms(t.busMBps),
      },
    },
    `per step (mean of ${t.steps}, ${workers} workers, ${mode}): compute ${ms(t.computeMs)} ms, ` +
      `all-reduce ${ms(t.allReduceMs)} ms, waiting ${ms(t.waitMs)} ms, data ${ms(t.dataMs)} ms, apply ${ms(t.applyMs)} ms; ` +
      `all-reduce of ${(t.gradientBytes / 1e6).toFixed(2)} MB at ${ms(t.allReduceMBps)} MB/s (${ms(t.busMBps)} MB/s sent per worker)`,
  );
}
