import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RunObservers } from '../../src/coordinator/observe/run-observers.js';
import { parseTraceSteps, TraceWriter } from '../../src/coordinator/observe/trace-writer.js';
import { UserError } from '../../src/shared/errors.js';

// The trace file itself: --trace-steps bounds it, and it is valid JSON once closed.

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('parseTraceSteps', () => {
  it('reads A:B and A:, and refuses anything else with the flag named', () => {
    expect(parseTraceSteps('5:10')).toEqual({ first: 5, last: 10 });
    expect(parseTraceSteps('7:')).toEqual({ first: 7, last: Number.POSITIVE_INFINITY });
    expect(parseTraceSteps(undefined)).toEqual({ first: 1, last: 1000 });
    for (const bad of ['0:5', '9:3', '5', 'a:b', '-1:2']) {
      expect(() => parseTraceSteps(bad), bad).toThrow(UserError);
      expect(() => parseTraceSteps(bad), bad).toThrow(/--trace-steps/);
    }
  });
});

describe('TraceWriter', () => {
  it('records only the window, a nested step per rank, and closes into valid JSON', async () => {
    dir = mkdtempSync(join(tmpdir(), 'tfjs-ddp-trace-'));
    const path = join(dir, 'trace.json');
    const origin = 1_700_000_000_000;
    const trace = new TraceWriter(path, origin, { first: 3, last: 4 });
    for (let step = 1; step <= 6; step++) {
      trace.onEvent({
        type: 'step',
        step,
        epoch: 0,
        time: origin + 100 * step,
        loss: 1,
        accuracy: 0,
        images: 8,
        imagesPerSec: 80,
        lr: 0.1,
        allReduceBytesPerRank: 4,
        skipped: false,
        ranks: [
          {
            rank: 0,
            startMs: origin + 100 * step,
            dataMs: 1,
            computeMs: 50,
            waitMs: 5,
            barrierMs: 3,
            allReduceMs: 10,
            applyMs: 2,
            // Buckets 0 and 1 in flight at once, then 2 once 1 is done.
            buckets: [
              { index: 0, startMs: 0, endMs: 6, bytes: 400 },
              { index: 1, startMs: 1, endMs: 4, bytes: 200 },
              { index: 2, startMs: 4.5, endMs: 10, bytes: 100 },
            ],
          },
        ],
      });
    }
    await trace.close();
    const events = JSON.parse(readFileSync(path, 'utf8')) as {
      name: string;
      ph: string;
      tid: number;
      ts: number;
      dur?: number;
      cat?: string;
      args?: { step?: number; name?: string };
    }[];
    const steps = events.filter((e) => e.cat === 'step');
    expect(steps.map((e) => e.args?.step)).toEqual([3, 4]);
    expect(steps[0]).toMatchObject({ ts: 300_000, dur: 68_000 });
    const phases = events.filter((e) => e.cat === 'phase' && e.args?.step === 3);
    expect(phases.map((e) => [e.name, e.ts, e.dur])).toEqual([
      ['wait for the plan', 300_000, 2_000],
      ['data', 302_000, 1_000],
      ['forward and backward', 303_000, 50_000],
      ['wait for the other ranks', 353_000, 3_000],
      ['all-reduce', 356_000, 10_000],
      ['apply', 366_000, 2_000],
    ]);
    // Each bucket within the all-reduce (356 to 366 ms), overlapping ones on separate rows.
    const buckets = events.filter((e) => e.cat === 'bucket');
    expect(new Set(buckets.map((e) => e.args?.step))).toEqual(new Set([3, 4]));
    expect(
      buckets.filter((e) => e.args?.step === 3).map((e) => [e.name, e.tid, e.ts, e.dur]),
    ).toEqual([
      ['bucket 0', 1, 356_000, 6_000],
      ['bucket 1', 2, 357_000, 3_000],
      ['bucket 2', 2, 360_500, 5_500],
    ]);
    const rows = events.filter((e) => e.name === 'thread_name').map((e) => [e.tid, e.args?.name]);
    expect(rows).toEqual([
      [1, 'all-reduce buckets 1'],
      [2, 'all-reduce buckets 2'],
    ]);
  });
});

describe('RunObservers.openTrace', () => {
  it('keeps the trace an earlier coordinator of the folder wrote, under the next free number', async () => {
    dir = mkdtempSync(join(tmpdir(), 'tfjs-ddp-trace-'));
    // A killed coordinator's trace ends without its closing bracket.
    writeFileSync(join(dir, 'trace.json'), '[\n{"name":"first"}');
    writeFileSync(join(dir, 'trace-1.json'), '[]');
    const observers = await RunObservers.start({
      httpPort: 0,
      httpHost: '127.0.0.1',
      trace: { first: 1, last: 5 },
    });
    observers.openTrace(dir);
    await observers.close();
    expect(readdirSync(dir).sort()).toEqual(['trace-1.json', 'trace-2.json', 'trace.json']);
    expect(readFileSync(join(dir, 'trace-2.json'), 'utf8')).toBe('[\n{"name":"first"}');
    expect(readFileSync(join(dir, 'trace-1.json'), 'utf8')).toBe('[]');
    expect(Array.isArray(JSON.parse(readFileSync(join(dir, 'trace.json'), 'utf8')))).toBe(true);
  });
});
