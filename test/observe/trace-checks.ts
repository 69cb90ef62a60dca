import { readFileSync } from 'node:fs';
import { expect } from 'vitest';

// What a trace.json written by a real run must satisfy: shared by the tests that run one.

export interface TraceEvent {
  name: string;
  ph: string;
  pid: number;
  tid: number;
  ts: number;
  dur?: number;
  cat?: string;
  args?: { step?: number; name?: string; bucket?: number; bytes?: number };
}

type RankTimings = {
  rank: number;
  dataMs: number;
  computeMs: number;
  waitMs: number;
  allReduceMs: number;
  applyMs: number;
};

export function readSteps(path: string): Map<number, RankTimings[]> {
  const steps = new Map<number, RankTimings[]>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const record = JSON.parse(line) as { type: string; step: number; ranks?: RankTimings[] };
    if (record.type === 'step' && record.ranks) steps.set(record.step, record.ranks);
  }
  return steps;
}

/** Schema, nesting per rank, one clock (the ranks' all-reduces overlap), sums = metrics.jsonl. */
export function checkTrace(events: TraceEvent[], steps: Map<number, RankTimings[]>): void {
  const EPS_US = 0.01;
  for (const e of events) {
    expect(typeof e.name).toBe('string');
    expect(['X', 'M']).toContain(e.ph);
    expect(Number.isInteger(e.pid) && Number.isInteger(e.tid)).toBe(true);
    expect(e.ts).toBeGreaterThanOrEqual(0);
    if (e.ph === 'X') expect(e.dur).toBeGreaterThanOrEqual(0);
  }
  const names = new Map(
    events.filter((e) => e.name === 'process_name').map((e) => [e.pid, e.args?.name]),
  );
  expect([names.get(0), names.get(1), names.get(2)]).toEqual(['coordinator', 'rank 0', 'rank 1']);
  expect(events.some((e) => e.pid === 0 && e.name === 'collect')).toBe(true);
  const allReduce = new Map<string, TraceEvent>();
  let checked = 0;
  for (const rank of [0, 1]) {
    const spans = events.filter((e) => e.pid === rank + 1 && e.ph === 'X');
    const stepSpans = spans.filter((e) => e.cat === 'step').sort((a, b) => a.ts - b.ts);
    expect(stepSpans.length).toBeGreaterThan(2);
    for (const [i, s] of stepSpans.entries()) {
      const next = stepSpans[i + 1];
      if (next) expect(next.args?.step).toBeGreaterThan(s.args?.step as number);
      const phases = spans
        .filter((e) => e.cat === 'phase' && e.args?.step === s.args?.step)
        .sort((a, b) => a.ts - b.ts);
      let end = s.ts;
      for (const p of phases) {
        expect(p.ts).toBeGreaterThanOrEqual(end - EPS_US);
        end = p.ts + (p.dur ?? 0);
        expect(end).toBeLessThanOrEqual(s.ts + (s.dur ?? 0) + EPS_US);
        if (p.name === 'all-reduce') allReduce.set(`${rank}:${s.args?.step}`, p);
      }
      const recorded = steps.get(s.args?.step as number)?.find((r) => r.rank === rank);
      if (!recorded) continue;
      const sumMs = phases.reduce((t, p) => t + (p.dur ?? 0), 0) / 1000;
      const expected =
        recorded.dataMs +
        recorded.computeMs +
        recorded.waitMs +
        recorded.allReduceMs +
        recorded.applyMs;
      expect(Math.abs(sumMs - expected)).toBeLessThan(0.05);
      expect(Math.abs((s.dur ?? 0) / 1000 - expected)).toBeLessThan(0.05);
      checked++;
    }
  }
  expect(checked).toBeGreaterThan(4);
  // One clock: the ranks are in the same all-reduce at the same time, so in the typical step
  // their all-reduce spans overlap (a few ms of slack; a loaded machine has outliers).
  const gaps: number[] = [];
  for (const [key, a] of allReduce) {
    const b = key.startsWith('0:') ? allReduce.get(`1:${key.slice(2)}`) : undefined;
    if (!b) continue;
    gaps.push(Math.max(a.ts - (b.ts + (b.dur ?? 0)), b.ts - (a.ts + (a.dur ?? 0))));
  }
  gaps.sort((x, y) => x - y);
  expect(gaps.length).toBeGreaterThan(4);
  expect(gaps[Math.floor(gaps.length / 2)]).toBeLessThan(3000);
}

/**
 * Every recorded step of every rank has one span per all-reduce bucket (indices 0..n-1, n ≥
 * `minBuckets`, with bytes), inside that rank's all-reduce span of the step, on bucket rows
 * (tid ≥ 1, named) whose spans never overlap.
 */
export function checkBuckets(events: TraceEvent[], ranks: number, minBuckets: number): void {
  const EPS_US = 0.01;
  let checked = 0;
  for (let rank = 0; rank < ranks; rank++) {
    const pid = rank + 1;
    const buckets = events.filter((e) => e.pid === pid && e.ph === 'X' && e.cat === 'bucket');
    const rows = new Set(buckets.map((b) => b.tid));
    expect(rows.has(0)).toBe(false);
    for (const tid of rows) {
      expect(events.some((e) => e.pid === pid && e.tid === tid && e.name === 'thread_name')).toBe(
        true,
      );
      const row = buckets.filter((b) => b.tid === tid).sort((a, b) => a.ts - b.ts);
      for (let i = 1; i < row.length; i++) {
        expect(row[i].ts).toBeGreaterThanOrEqual(row[i - 1].ts + (row[i - 1].dur ?? 0) - EPS_US);
      }
    }
    const allReduces = events.filter(
      (e) => e.pid === pid && e.ph === 'X' && e.cat === 'phase' && e.name === 'all-reduce',
    );
    expect(allReduces.length).toBeGreaterThan(2);
    for (const a of allReduces) {
      const mine = buckets.filter((b) => b.args?.step === a.args?.step);
      const indices = mine.map((b) => b.args?.bucket).sort((x, y) => (x ?? 0) - (y ?? 0));
      expect(indices.length).toBeGreaterThanOrEqual(minBuckets);
      expect(indices).toEqual(indices.map((_, i) => i));
      for (const b of mine) {
        expect(b.args?.bytes).toBeGreaterThan(0);
        expect(b.ts).toBeGreaterThanOrEqual(a.ts - EPS_US);
        expect(b.ts + (b.dur ?? 0)).toBeLessThanOrEqual(a.ts + (a.dur ?? 0) + EPS_US);
      }
      checked++;
    }
  }
  expect(checked).toBeGreaterThan(4);
}
