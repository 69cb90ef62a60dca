import type { StepMetrics } from '../gen/tfjs_ddp/v1/coordinator.js';

/** One step's timings over the workers, in ms (what metrics.jsonl records). */
export interface StepTimingFigures {
  /** The slowest worker's forward and backward pass: what the others wait for. */
  computeMs: number;
  /** Mean over workers of the all-reduce once every worker had joined it (transfer only). */
  allReduceMs: number;
  /** Mean over workers of the time spent waiting for slower workers and for the plan. */
  waitMs: number;
  /** The slowest worker's batch building (and fetching, with --data-from coordinator). */
  dataMs: number;
  applyMs: number;
}

/** The run's mean per-step figures, and the all-reduce throughput they imply. */
export interface TimingSummary extends StepTimingFigures {
  steps: number;
  /** Gradient bytes per all-reduce (float32, or bf16 on the wire). */
  gradientBytes: number;
  /** gradientBytes / allReduceMs, in MB/s (algorithm bandwidth). */
  allReduceMBps: number;
  /** Bytes each worker sent per all-reduce over allReduceMs: 2(N−1)/N·S in a ring, S in a star. */
  busMBps: number;
}

/** Collapses the workers' timings of one step (max for the critical path, mean for the rest). */
export function combineTimings(metrics: readonly StepMetrics[]): StepTimingFigures {
  const t = metrics.map(
    (m) => m.timings ?? { computeMs: 0, allReduceMs: 0, waitMs: 0, dataMs: 0, applyMs: 0 },
  );
  const mean = (f: (x: (typeof t)[number]) => number) => t.reduce((s, x) => s + f(x), 0) / t.length;
  const max = (f: (x: (typeof t)[number]) => number) => Math.max(...t.map(f));
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    computeMs: round(max((x) => x.computeMs)),
    allReduceMs: round(mean((x) => x.allReduceMs)),
    waitMs: round(mean((x) => x.waitMs)),
    dataMs: round(max((x) => x.dataMs)),
    applyMs: round(mean((x) => x.applyMs)),
  };
}

/**
 * Means of the per-step figures over a run, skipping the first `warmup` steps (start-up
 * effects: first kernel compilations, connection windows growing).
 */
export class StepTimingStats {
  private readonly figures: StepTimingFigures[] = [];

  constructor(
    private readonly worldSize: number,
    private readonly gradientBytes: number,
    private readonly ring: boolean,
    private readonly warmup = 1,
  ) {}

  add(f: StepTimingFigures): void {
    this.figures.push(f);
  }

  summary(): TimingSummary | undefined {
    const kept = this.figures.length > this.warmup ? this.figures.slice(this.warmup) : this.figures;
    if (kept.length === 0) return undefined;
    const mean = (k: keyof StepTimingFigures) => kept.reduce((s, f) => s + f[k], 0) / kept.length;
    const allReduceMs = mean('allReduceMs');
    const n = this.worldSize;
    const sent = this.ring ? (2 * (n - 1) * this.gradientBytes) / n : this.gradientBytes;
    const mbps = (bytes: number) => (allReduceMs > 0 ? bytes / 1e6 / (allReduceMs / 1000) : 0);
    return {
      steps: kept.length,
      computeMs: mean('computeMs'),
      allReduceMs,
      waitMs: mean('waitMs'),
      dataMs: mean('dataMs'),
      applyMs: mean('applyMs'),
      gradientBytes: this.gradientBytes,
      allReduceMBps: mbps(this.gradientBytes),
      busMBps: mbps(sent),
    };
  }
}
