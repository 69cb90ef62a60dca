import { log } from '../../shared/logging/logger.js';
import { wallClockMs } from '../../shared/observe/wall-clock.js';

/**
 * What the training loop tells the observers (dashboard, /metrics, trace): one narrow seam, so
 * that the loop knows nothing of HTTP, Prometheus or trace files, and an observer can be added
 * without touching the loop. Every time is in ms since the epoch on the coordinator's clock
 * (see nowMs); workers' times are converted to it (ClockOffsets) before they get here.
 */
export type RunEvent =
  | RunStarted
  | StepCompleted
  | Evaluated
  | Checkpointed
  | WorkerChanged
  | MembershipChanged
  | CoordinatorSpan
  | RunEnded;

export interface RunStarted {
  type: 'run-started';
  time: number;
  runDir: string;
  /** The training configuration (config.json) and the distributed settings, for display. */
  config: Record<string, unknown>;
  worldSize: number;
  totalSteps: number;
  stepsPerEpoch: number;
  globalBatch: number;
  startStep: number;
  /** Bytes one all-reduce carries (the gradient as it travels: float32, or bf16). */
  gradientBytes: number;
  allReduce: string;
}

/** One rank's share of a step, in ms; `startMs` (coordinator clock) where the worker sent it. */
export interface RankStep {
  rank: number;
  startMs?: number;
  dataMs: number;
  computeMs: number;
  /** Waiting for the plan and, at the barrier, for the slower ranks. */
  waitMs: number;
  /** The part of waitMs spent at the barrier before the all-reduce, where the worker sent it. */
  barrierMs?: number;
  allReduceMs: number;
  applyMs: number;
  /** Each all-reduce bucket, in ms from the all-reduce's start (StepTimings.buckets). */
  buckets?: { index: number; startMs: number; endMs: number; bytes: number }[];
}

/** One rank's span (coordinator clock, ms), such as its part of an evaluation. */
export interface RankSpan {
  rank: number;
  startMs: number;
  durationMs: number;
}

export interface StepCompleted {
  type: 'step';
  /** Steps completed, this one included (as in metrics.jsonl). */
  step: number;
  epoch: number;
  time: number;
  loss: number;
  accuracy: number;
  images: number;
  imagesPerSec: number;
  lr: number;
  /** Bytes each rank sent in this step's all-reduce: 2(N−1)/N·S in a ring, S in a star. */
  allReduceBytesPerRank: number;
  ranks: RankStep[];
  skipped: boolean;
}

export interface Evaluated {
  type: 'eval';
  step: number;
  epoch: number;
  loss: number;
  accuracy: number;
  count: number;
  startMs: number;
  durationMs: number;
  /** Each rank's own evaluation (its shard), where the rank sent it. */
  ranks?: RankSpan[];
}

export interface Checkpointed {
  type: 'checkpoint';
  step: number;
  startMs: number;
  durationMs: number;
  bytes: number;
}

export type WorkerStateName = 'joined' | 'training' | 'left' | 'failed';

/** A worker joined, trains, sent a heartbeat (`activity`), left or failed. */
export interface WorkerChanged {
  type: 'worker';
  time: number;
  rank: number;
  state: WorkerStateName;
  host?: string;
  device?: string;
  backend?: string;
  /** What it said it was doing (heartbeats), or why it left. */
  activity?: string;
}

export interface MembershipChanged {
  type: 'membership';
  time: number;
  generation: number;
  worldSize: number;
  /** Before this step (0-based) the new membership holds. */
  step: number;
  reason: string;
}

/** The coordinator's own work: planning a step, collecting it, comparing fingerprints. */
export interface CoordinatorSpan {
  type: 'coordinator-span';
  name: 'plan' | 'collect' | 'fingerprint' | 'evaluate' | 'checkpoint';
  step: number;
  startMs: number;
  durationMs: number;
}

export interface RunEnded {
  type: 'run-ended';
  time: number;
  outcome: 'completed' | 'interrupted' | 'failed';
  message?: string;
}

/** A consumer of run events. `close` flushes what it holds (the trace file). */
export interface RunObserver {
  onEvent(event: RunEvent): void;
  close?(): Promise<void>;
}

/** The coordinator's clock in ms since the epoch, with sub-millisecond resolution. */
export function nowMs(): number {
  return wallClockMs();
}

/**
 * Hands every event to every observer. An observer that throws is logged and dropped: seeing
 * the run must never stop it.
 */
export class RunEventHub {
  private observers: RunObserver[];

  constructor(observers: readonly RunObserver[] = []) {
    this.observers = [...observers];
  }

  add(observer: RunObserver): void {
    this.observers.push(observer);
  }

  emit(event: RunEvent): void {
    for (const o of [...this.observers]) {
      try {
        o.onEvent(event);
      } catch (error) {
        log().warn(
          { err: error },
          `an observer of the run failed on a ${event.type} event and is switched off: ${(error as Error).message}`,
        );
        this.observers = this.observers.filter((x) => x !== o);
      }
    }
  }

  async close(): Promise<void> {
    for (const o of this.observers) await o.close?.();
  }
}
