import { loadavg } from 'node:os';
import { log } from '../shared/logging/logger.js';
import {
  concurrentThroughputs,
  meanTimings,
  readSteps,
  type TimedStep,
  throughput,
} from './run-metrics.js';
import { runFolder, runTraining } from './train-run.js';

export interface ScalingOptions {
  model: string;
  workers: number[];
  /**
   * Steps of every run; the first `warmupSteps` and the last are left out of every
   * figure (at least one step must remain).
   */
  steps: number;
  warmupSteps: number;
  /** Per worker, as in `train --workers`. */
  batchSize: number;
  allreduce: 'ring' | 'star';
  /** Extra `train` flags every run gets (--backend, --dataset, --data, ...). */
  trainArgs: string[];
  /** Folder for the runs' folders and logs. */
  runsDir: string;
  /** Bound on each `train` run. */
  runTimeoutMs: number;
}

export interface ScalingRow {
  workers: number;
  imagesPerSec: number;
  scalingEfficiency: number;
  distributionEfficiency: number;
  computeMs: number;
  allreduceMs: number;
  waitMs: number;
  dataMs: number;
  applyMs: number;
  /** Wall time of a step, mean over the measured steps. */
  stepMs: number;
  /** N independent single-worker runs at the same time: their summed images/s. */
  independentImagesPerSec: number;
  /** Steps measured after warm-up. */
  measuredSteps: number;
  /** How long the independent runs were all training at once (past warm-up), ms. */
  independentWindowMs: number;
  /** The machine's 1-minute load average as the N-worker run ended (others' work shows here). */
  loadAverage: number;
}

export interface ScalingReport {
  model: string;
  allreduce: 'ring' | 'star';
  batchSize: number;
  steps: number;
  warmupSteps: number;
  results: ScalingRow[];
}

/**
 * `bench scaling`: for each N, a real `train --workers N` run, and N independent
 * `train --workers 1` runs started together (the same code path without any
 * all-reduce), all with the same per-worker batch. Throughput is images over wall
 * time of the steps after warm-up and before the last (metrics.jsonl); the independent runs count only
 * the window where all of them were training. N = 1 is its own independent run.
 */
export async function runScalingBench(opts: ScalingOptions): Promise<ScalingReport> {
  const common = [
    '--model',
    opts.model,
    '--steps',
    String(opts.steps),
    '--batch-size',
    String(opts.batchSize),
    '--allreduce',
    opts.allreduce,
    ...opts.trainArgs,
  ];
  // The last step is left out too: its interval at the coordinator also holds the run's
  // final fingerprints, evaluation and checkpoint.
  const measured = (steps: TimedStep[]) =>
    steps.filter((s) => s.step > opts.warmupSteps && s.step < opts.steps);
  const rows: Omit<ScalingRow, 'scalingEfficiency'>[] = [];
  for (const n of opts.workers) {
    log().info(`bench scaling: ${opts.model}, ${n} worker${n > 1 ? 's' : ''}`);
    const dir = runFolder(opts.runsDir, n);
    await runTraining([...common, '--workers', String(n)], dir, opts.runTimeoutMs);
    const loadAverage = loadavg()[0];
    const steps = measured(await readSteps(dir));
    const imagesPerSec = throughput(steps);
    let independent = { imagesPerSec, windowMs: runMs(steps) };
    if (n > 1) {
      log().info(`bench scaling: ${opts.model}, ${n} independent single-worker runs at once`);
      const dirs = Array.from({ length: n }, (_, i) => runFolder(opts.runsDir, n, i));
      await Promise.all(
        dirs.map((d) => runTraining([...common, '--workers', '1'], d, opts.runTimeoutMs)),
      );
      const runs = await Promise.all(dirs.map(async (d) => measured(await readSteps(d))));
      const together = concurrentThroughputs(runs);
      if (!together || together.windowMs < 0.5 * Math.min(...runs.map(runMs))) {
        log().warn(
          `the ${n} independent runs trained at the same time for less than half of their ` +
            'measured steps: their figures include time when fewer of them ran (give more --steps)',
        );
      }
      const perRun = together?.imagesPerSec ?? runs.map(throughput);
      independent = {
        imagesPerSec: perRun.reduce((a, b) => a + b, 0),
        windowMs: together?.windowMs ?? 0,
      };
    }
    const t = meanTimings(steps);
    rows.push({
      workers: n,
      imagesPerSec,
      distributionEfficiency: imagesPerSec / independent.imagesPerSec,
      ...t,
      stepMs: steps.reduce((s, x) => s + x.ms, 0) / steps.length,
      independentImagesPerSec: independent.imagesPerSec,
      measuredSteps: steps.length,
      independentWindowMs: independent.windowMs,
      loadAverage,
    });
  }
  const one = rows.find((r) => r.workers === 1);
  return {
    model: opts.model,
    allreduce: opts.allreduce,
    batchSize: opts.batchSize,
    steps: opts.steps,
    warmupSteps: opts.warmupSteps,
    results: rows.map((r) => ({
      ...r,
      scalingEfficiency: one ? r.imagesPerSec / (r.workers * one.imagesPerSec) : Number.NaN,
    })),
  };
}

/** Wall time of a run's steps. */
function runMs(steps: readonly TimedStep[]): number {
  return steps[steps.length - 1].endMs - (steps[0].endMs - steps[0].ms);
}
