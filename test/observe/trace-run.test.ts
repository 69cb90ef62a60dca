import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, runCli } from '../cli/run-cli.js';
import { checkBuckets, checkTrace, readSteps, type TraceEvent } from './trace-checks.js';

// A short real 2-worker run to its end with --trace: each rank's track shows every all-reduce
// bucket and its own evaluation, and --trace-steps leaves the steps before the window out.

const STEPS = 12;
const FIRST = 3;
let scratch: string;
let runDir: string;
let events: TraceEvent[];

beforeAll(async () => {
  await ensureBuilt();
  scratch = mkdtempSync(join(tmpdir(), 'tfjs-ddp-trace-run-'));
  runDir = join(scratch, 'run');
  const result = await runCli([
    'train',
    ...['--model', 'lenet5', '--dataset', 'synthetic', '--val-size', '64'],
    ...['--steps', String(STEPS), '--batch-size', '32', '--workers', '2'],
    ...['--fingerprint-every', '0', '--bucket-size-mb', '0.05', '--http-port', '0'],
    ...['--out', runDir, '--trace', '--trace-steps', `${FIRST}:`],
  ]);
  expect(result.code, result.stderr.slice(-3000)).toBe(0);
  events = JSON.parse(readFileSync(join(runDir, 'trace.json'), 'utf8')) as TraceEvent[];
}, 180_000);

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

describe('trace.json of a run with several gradient buckets', () => {
  it('still nests, and its phases add up to metrics.jsonl', () => {
    checkTrace(events, readSteps(join(runDir, 'metrics.jsonl')));
  });

  it('has each bucket of each recorded step on every rank, within its all-reduce', () => {
    checkBuckets(events, 2, 2);
    const steps = new Set(events.filter((e) => e.cat === 'bucket').map((e) => e.args?.step));
    expect([...steps].sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual(
      Array.from({ length: STEPS - FIRST + 1 }, (_, i) => FIRST + i),
    );
  });

  it('has the final evaluation on every rank, between its steps', () => {
    for (const pid of [1, 2]) {
      const evaluations = events.filter((e) => e.pid === pid && e.cat === 'evaluation');
      expect(evaluations.map((e) => e.args?.step)).toEqual([STEPS]);
      const [evaluation] = evaluations;
      expect(evaluation.tid).toBe(0);
      expect(evaluation.dur).toBeGreaterThan(0);
      // After the last step on this rank's own track (one row: the spans must not overlap).
      const lastStep = events.find(
        (e) => e.pid === pid && e.cat === 'step' && e.args?.step === STEPS,
      );
      expect(lastStep).toBeDefined();
      expect(evaluation.ts).toBeGreaterThanOrEqual(
        (lastStep?.ts ?? 0) + (lastStep?.dur ?? 0) - 0.01,
      );
    }
  });
});
