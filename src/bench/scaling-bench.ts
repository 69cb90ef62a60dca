import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { GradCompression } from '../shared/collectives/grad-compression.js';
import { log } from '../shared/logging/logger.js';
import { trainOnEmulatedNetwork } from './emulated-training.js';
import type { LinkRate } from './link-rate.js';
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
  /**
   * `--grad-compression` of the N-worker runs. The independent runs send no gradients, so
   * they run without it: the efficiency is the compressed run against plain single workers.
   */
  compression: GradCompression;
  /** Whether the N-worker runs overlap the all-reduce with the backward pass (train --no-overlap). */
  overlap: boolean;
  /** Extra `train` flags every run gets (--backend, --dataset, --data, ...). */
  trainArgs: string[];
  /** The workers' --backend and --data (also in trainArgs), for runs on an emulated network. */
  backend: string;
  dataDir?: string;
  /**
   * Run the N-worker runs with every process on its own host of an EmulatedNetwork with
   * links of this rate; the independent runs, which send no gradients, stay on loopback.
   */
  link?: LinkRate;
  /** Folder for the runs' folders and logs. */
  runsDir: string;
  /** Bound on each `train` run. */
  runTimeoutMs: number;
  /**
   * Rounds of runs for every N, alternating which side goes first (the N-worker run or
   * the independent runs): on shared cores the machine's speed drifts over minutes,
   * and whatever runs later would otherwise carry the drift into the efficiency.
   */
  rounds: number;
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
  /**
   * (all-reduce + wait) / step time, from the N-worker run alone: what synchronising
   * costs, free of the drift between runs that the efficiencies suffer on shared cores.
   */
  syncShare: number;
  /** N independent single-worker runs at the same time: their summed images/s. */
  independentImagesPerSec: number;
  /** Distribution efficiency of each round alone: its spread shows how noisy the machine was. */
  roundEfficiencies: number[];
  /** Steps measured after warm-up (all rounds). */
  measuredSteps: number;
  /** How long the independent runs were all training at once (past warm-up), ms. */
  independentWindowMs: number;
  /** The machine's 1-minute load average as the N-worker run ended (others' work shows here). */
  loadAverage: number;
}

export interface ScalingReport {
  model: string;
  allreduce: 'ring' | 'star';
  compression: GradCompression;
  /**
   * The N-worker runs overlapped the all-reduce with the backward pass. Reports written before
   * overlap existed lack it: they did not.
   */
  overlap: boolean;
  /** The emulated links' rate (absent: loopback). */
  link?: string;
  batchSize: number;
  steps: number;
  warmupSteps: number;
  rounds: number;
  results: ScalingRow[];
}

/**
 * `bench scaling`: for each N, a real `train --workers N` run, and N independent
 * `train --workers 1` runs started together (the same code path without any
 * all-reduce), all with the same per-worker batch, in `rounds` rounds that alternate
 * which side goes first. Throughput is images over wall time of the steps after
 * warm-up and before the last (metrics.jsonl); the independent runs count only the
 * window where all of them were training. N = 1 is its own independent run. Each
 * side's figure is its mean over the rounds.
 */
export async function runScalingBench(opts: ScalingOptions): Promise<ScalingReport> {
  const rows: Omit<ScalingRow, 'scalingEfficiency'>[] = [];
  for (const n of opts.workers) {
    const distributed: Measured[] = [];
    const independent: { imagesPerSec: number; windowMs: number }[] = [];
    for (let round = 0; round < opts.rounds; round++) {
      const dir = opts.rounds > 1 ? join(opts.runsDir, `round-${round + 1}`) : opts.runsDir;
      const of = opts.rounds > 1 ? ` (round ${round + 1} of ${opts.rounds})` : '';
      const runDistributed = async () => {
        log().info(`bench scaling: ${opts.model}, ${n} worker${n > 1 ? 's' : ''}${of}`);
        distributed.push(await measureDistributed(opts, n, dir));
      };
      const runIndependent = async () => {
        log().info(
          `bench scaling: ${opts.model}, ${n} independent single-worker runs at once${of}`,
        );
        independent.push(await measureIndependent(opts, n, dir));
      };
      if (n === 1) await runDistributed();
      else if (round % 2 === 0) await runDistributed().then(runIndependent);
      else await runIndependent().then(runDistributed);
    }
    if (n === 1)
      independent.push(
        ...distributed.map((d) => ({ imagesPerSec: d.imagesPerSec, windowMs: runMs(d.steps) })),
      );
    const imagesPerSec = mean(distributed.map((d) => d.imagesPerSec));
    const independentImagesPerSec = mean(independent.map((d) => d.imagesPerSec));
    const steps = distributed.flatMap((d) => d.steps);
    const timings = meanTimings(steps);
    const stepMs = steps.reduce((s, x) => s + x.ms, 0) / steps.length;
    rows.push({
      workers: n,
      imagesPerSec,
      distributionEfficiency: imagesPerSec / independentImagesPerSec,
      ...timings,
      stepMs,
      syncShare: (timings.allreduceMs + timings.waitMs) / stepMs,
      independentImagesPerSec,
      roundEfficiencies: distributed.map((d, i) => d.imagesPerSec / independent[i].imagesPerSec),
      measuredSteps: steps.length,
      independentWindowMs: independent.reduce((s, d) => s + d.windowMs, 0),
      loadAverage: Math.max(...distributed.map((d) => d.loadAverage)),
    });
  }
  const one = rows.find((r) => r.workers === 1);
  return {
    model: opts.model,
    allreduce: opts.allreduce,
    compression: opts.compression,
    overlap: opts.overlap,
    link: opts.link?.text,
    batchSize: opts.batchSize,
    steps: opts.steps,
    warmupSteps: opts.warmupSteps,
    rounds: opts.rounds,
    results: rows.map((r) => ({
      ...r,
      scalingEfficiency: one ? r.imagesPerSec / (r.workers * one.imagesPerSec) : Number.NaN,
    })),
  };
}

interface Measured {
  imagesPerSec: number;
  steps: TimedStep[];
  /** The machine's 1-minute load average as the run ended. */
  loadAverage: number;
}

/** The `train` flags of one run of `workers` workers. */
function runFlags(opts: ScalingOptions, workers: number): string[] {
  return [...sharedFlags(opts, workers), '--workers', String(workers)];
}

/** The `train` (or `coordinator`) flags of a run of `workers` workers, without --workers. */
function sharedFlags(opts: ScalingOptions, workers: number): string[] {
  const compression = workers > 1 ? ['--grad-compression', opts.compression] : [];
  const overlap = workers > 1 && !opts.overlap ? ['--no-overlap'] : [];
  return [
    ...compression,
    ...overlap,
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
}

// The last step is left out too: its interval at the coordinator also holds the run's
// final fingerprints, evaluation and checkpoint.
function measured(opts: ScalingOptions, steps: TimedStep[]): TimedStep[] {
  return steps.filter((s) => s.step > opts.warmupSteps && s.step < opts.steps);
}

async function measureDistributed(opts: ScalingOptions, n: number, dir: string): Promise<Measured> {
  const runDir = runFolder(dir, n);
  if (opts.link) {
    await trainOnEmulatedNetwork({
      trainFlags: sharedFlags(opts, n),
      workers: n,
      backend: opts.backend,
      dataDir: opts.dataDir,
      model: opts.model,
      runDir,
      link: opts.link,
      timeoutMs: opts.runTimeoutMs,
    });
  } else {
    await runTraining(runFlags(opts, n), runDir, opts.runTimeoutMs);
  }
  const loadAverage = loadavg()[0];
  const steps = measured(opts, await readSteps(runDir));
  return { imagesPerSec: throughput(steps), steps, loadAverage };
}

/** N single-worker runs started together: their summed images/s while all of them trained. */
async function measureIndependent(opts: ScalingOptions, n: number, dir: string) {
  const dirs = Array.from({ length: n }, (_, i) => runFolder(dir, n, i));
  await Promise.all(dirs.map((d) => runTraining(runFlags(opts, 1), d, opts.runTimeoutMs)));
  const runs = await Promise.all(dirs.map(async (d) => measured(opts, await readSteps(d))));
  const together = concurrentThroughputs(runs);
  if (!together || together.windowMs < 0.5 * Math.min(...runs.map(runMs))) {
    log().warn(
      `the ${n} independent runs trained at the same time for less than half of their ` +
        'measured steps: their figures include time when fewer of them ran (give more --steps)',
    );
  }
  const perRun = together?.imagesPerSec ?? runs.map(throughput);
  return {
    imagesPerSec: perRun.reduce((a, b) => a + b, 0),
    windowMs: together?.windowMs ?? 0,
  };
}

function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** Wall time of a run's steps. */
function runMs(steps: readonly TimedStep[]): number {
  return steps[steps.length - 1].endMs - (steps[0].endMs - steps[0].ms);
}
