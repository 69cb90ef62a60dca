import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { EvaluationMetrics, StepMetrics } from '../../gen/tfjs_ddp/v1/coordinator.js';
import { log } from '../../shared/logging/logger.js';
import { ClockOffsets } from './clock-offsets.js';
import { ObserveServer } from './observe-server.js';
import { PrometheusMetrics } from './prometheus-metrics.js';
import {
  type CoordinatorSpan,
  nowMs,
  type RankSpan,
  type RankStep,
  RunEventHub,
  type RunObserver,
  type StepCompleted,
} from './run-events.js';
import { RunState } from './run-state.js';
import { type StepWindow, TRACE_FILE, TraceWriter } from './trace-writer.js';

/** How the run is seen: the HTTP server (dashboard, /metrics) and the trace. */
export interface ObserveSettings {
  /** 0: no HTTP server. */
  httpPort: number;
  httpHost: string;
  /** Required by the dashboard and /metrics when set. */
  httpToken?: string;
  /** Steps to record into <run>/trace.json; absent: no trace. */
  trace?: StepWindow;
}

/**
 * The observers of one run behind its RunEventHub: the dashboard's state and the Prometheus
 * registry (served by ObserveServer from start(), so that the page is there while workers
 * join), and the trace, opened once the run folder is known (openTrace). The loop emits into
 * `events`; close() ends the trace file and the server.
 */
export class RunObservers {
  readonly events: RunEventHub;
  readonly clocks = new ClockOffsets();
  /** When the coordinator started: the trace's zero. */
  private readonly startedMs = nowMs();
  private trace: TraceWriter | undefined;

  private constructor(
    private readonly settings: ObserveSettings,
    private readonly server: ObserveServer | undefined,
    observers: RunObserver[],
  ) {
    this.events = new RunEventHub(observers);
  }

  /** Without a server, nobody reads the state or the registry: neither is kept. */
  static async start(settings: ObserveSettings): Promise<RunObservers> {
    const state = new RunState();
    const metrics = new PrometheusMetrics();
    const server = settings.httpPort > 0 ? await startServer(settings, state, metrics) : undefined;
    return new RunObservers(settings, server, server ? [state, metrics] : []);
  }

  /** The dashboard's address, when the server runs. */
  get url(): string | undefined {
    if (!this.server) return undefined;
    const host = this.settings.httpHost.includes(':')
      ? `[${this.settings.httpHost}]`
      : this.settings.httpHost;
    return `http://${host === '0.0.0.0' || host === '[::]' ? 'localhost' : host}:${this.server.port}/`;
  }

  /**
   * Starts <runDir>/trace.json when --trace asked for it. One that an earlier coordinator of
   * the folder wrote (it was killed, or the run is resumed) is kept as trace-K.json, K the
   * first number free: its timeline is what explains a crash.
   */
  openTrace(runDir: string): void {
    if (!this.settings.trace || this.trace) return;
    const path = join(runDir, TRACE_FILE);
    if (existsSync(path)) {
      let k = 1;
      while (existsSync(join(runDir, `trace-${k}.json`))) k++;
      renameSync(path, join(runDir, `trace-${k}.json`));
      log().info(`kept the earlier ${TRACE_FILE} of ${runDir} as trace-${k}.json`);
    }
    this.trace = new TraceWriter(path, this.startedMs, this.settings.trace);
    this.events.add(this.trace);
    log().info(
      `recording the timeline of steps ${describe(this.settings.trace)} into ${TRACE_FILE}`,
    );
  }

  /**
   * Emits a collected step: the ranks' StepMetrics (indexed by rank) become RankSteps on the
   * coordinator's clock, `collectedMs` being when the last of them was in hand. Returns them,
   * for metrics.jsonl.
   */
  stepCollected(
    step: Omit<StepCompleted, 'type' | 'time' | 'ranks'>,
    all: readonly StepMetrics[],
    collectedMs: number,
  ): RankStep[] {
    const ranks = all.map((m, rank) => {
      const t = m.timings;
      if (t && t.sentUnixMs > 0) this.clocks.observe(rank, t.sentUnixMs, collectedMs);
      return {
        rank,
        ...(t && t.startUnixMs > 0
          ? { startMs: this.clocks.toCoordinator(rank, t.startUnixMs) }
          : {}),
        dataMs: t?.dataMs ?? 0,
        computeMs: t?.computeMs ?? 0,
        waitMs: t?.waitMs ?? 0,
        barrierMs: t?.barrierMs ?? 0,
        allReduceMs: t?.allReduceMs ?? 0,
        applyMs: t?.applyMs ?? 0,
        buckets: t?.buckets ?? [],
      };
    });
    this.events.emit({ type: 'step', time: collectedMs, ranks, ...step });
    return ranks;
  }

  /** The ranks' evaluation spans (indexed by rank) on the coordinator's clock, where sent. */
  evaluationSpans(all: readonly EvaluationMetrics[]): RankSpan[] {
    return all.flatMap((m, rank) =>
      m.startUnixMs > 0
        ? [
            {
              rank,
              startMs: this.clocks.toCoordinator(rank, m.startUnixMs),
              durationMs: m.durationMs,
            },
          ]
        : [],
    );
  }

  /** Emits the coordinator's span `name` from `startMs` to now. */
  span(name: CoordinatorSpan['name'], step: number, startMs: number): void {
    this.events.emit({
      type: 'coordinator-span',
      name,
      step,
      startMs,
      durationMs: nowMs() - startMs,
    });
  }

  async close(): Promise<void> {
    await this.events.close();
    await this.server?.close();
  }
}

/** A port in use is a warning, not a failed run: training matters more than watching it. */
async function startServer(
  settings: ObserveSettings,
  state: RunState,
  metrics: PrometheusMetrics,
): Promise<ObserveServer | undefined> {
  try {
    return await ObserveServer.start({
      host: settings.httpHost,
      port: settings.httpPort,
      state,
      metrics,
      token: settings.httpToken,
    });
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    if (e.code !== 'EADDRINUSE' && e.code !== 'EACCES') throw error;
    log().warn(
      `no dashboard: port ${settings.httpPort} on ${settings.httpHost} is not available (${e.code}); choose another with --http-port`,
    );
    return undefined;
  }
}

function describe(w: StepWindow): string {
  return Number.isFinite(w.last) ? `${w.first} to ${w.last}` : `${w.first} on`;
}
