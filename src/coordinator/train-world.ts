import { join } from 'node:path';
import { log } from '../shared/logging/logger.js';
import { writeCheckpoint } from '../shared/training/checkpoint.js';
import { EpochSampler } from '../shared/training/epoch-sampler.js';
import { TrainingInterrupted, type TrainSummary } from '../shared/training/local-training.js';
import { MetricsWriter } from '../shared/training/metrics-writer.js';
import {
  createRunDir,
  exportModel,
  METRICS_FILE,
  writeRunConfig,
} from '../shared/training/run-folder.js';
import { TrainingProgress } from '../shared/training/training-progress.js';
import { RunFailure } from './control-channel.js';
import type { CoordinatorState } from './coordinator.js';
import { runDistributedLoop } from './distributed-loop.js';
import { fingerprintMismatch } from './fingerprints.js';
import { StepTimingStats, type TimingSummary } from './step-timings.js';
import type { WorkerGroup } from './worker-group.js';

/**
 * Trains the formed world: tells every worker its peers (generation 1), makes the replicas
 * identical (rank 0's initial weights broadcast, or the checkpoint fetched) and checks that
 * they are, runs the loop, and exports the final model (rank 0's weights after BatchNorm
 * averaging) to <run>/model like a single-process run. Throws TrainingInterrupted after a
 * signal, once the checkpoint is written.
 */
export async function trainWorld(s: CoordinatorState, group: WorkerGroup): Promise<TrainSummary> {
  const { opts, membership, plan, data, startStep } = s;
  const runDir = s.runDir ?? (await createRunDir(opts.config.model));
  const { config, resumeFrom } = opts;
  const world = membership.admissions;
  if (opts.allReduce === 'star') s.reduction.startGeneration(1, world.length);
  await group.send(
    () => ({
      $case: 'membership',
      value: {
        generation: 1,
        worldSize: world.length,
        peers: world.map((a) => ({ rank: a.rank, address: a.peerAddress, device: a.device })),
      },
    }),
    'connecting to the other workers',
  );
  await group.send(
    () => ({
      $case: 'initializeWeights',
      value: { rootRank: 0, fromCheckpoint: resumeFrom !== undefined },
    }),
    resumeFrom ? 'loading the checkpoint' : "receiving rank 0's initial weights",
  );
  const initial = await group.all((c) => c.fingerprint(startStep));
  const mismatch = fingerprintMismatch(initial, s.initialFingerprint);
  if (mismatch)
    throw new RunFailure(`the replicas do not start from the same weights: ${mismatch}`);
  log().info(
    { workers: world.length, allReduce: opts.allReduce, globalBatch: plan.globalBatch },
    `${world.length} worker${world.length > 1 ? 's' : ''} ready (${opts.allReduce} all-reduce${opts.compression === 'bf16' ? ', bf16' : ''}); ` +
      `${resumeFrom ? 'resuming' : 'training'} ${config.model} on ${data.train.count} images, global batch ${plan.globalBatch} ` +
      `(${plan.stepsPerEpoch} steps/epoch, ${plan.totalSteps} steps) in ${runDir}`,
  );

  await writeRunConfig(runDir, config);
  const metrics = await MetricsWriter.open(join(runDir, METRICS_FILE), resumeFrom?.step);
  const timings = new StepTimingStats(
    world.length,
    s.trainStep.trainableLayout.size * (opts.compression === 'bf16' ? 2 : 4),
    opts.allReduce === 'ring',
  );
  try {
    const result = await runDistributedLoop({
      group,
      config,
      plan,
      sampler: new EpochSampler(
        data.train.count,
        config.seed,
        plan.globalBatch,
        resumeFrom?.cursor,
      ),
      startStep,
      valCount: data.val.count,
      checkpointEvery: opts.checkpointEvery,
      fingerprintEvery: opts.fingerprintEvery,
      saveCheckpoint: async (step, cursor, state) => {
        if (!state.optimizer)
          throw new RunFailure('rank 0 sent no optimizer state for the checkpoint');
        s.trainStep.setWeights(state.weights);
        await writeCheckpoint(runDir, {
          step,
          cursor,
          seed: config.seed,
          config,
          architecture: s.architecture,
          weights: state.weights,
          optimizer: state.optimizer,
        });
      },
      metrics,
      progress: new TrainingProgress({
        totalSteps: plan.totalSteps,
        stepsPerEpoch: plan.stepsPerEpoch,
      }),
      timings,
      signal: opts.signal,
    });
    logTimings(timings.summary(), world.length, opts.allReduce);
    if (result.interrupted) {
      throw new TrainingInterrupted(
        result.steps,
        runDir,
        String(opts.signal?.reason ?? 'a signal'),
      );
    }
    // saveCheckpoint put the last state (BatchNorm statistics averaged) into the coordinator's model.
    await exportModel(s.model, runDir, {
      model: config.model,
      preprocessing: config.preprocessing,
      classNames: [...data.classNames],
      data: config.data.dataDir ? { ...config.data, dataDir: data.dataDir } : config.data,
      seed: config.seed,
      steps: result.steps,
      valAccuracy: result.valAccuracy,
    });
    const backends = [...new Set(world.map((a) => a.device?.backend ?? 'unknown'))];
    return {
      model: config.model,
      backend: backends.join(','),
      workers: world.length,
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

function logTimings(t: TimingSummary | undefined, workers: number, mode: string): void {
  if (!t) return;
  const ms = (x: number) => Number(x.toFixed(1));
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
