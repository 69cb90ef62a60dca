import { DownsampledSeries } from '../../shared/observe/downsampled-series.js';
import type { RankStep, RunEvent, RunObserver, RunStarted, WorkerStateName } from './run-events.js';

/** Steps over which the step split and the ETA are averaged (the recent pace). */
const RECENT_STEPS = 20;
/** Per worker and for the run, the membership and worker events kept for the page. */
const EVENTS_KEPT = 50;

export type StepPoint = {
  step: number;
  loss: number;
  accuracy: number;
  imagesPerSec: number;
  /** All-reduce bandwidth: bytes each rank sent over its time in the all-reduce, MB/s. */
  allReduceMBps: number;
  /** ms since the epoch (coordinator clock). */
  time: number;
};

export type EvalPoint = { step: number; epoch: number; loss: number; accuracy: number };

export interface WorkerRow {
  rank: number;
  host: string;
  device: string;
  backend: string;
  state: WorkerStateName;
  /** Last time the worker was heard from (ms since the epoch). */
  lastHeartbeat: number;
  activity: string;
}

export interface RunEventRow {
  time: number;
  text: string;
}

/** What the dashboard shows: everything bounded, whatever the length of the run. */
export interface RunSnapshot {
  status: 'waiting' | 'training' | 'completed' | 'interrupted' | 'failed';
  message?: string;
  runDir?: string;
  config?: Record<string, unknown>;
  worldSize: number;
  step: number;
  totalSteps: number;
  epoch: number;
  startedAt?: number;
  /** Seconds left at the recent pace; undefined before the second step. */
  etaSeconds?: number;
  steps: StepPoint[];
  evals: EvalPoint[];
  /** Mean ms per phase of each rank over the recent steps. */
  split: RankStep[];
  workers: WorkerRow[];
  events: RunEventRow[];
}

/**
 * The live state of a run for the dashboard, built from run events: curves downsampled
 * (DownsampledSeries), the step split averaged over the last RECENT_STEPS steps, the workers'
 * table and the latest events. Updating is cheap (it runs on every step); snapshot() copies.
 */
export class RunState implements RunObserver {
  private started: RunStarted | undefined;
  private status: RunSnapshot['status'] = 'waiting';
  private message: string | undefined;
  private step = 0;
  private epoch = 0;
  private readonly steps = new DownsampledSeries<StepPoint>();
  private readonly evals = new DownsampledSeries<EvalPoint>(200);
  private recent: { time: number; ranks: RankStep[] }[] = [];
  private readonly workers = new Map<number, WorkerRow>();
  private events: RunEventRow[] = [];
  /** Bumped on every change, so that pushing can skip an unchanged state. */
  version = 0;

  onEvent(e: RunEvent): void {
    this.version++;
    switch (e.type) {
      case 'run-started':
        this.started = e;
        this.status = 'training';
        this.step = e.startStep;
        this.note(e.time, `run started: ${e.worldSize} workers, ${e.totalSteps} steps`);
        break;
      case 'step': {
        this.step = e.step;
        this.epoch = e.epoch;
        const allReduceMs = mean(e.ranks.map((r) => r.allReduceMs));
        this.steps.push({
          step: e.step,
          loss: e.loss,
          accuracy: e.accuracy,
          imagesPerSec: e.imagesPerSec,
          allReduceMBps: allReduceMs > 0 ? e.allReduceBytesPerRank / 1e3 / allReduceMs : 0,
          time: e.time,
        });
        this.recent.push({ time: e.time, ranks: e.ranks });
        if (this.recent.length > RECENT_STEPS) this.recent.shift();
        break;
      }
      case 'eval':
        this.evals.push({ step: e.step, epoch: e.epoch, loss: e.loss, accuracy: e.accuracy });
        break;
      case 'worker': {
        const row = this.workers.get(e.rank) ?? {
          rank: e.rank,
          host: '',
          device: '',
          backend: '',
          state: e.state,
          lastHeartbeat: e.time,
          activity: '',
        };
        const changed = row.state !== e.state || !this.workers.has(e.rank);
        Object.assign(row, {
          host: e.host ?? row.host,
          device: e.device ?? row.device,
          backend: e.backend ?? row.backend,
          state: e.state,
          lastHeartbeat: e.time,
          activity: e.activity ?? row.activity,
        });
        this.workers.set(e.rank, row);
        if (changed) this.note(e.time, `rank ${e.rank} ${e.state}${e.host ? ` (${e.host})` : ''}`);
        break;
      }
      case 'membership':
        this.note(
          e.time,
          `membership generation ${e.generation}: ${e.worldSize} workers from step ${e.step + 1} (${e.reason})`,
        );
        break;
      case 'checkpoint':
        this.note(e.startMs, `checkpoint after step ${e.step} (${(e.bytes / 1e6).toFixed(1)} MB)`);
        break;
      case 'run-ended':
        this.status = e.outcome;
        this.message = e.message;
        this.note(e.time, `run ${e.outcome}${e.message ? `: ${e.message}` : ''}`);
        break;
      case 'coordinator-span':
        this.version--;
        break;
    }
  }

  snapshot(): RunSnapshot {
    const s = this.started;
    return {
      status: this.status,
      ...(this.message ? { message: this.message } : {}),
      runDir: s?.runDir,
      config: s?.config,
      worldSize: s?.worldSize ?? this.workers.size,
      step: this.step,
      totalSteps: s?.totalSteps ?? 0,
      epoch: this.epoch,
      startedAt: s?.time,
      etaSeconds: this.eta(),
      steps: this.steps.values(),
      evals: this.evals.values(),
      split: this.split(),
      workers: [...this.workers.values()].sort((a, b) => a.rank - b.rank).map((w) => ({ ...w })),
      events: [...this.events],
    };
  }

  private eta(): number | undefined {
    const s = this.started;
    if (!s || this.recent.length < 2 || this.status !== 'training') return undefined;
    const first = this.recent[0];
    const last = this.recent[this.recent.length - 1];
    const msPerStep = (last.time - first.time) / (this.recent.length - 1);
    return (Math.max(0, s.totalSteps - this.step) * msPerStep) / 1000;
  }

  private split(): RankStep[] {
    const byRank = new Map<number, RankStep[]>();
    for (const { ranks } of this.recent) {
      for (const r of ranks) byRank.set(r.rank, [...(byRank.get(r.rank) ?? []), r]);
    }
    return [...byRank.entries()]
      .sort(([a], [b]) => a - b)
      .map(([rank, all]) => ({
        rank,
        dataMs: mean(all.map((r) => r.dataMs)),
        computeMs: mean(all.map((r) => r.computeMs)),
        waitMs: mean(all.map((r) => r.waitMs)),
        allReduceMs: mean(all.map((r) => r.allReduceMs)),
        applyMs: mean(all.map((r) => r.applyMs)),
      }));
  }

  private note(time: number, text: string): void {
    this.events.push({ time, text });
    if (this.events.length > EVENTS_KEPT) this.events = this.events.slice(-EVENTS_KEPT);
  }
}

function mean(xs: readonly number[]): number {
  return xs.length > 0 ? xs.reduce((s, x) => s + x, 0) / xs.length : 0;
}
