import { performance } from 'node:perf_hooks';
import type { Bucket } from '../shared/collectives/bucket-plan.js';
import type { GradientListener } from '../shared/training/gradient-tap.js';

/** One pass's timeline: what an all-reduce overlapped with the backward pass could start on. */
export interface PassReadiness {
  /** From the start of the pass to the loss. */
  forwardMs: number;
  /** From the loss to the last gradient made final. */
  backwardMs: number;
  /** When each weight's gradient was final, ms after the backward pass started. */
  parameterReadyMs: number[];
  /** When each bucket's last gradient was final, ms after the backward pass started. */
  bucketReadyMs: number[];
}

/**
 * Times one forward/backward pass through the gradient tap (give it to computeGradients as
 * the listener, after start()): `bench compute` reports from it what overlapping the all-reduce
 * with the backward pass could hide.
 */
export class ReadinessRecorder implements GradientListener {
  private startedAt = 0;
  private backwardAt = 0;
  private readonly readyAt: number[];

  constructor(parameters: number) {
    this.readyAt = new Array<number>(parameters).fill(Number.NaN);
  }

  /** Call right before the pass. */
  start(): void {
    this.startedAt = performance.now();
    this.backwardAt = Number.NaN;
    this.readyAt.fill(Number.NaN);
  }

  backwardStarted(): void {
    this.backwardAt = performance.now();
  }

  gradientReady(parameter: number): void {
    this.readyAt[parameter] = performance.now();
  }

  /** The pass just timed, with `buckets` (the reducer's plan) placed on it. */
  result(buckets: readonly Bucket[]): PassReadiness {
    const missing = this.readyAt.findIndex((t) => Number.isNaN(t));
    if (Number.isNaN(this.backwardAt) || missing >= 0) {
      throw new Error(`the pass delivered no gradient for parameter ${missing}`);
    }
    const parameterReadyMs = this.readyAt.map((t) => t - this.backwardAt);
    return {
      forwardMs: this.backwardAt - this.startedAt,
      backwardMs: Math.max(...parameterReadyMs),
      parameterReadyMs,
      bucketReadyMs: buckets.map((b) =>
        Math.max(...parameterReadyMs.slice(b.firstParameter, b.endParameter)),
      ),
    };
  }
}
