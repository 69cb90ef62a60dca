import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
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
          },
        ],
      });
    }
    await trace.close();
    const events = JSON.parse(readFileSync(path, 'utf8')) as {
      name: string;
      ph: string;
      ts: number;
      dur?: number;
      cat?: string;
      args?: { step?: number };
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
  });
});
