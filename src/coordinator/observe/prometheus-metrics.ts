import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { RankStep, RunEvent, RunObserver, WorkerStateName } from './run-events.js';

const PHASES = ['data', 'compute', 'wait', 'all_reduce', 'apply'] as const;
const WORKER_STATES: WorkerStateName[] = ['joined', 'training', 'left', 'failed'];
/** From a fast all-reduce bucket on loopback to a slow ResNet step on a CPU. */
const SECONDS_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

const MISNAMED_DEFAULTS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

const phaseMs = (r: RankStep, phase: (typeof PHASES)[number]): number =>
  ({
    data: r.dataMs,
    compute: r.computeMs,
    wait: r.waitMs,
    all_reduce: r.allReduceMs,
    apply: r.applyMs,
  })[phase];

/**
 * The run's metrics in a prom-client registry of its own, for `/metrics`, named by Prometheus'
 * conventions (tfjs_ddp_ prefix, seconds and bytes, _total for counters) plus prom-client's
 * process and Node.js metrics. Labels: phase (5), split (2), state (4), and rank only where a
 * straggler must be told apart (per-rank phase time, heartbeats), so series grow with the
 * world size and nothing else.
 */
export class PrometheusMetrics implements RunObserver {
  readonly registry = new Registry();
  private readonly stepSeconds: Histogram<'phase'>;
  private readonly rankPhaseSeconds: Gauge<'rank' | 'phase'>;
  private readonly steps: Counter;
  private readonly images: Counter;
  private readonly imagesPerSecond: Gauge;
  private readonly loss: Gauge<'split'>;
  private readonly accuracy: Gauge<'split'>;
  private readonly allReduceBytes: Counter;
  private readonly allReduceSeconds: Histogram;
  private readonly workers: Gauge<'state'>;
  private readonly heartbeat: Gauge<'rank'>;
  private readonly membershipChanges: Counter;
  private readonly checkpointSeconds: Histogram;
  private readonly checkpointBytes: Gauge;
  private readonly totalSteps: Gauge;
  private readonly workerStates = new Map<number, WorkerStateName>();

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    // Gauges that prom-client names like counters, which `promtool check metrics` rejects.
    for (const name of MISNAMED_DEFAULTS) this.registry.removeSingleMetric(name);
    this.stepSeconds = new Histogram({
      name: 'tfjs_ddp_step_seconds',
      help: 'Time of a training step by phase (data and compute: the slowest rank; wait, all_reduce and apply: the mean over ranks; step: the whole step at the coordinator)',
      labelNames: ['phase'],
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.rankPhaseSeconds = new Gauge({
      name: 'tfjs_ddp_rank_phase_seconds',
      help: "Each rank's time per phase in the last step (a straggler stands out)",
      labelNames: ['rank', 'phase'],
      registers,
    });
    this.steps = new Counter({
      name: 'tfjs_ddp_steps_total',
      help: 'Training steps completed',
      registers,
    });
    this.images = new Counter({
      name: 'tfjs_ddp_images_total',
      help: 'Images trained on',
      registers,
    });
    this.imagesPerSecond = new Gauge({
      name: 'tfjs_ddp_images_per_second',
      help: 'Throughput of the last step',
      registers,
    });
    this.loss = new Gauge({
      name: 'tfjs_ddp_loss',
      help: 'Loss of the last training step (split="train") or evaluation (split="val")',
      labelNames: ['split'],
      registers,
    });
    this.accuracy = new Gauge({
      name: 'tfjs_ddp_accuracy_ratio',
      help: 'Accuracy of the last training step (split="train") or evaluation (split="val")',
      labelNames: ['split'],
      registers,
    });
    this.allReduceBytes = new Counter({
      name: 'tfjs_ddp_allreduce_sent_bytes_total',
      help: 'Bytes sent by all ranks in all-reduces',
      registers,
    });
    this.allReduceSeconds = new Histogram({
      name: 'tfjs_ddp_allreduce_seconds',
      help: 'Time inside the all-reduce per step (mean over ranks)',
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.workers = new Gauge({
      name: 'tfjs_ddp_workers',
      help: 'Workers by state',
      labelNames: ['state'],
      registers,
    });
    this.heartbeat = new Gauge({
      name: 'tfjs_ddp_worker_last_seen_timestamp_seconds',
      help: 'When each rank was last heard from (Unix time)',
      labelNames: ['rank'],
      registers,
    });
    this.membershipChanges = new Counter({
      name: 'tfjs_ddp_membership_changes_total',
      help: 'Membership generations started after the first',
      registers,
    });
    this.checkpointSeconds = new Histogram({
      name: 'tfjs_ddp_checkpoint_seconds',
      help: 'Time to gather and write a checkpoint',
      buckets: SECONDS_BUCKETS,
      registers,
    });
    this.checkpointBytes = new Gauge({
      name: 'tfjs_ddp_checkpoint_bytes',
      help: 'Size of the last checkpoint',
      registers,
    });
    this.totalSteps = new Gauge({
      name: 'tfjs_ddp_planned_steps',
      help: 'Steps the run is planned to train',
      registers,
    });
    for (const state of WORKER_STATES) this.workers.set({ state }, 0);
  }

  onEvent(e: RunEvent): void {
    switch (e.type) {
      case 'run-started':
        this.totalSteps.set(e.totalSteps);
        break;
      case 'step':
        this.step(e);
        break;
      case 'eval':
        this.loss.set({ split: 'val' }, e.loss);
        this.accuracy.set({ split: 'val' }, e.accuracy);
        break;
      case 'checkpoint':
        this.checkpointSeconds.observe(e.durationMs / 1000);
        this.checkpointBytes.set(e.bytes);
        break;
      case 'worker':
        this.heartbeat.set({ rank: String(e.rank) }, e.time / 1000);
        if (this.workerStates.get(e.rank) !== e.state) {
          this.workerStates.set(e.rank, e.state);
          for (const state of WORKER_STATES) {
            const n = [...this.workerStates.values()].filter((s) => s === state).length;
            this.workers.set({ state }, n);
          }
        }
        break;
      case 'membership':
        if (e.generation > 1) this.membershipChanges.inc();
        break;
      case 'coordinator-span':
      case 'run-ended':
        break;
    }
  }

  private step(e: Extract<RunEvent, { type: 'step' }>): void {
    this.steps.inc();
    this.images.inc(e.images);
    this.imagesPerSecond.set(e.imagesPerSec);
    this.loss.set({ split: 'train' }, e.loss);
    this.accuracy.set({ split: 'train' }, e.accuracy);
    if (e.ranks.length === 0) return;
    const max = (p: (typeof PHASES)[number]) => Math.max(...e.ranks.map((r) => phaseMs(r, p)));
    const mean = (p: (typeof PHASES)[number]) =>
      e.ranks.reduce((s, r) => s + phaseMs(r, p), 0) / e.ranks.length;
    for (const phase of PHASES) {
      const ms = phase === 'data' || phase === 'compute' ? max(phase) : mean(phase);
      this.stepSeconds.observe({ phase }, ms / 1000);
      for (const r of e.ranks) {
        this.rankPhaseSeconds.set({ rank: String(r.rank), phase }, phaseMs(r, phase) / 1000);
      }
    }
    if (e.imagesPerSec > 0) this.stepSeconds.observe({ phase: 'step' }, e.images / e.imagesPerSec);
    this.allReduceSeconds.observe(mean('all_reduce') / 1000);
    this.allReduceBytes.inc(e.allReduceBytesPerRank * e.ranks.length);
  }
}
