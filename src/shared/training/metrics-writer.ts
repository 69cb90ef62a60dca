import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';
import { writeFileAtomic } from './atomic-file.js';

/** One line per training step. `step` counts the steps completed, this one included. */
export interface StepMetrics {
  type: 'step';
  step: number;
  epoch: number;
  /** Mean loss and accuracy of this step's global batch. */
  loss: number;
  accuracy: number;
  images: number;
  lr: number;
  /** Images of this step over its wall time (batch building, forward, backward, update). */
  imagesPerSec: number;
  time: string;
  /** Distributed runs: the number of workers, and the step's timings over them (ms). */
  workers?: number;
  timings?: {
    computeMs: number;
    allReduceMs: number;
    waitMs: number;
    dataMs: number;
    applyMs: number;
  };
  /** The update was skipped (a non-finite gradient on some worker). */
  skipped?: boolean;
  /** Distributed runs: each rank's own timings (ms), which `timings` combines. */
  ranks?: {
    rank: number;
    dataMs: number;
    computeMs: number;
    waitMs: number;
    allReduceMs: number;
    applyMs: number;
  }[];
}

/** One line per evaluation on the validation split, after `step` steps. */
export interface EvalMetrics {
  type: 'eval';
  step: number;
  epoch: number;
  loss: number;
  accuracy: number;
  count: number;
  time: string;
}

/** One line per membership change: the new generation starts after `step` steps. */
export interface MembershipMetrics {
  type: 'membership';
  step: number;
  generation: number;
  /** Workers of the new generation, and their ranks (admission ranks, in collective order). */
  workers: number;
  ranks: number[];
  lost: number[];
  left: number[];
  joined: number[];
  cause: string;
  /** From the change's detection to the new generation being ready. */
  seconds: number;
  time: string;
}

export type MetricsRecord = StepMetrics | EvalMetrics | MembershipMetrics;

/**
 * Appends metrics to a JSON-lines file (`metrics.jsonl` in the run folder), one object per
 * line, written synchronously so that the file is complete up to the last step whatever
 * happens next. Not for concurrent writers.
 */
export class MetricsWriter {
  private constructor(private fd: number | undefined) {}

  /**
   * Opens `path` for appending, after `keepUpToStep` steps: the lines of later steps, which the
   * run will train and log again, are dropped first; a run that starts at step 0 keeps none
   * (they were an earlier run's).
   */
  static async open(path: string, keepUpToStep: number): Promise<MetricsWriter> {
    if (existsSync(path)) {
      const kept = readFileSync(path, 'utf8')
        .split('\n')
        .filter((line) => keepUpToStep > 0 && line.trim() !== '' && lineStep(line) <= keepUpToStep);
      await writeFileAtomic(path, [Buffer.from(kept.map((l) => `${l}\n`).join(''), 'utf8')]);
    }
    return new MetricsWriter(openSync(path, 'a'));
  }

  write(record: MetricsRecord): void {
    if (this.fd === undefined) throw new Error('metrics file already closed');
    writeSync(this.fd, `${JSON.stringify(record)}\n`);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** A line's step; a line that cannot be read counts as past any checkpoint (dropped). */
function lineStep(line: string): number {
  try {
    const step = (JSON.parse(line) as { step?: unknown }).step;
    return typeof step === 'number' ? step : Number.POSITIVE_INFINITY;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** Reads a metrics file back (for tests and tools). */
export function readMetrics(path: string): MetricsRecord[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as MetricsRecord);
}
