// Membership changes in place (issue 10): a worker lost mid-run (SIGKILL) and a worker that
// joins later leave the trajectory of an undisturbed run unchanged: the global batch is
// re-sharded over whoever is there, no replica applies a step that not all completed, and the
// final weights equal a one-process run's to float rounding. Real processes, real gRPC.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { writeSyntheticCifar } from '../helpers/synthetic-cifar.js';
import {
  ensureBuilt,
  errorLines,
  finalWeights,
  lenet5RunFlags,
  relativeError,
  train,
} from './cli-runs.js';
import { type ElasticProcess, ElasticRun } from './elastic-run.js';

let work: string;
let data: string;
let reference: Float32Array;
const runs: ElasticRun[] = [];

const STEPS = 100;
const GLOBAL_BATCH = 24;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ddp-elastic-'));
  data = join(work, 'cifar');
  await writeSyntheticCifar(data, { perBatch: 80 });
  await ensureBuilt();
  const single = join(work, 'single');
  await train([
    ...lenet5RunFlags(data, STEPS),
    '--batch-size',
    String(GLOBAL_BATCH),
    '--out',
    single,
  ]);
  reference = await finalWeights(single);
}, 300_000);

afterEach(() => {
  for (const run of runs.splice(0)) run.killAll();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Starts a 3-worker run that survives losses (--min-workers 2, --max-restarts 3). */
async function startRun(name: string, extra: string[] = []): Promise<ElasticRun> {
  const run = await ElasticRun.start(join(work, name), data, [
    ...lenet5RunFlags(data, STEPS),
    '--world-size',
    '3',
    '--global-batch-size',
    String(GLOBAL_BATCH),
    '--min-workers',
    '2',
    '--max-restarts',
    '3',
    '--step-timeout',
    '10',
    '--fingerprint-every',
    '10',
    ...extra,
  ]);
  runs.push(run);
  for (let i = 0; i < 3; i++) run.addWorker();
  return run;
}

/** Per tensor would need the layout: the whole vector's relative error bounds each tensor's. */
async function expectReferenceWeights(run: ElasticRun): Promise<void> {
  const weights = await finalWeights(run.out);
  expect(relativeError(weights, reference)).toBeLessThan(1e-5);
}

/** Whether the worker's log says it was admitted. */
const admitted = (w: ElasticProcess) => /joined 127\.0\.0\.1:\d+ as rank/.test(w.stderr());

describe('a lost worker and a joining one', () => {
  it.each(['ring', 'star'])(
    '%s: SIGKILL at a random step, a waiting worker joins, the weights equal one process’s',
    async (mode) => {
      const run = await startRun(`kill-${mode}`, ['--allreduce', mode]);
      // A fourth worker finds the job full and keeps asking: it joins once a place is free.
      run.addWorker();
      const killAt = 3 + Math.floor(Math.random() * 6);
      expect(await run.untilSteps(killAt), run.coordinator.stderr().slice(-3000)).toBe(true);
      const members = run.workers.filter(admitted);
      expect(members).toHaveLength(3);
      const victim = members[Math.floor(Math.random() * 3)];
      victim.child.kill('SIGKILL');
      const code = await run.coordinator.exited;
      const log = run.coordinator.stderr();
      expect(code, log.slice(-4000)).toBe(0);
      expect(errorLines(log)).toEqual([]);
      const changes = run.membershipChanges();
      const waiting = run.workers.find((w) => !members.includes(w));
      expect(changes, `${JSON.stringify(changes)}\n${waiting?.stderr().slice(-3000)}`).toHaveLength(
        2,
      );
      const [loss, join] = changes;
      expect(loss).toMatchObject({ workers: 2, lost: [expect.any(Number)], joined: [] });
      expect(loss.cause).toMatch(/^rank \d \(.*\) disconnected/);
      expect(join).toMatchObject({ workers: 3, lost: [], joined: [expect.any(Number)] });
      expect(run.stepsDone()).toBe(STEPS);
      console.log(
        `${mode}: killed after ${killAt}+ steps; recovered in ${loss.seconds} s; the joiner was in ${join.seconds} s after its arrival`,
      );
      // Recovery from a lost worker: within --step-timeout (10 s) plus one step.
      expect(loss.seconds).toBeLessThan(10);
      await expectReferenceWeights(run);
      for (const w of run.workers.filter((w) => w !== victim)) expect(await w.exited).toBe(0);
    },
    120_000,
  );
});

describe('a worker that leaves on SIGTERM', () => {
  it('announces it, exits 143 at a step boundary, and the trajectory is unchanged', async () => {
    const run = await startRun('leave');
    expect(await run.untilSteps(5), run.coordinator.stderr().slice(-3000)).toBe(true);
    const leaver = run.workers[1];
    leaver.child.kill('SIGTERM');
    // Not 0: a supervisor (an Indexed Job) must replace it rather than count its part done.
    expect(await leaver.exited, leaver.stderr().slice(-3000)).toBe(143);
    expect(await run.coordinator.exited, run.coordinator.stderr().slice(-3000)).toBe(0);
    const [change, ...more] = run.membershipChanges();
    expect(more).toEqual([]);
    expect(change).toMatchObject({ workers: 2, lost: [], left: [expect.any(Number)] });
    expect(change.cause).toMatch(/^rank \d \(.*\) left \(SIGTERM\)$/);
    await expectReferenceWeights(run);
  }, 120_000);
});
