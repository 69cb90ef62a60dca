import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StepMetrics } from '../shared/training/metrics-writer.js';

/** One training step as metrics.jsonl records it, with its wall interval. */
export interface TimedStep {
  step: number;
  images: number;
  /** When the step's metrics were collected, ms since the epoch. */
  endMs: number;
  /** The step's wall time (images / imagesPerSec), ms. */
  ms: number;
  timings: NonNullable<StepMetrics['timings']> | undefined;
}

/** The step records of the run folder `runDir` (metrics.jsonl), in order. */
export async function readSteps(runDir: string): Promise<TimedStep[]> {
  const text = await readFile(join(runDir, 'metrics.jsonl'), 'utf8');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as StepMetrics | { type: string })
    .filter((r): r is StepMetrics => r.type === 'step')
    .map((r) => ({
      step: r.step,
      images: r.images,
      endMs: Date.parse(r.time),
      ms: (r.images / r.imagesPerSec) * 1000,
      timings: r.timings,
    }));
}

/**
 * Images per second over `steps`: their images over their summed wall time. The
 * coordinator plans steps ahead, so single steps' times are uneven (one long, the
 * next almost nothing); sums over several steps are what counts.
 */
export function throughput(steps: readonly TimedStep[]): number {
  const images = steps.reduce((s, x) => s + x.images, 0);
  const ms = steps.reduce((s, x) => s + x.ms, 0);
  return images / (ms / 1000);
}

/** Images trained by time `t` (ms since the epoch), linear between the step records. */
function imagesBy(steps: readonly TimedStep[], t: number): number {
  let done = 0;
  let prevEnd = steps[0].endMs - steps[0].ms;
  for (const s of steps) {
    if (t <= prevEnd) return done;
    if (t < s.endMs) return done + (s.images * (t - prevEnd)) / (s.endMs - prevEnd);
    done += s.images;
    prevEnd = s.endMs;
  }
  return done;
}

/**
 * What each of several runs that ran at the same time achieved while all of them
 * were past warm-up and not yet done: the images each trained in that common
 * window over its length (images/s). `runs[i]` holds run i's steps after warm-up.
 * Undefined when there is no such window.
 */
export function concurrentThroughputs(
  runs: readonly (readonly TimedStep[])[],
): { imagesPerSec: number[]; windowMs: number } | undefined {
  const from = Math.max(...runs.map((steps) => steps[0].endMs - steps[0].ms));
  const to = Math.min(...runs.map((steps) => steps[steps.length - 1].endMs));
  if (!(to > from)) return undefined;
  const seconds = (to - from) / 1000;
  return {
    imagesPerSec: runs.map((steps) => (imagesBy(steps, to) - imagesBy(steps, from)) / seconds),
    windowMs: to - from,
  };
}

/** Mean of each timing over `steps` (steps without timings count as zero). */
export function meanTimings(steps: readonly TimedStep[]) {
  const mean = (f: (t: NonNullable<TimedStep['timings']>) => number) =>
    steps.reduce((s, x) => s + (x.timings ? f(x.timings) : 0), 0) / steps.length;
  return {
    computeMs: mean((t) => t.computeMs),
    allreduceMs: mean((t) => t.allReduceMs),
    waitMs: mean((t) => t.waitMs),
    dataMs: mean((t) => t.dataMs),
    applyMs: mean((t) => t.applyMs),
  };
}
