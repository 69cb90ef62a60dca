import { closeSync, openSync, writeSync } from 'node:fs';
import { UserError } from '../../shared/errors.js';
import type { RankStep, RunEvent, RunObserver } from './run-events.js';

export const TRACE_FILE = 'trace.json';
/** Steps recorded without --trace-steps: a trace stays small enough for Perfetto's UI. */
export const DEFAULT_TRACE_STEPS = 1000;
/** The coordinator's track; rank r's is r + 1. */
const COORDINATOR_PID = 0;
/** A rank's steps and evaluations are on thread 0 of its track; its buckets on 1, 2, ... */
const STEPS_TID = 0;

/** Steps A to B (1-based, inclusive) of a trace window. */
export interface StepWindow {
  first: number;
  last: number;
}

/** Parses `--trace-steps A:B` (1-based, inclusive; `A:` for "from A on"). */
export function parseTraceSteps(text: string | undefined): StepWindow {
  if (text === undefined) return { first: 1, last: DEFAULT_TRACE_STEPS };
  const m = /^\s*(\d+)\s*:\s*(\d*)\s*$/.exec(text);
  const first = m ? Number(m[1]) : Number.NaN;
  const last = m && m[2] !== '' ? Number(m[2]) : Number.POSITIVE_INFINITY;
  if (!m || first < 1 || last < first) {
    throw new UserError(
      `--trace-steps: expected A:B with 1 ≤ A ≤ B, the steps to record (got "${text}")`,
    );
  }
  return { first, last };
}

/** One Chrome Trace Event: a complete span ("X") or process metadata ("M"). */
export interface TraceEvent {
  name: string;
  ph: 'X' | 'M';
  pid: number;
  tid: number;
  /** µs since the start of the run (coordinator clock). */
  ts: number;
  dur?: number;
  cat?: string;
  args?: Record<string, unknown>;
}

/**
 * Writes the run's timeline as Chrome Trace Events (the JSON array format, which Perfetto and
 * chrome://tracing open) into `trace.json`: one track per rank (wait, data, forward and
 * backward, all-reduce, apply, nested in a span per step, and its evaluations; each
 * all-reduce bucket within the all-reduce's time, on bucket rows below since buckets in
 * flight overlap and one row's spans must nest) and the coordinator's (plan, collect,
 * fingerprint, evaluate, checkpoint), on the coordinator's clock. Only the steps of `window`
 * (and the evaluations after them) are recorded, so the file stays bounded. Events are
 * buffered and appended as they come; close() ends the array.
 */
export class TraceWriter implements RunObserver {
  private readonly fd: number;
  private buffer: string[] = [];
  private readonly named = new Set<string>();
  private closed = false;

  /**
   * `originMs` (coordinator clock) is the trace's zero: before anything it records, such as
   * the coordinator's start (a rank's first step begins when it finished joining).
   */
  constructor(
    path: string,
    private readonly origin: number,
    private readonly window: StepWindow = { first: 1, last: DEFAULT_TRACE_STEPS },
  ) {
    this.fd = openSync(path, 'w');
    writeSync(this.fd, '[\n');
  }

  onEvent(e: RunEvent): void {
    if (this.closed) return;
    if (e.type === 'run-started') {
      this.track(COORDINATOR_PID, 'coordinator');
      return;
    }
    if (e.type === 'step') {
      if (!this.inWindow(e.step)) return;
      for (const r of e.ranks) this.rankStep(e.step, r);
    } else if (e.type === 'eval') {
      if (!this.inWindow(e.step)) return;
      for (const r of e.ranks ?? []) {
        this.track(r.rank + 1, `rank ${r.rank}`);
        const args = { step: e.step };
        this.span(
          r.rank + 1,
          'evaluation',
          r.startMs - this.origin,
          r.durationMs,
          args,
          'evaluation',
        );
      }
    } else if (e.type === 'coordinator-span') {
      // A span belongs to the step it follows: 'plan' of step n is the n-th step's.
      const step = e.name === 'plan' ? e.step + 1 : e.step;
      if (!this.inWindow(step)) return;
      this.span(COORDINATOR_PID, e.name, e.startMs - this.origin, e.durationMs, { step });
    } else if (e.type === 'membership' || e.type === 'run-ended') {
      return;
    }
    if (this.buffer.length >= 256) this.flush();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.flush();
    // A last event without a trailing comma closes the array as valid JSON.
    const end: TraceEvent = { name: 'trace_end', ph: 'M', pid: COORDINATOR_PID, tid: 0, ts: 0 };
    writeSync(this.fd, `${JSON.stringify(end)}\n]\n`);
    closeSync(this.fd);
  }

  private inWindow(step: number): boolean {
    return step >= this.window.first && step <= this.window.last;
  }

  /** The step as the rank lived it: the plan wait, then the phases in the order they ran. */
  private rankStep(step: number, r: RankStep): void {
    if (r.startMs === undefined) return;
    const pid = r.rank + 1;
    this.track(pid, `rank ${r.rank}`);
    const barrier = Math.min(r.barrierMs ?? 0, r.waitMs);
    const phases: [string, number][] = [
      ['wait for the plan', r.waitMs - barrier],
      ['data', r.dataMs],
      ['forward and backward', r.computeMs],
      ['wait for the other ranks', barrier],
      ['all-reduce', r.allReduceMs],
      ['apply', r.applyMs],
    ];
    const total = phases.reduce((s, [, ms]) => s + ms, 0);
    // Relative to the origin before adding: epoch milliseconds in a double resolve only ~0.2 µs.
    let t = r.startMs - this.origin;
    this.span(pid, `step ${step}`, t, total, { step }, 'step');
    for (const [name, ms] of phases) {
      if (ms > 0) this.span(pid, name, t, ms, { step });
      if (name === 'all-reduce') this.buckets(pid, step, t, r.buckets ?? []);
      t += ms;
    }
  }

  /**
   * The buckets of an all-reduce starting at `allReduceMs` (since the origin), each on the
   * first bucket row free at its start: as many rows as buckets were in flight at once.
   */
  private buckets(
    pid: number,
    step: number,
    allReduceMs: number,
    buckets: NonNullable<RankStep['buckets']>,
  ): void {
    const rowEnds: number[] = [];
    for (const b of [...buckets].sort((x, y) => x.startMs - y.startMs)) {
      let row = rowEnds.findIndex((end) => end <= b.startMs);
      if (row < 0) row = rowEnds.push(b.endMs) - 1;
      rowEnds[row] = b.endMs;
      const tid = STEPS_TID + 1 + row;
      this.thread(pid, tid, `all-reduce buckets ${row + 1}`);
      const args = { step, bucket: b.index, bytes: b.bytes };
      this.span(
        pid,
        `bucket ${b.index}`,
        allReduceMs + b.startMs,
        b.endMs - b.startMs,
        args,
        'bucket',
        tid,
      );
    }
  }

  /** A complete event from `sinceOriginMs` on. */
  private span(
    pid: number,
    name: string,
    sinceOriginMs: number,
    durationMs: number,
    args: Record<string, unknown>,
    cat = 'phase',
    tid = STEPS_TID,
  ): void {
    const event: TraceEvent = {
      name,
      cat,
      ph: 'X',
      pid,
      tid,
      ts: round(sinceOriginMs * 1000),
      dur: round(durationMs * 1000),
      args,
    };
    this.buffer.push(JSON.stringify(event));
  }

  private track(pid: number, name: string): void {
    if (this.named.has(`${pid}`)) return;
    this.named.add(`${pid}`);
    this.meta(pid, STEPS_TID, 'process_name', { name });
    this.meta(pid, STEPS_TID, 'process_sort_index', { sort_index: pid });
  }

  /** Names a row of a track (thread metadata), sorted by its tid. */
  private thread(pid: number, tid: number, name: string): void {
    if (this.named.has(`${pid}:${tid}`)) return;
    this.named.add(`${pid}:${tid}`);
    this.meta(pid, tid, 'thread_name', { name });
    this.meta(pid, tid, 'thread_sort_index', { sort_index: tid });
  }

  private meta(pid: number, tid: number, name: string, args: Record<string, unknown>): void {
    const event: TraceEvent = { name, ph: 'M', pid, tid, ts: 0, args };
    this.buffer.push(JSON.stringify(event));
  }

  private flush(): void {
    if (this.buffer.length === 0) return;
    writeSync(this.fd, this.buffer.map((line) => `${line},\n`).join(''));
    this.buffer = [];
  }
}

/** To 0.001 µs: enough for nesting checks, short in the file. */
function round(us: number): number {
  return Math.round(us * 1000) / 1000;
}
