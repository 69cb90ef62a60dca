// The limits of membership changes (issue 10): a stalled worker is dropped within the step
// deadline and the run goes on; below --min-workers the run waits --rejoin-timeout, then
// checkpoints and ends naming how many were missing; a crash loop under `train --workers`
// ends at --max-restarts with a clear message. Real processes, real gRPC on loopback.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../../src/shared/training/checkpoint.js';
import { writeSyntheticCifar } from '../helpers/synthetic-cifar.js';
import { ensureBuilt, errorLines, isAlive, startCli, waitUntil } from './cli-runs.js';
import { ElasticRun } from './elastic-run.js';

let work: string;
let data: string;
const runs: ElasticRun[] = [];
const leftovers: number[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ddp-elastic-limits-'));
  data = join(work, 'cifar');
  await writeSyntheticCifar(data, { perBatch: 40 });
  await ensureBuilt();
}, 300_000);

afterEach(() => {
  for (const run of runs.splice(0)) run.killAll();
  for (const pid of leftovers.splice(0)) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const LONG_RUN = ['--model', 'lenet5', '--data', '', '--val-size', '20', '--steps', '100000'];
const longRun = () => LONG_RUN.map((a) => (a === '' ? data : a));

async function startRun(name: string, workers: number, flags: string[]): Promise<ElasticRun> {
  const run = await ElasticRun.start(join(work, name), data, [
    ...longRun(),
    '--world-size',
    String(workers),
    '--global-batch-size',
    '12',
    '--checkpoint-every',
    '1000',
    ...flags,
  ]);
  runs.push(run);
  for (let i = 0; i < workers; i++) run.addWorker();
  return run;
}

describe('a stalled worker (SIGSTOP)', () => {
  it('is dropped within the step timeout plus one step, and the others go on', async () => {
    const stepTimeout = 3;
    const run = await startRun('stalled', 3, [
      '--steps',
      '40',
      '--min-workers',
      '2',
      '--max-restarts',
      '1',
      '--step-timeout',
      String(stepTimeout),
    ]);
    expect(await run.untilSteps(3), run.coordinator.stderr().slice(-3000)).toBe(true);
    const stalled = run.workers[2];
    stalled.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    expect(await waitUntil(() => run.membershipChanges().length > 0, 30_000)).toBe(true);
    const [change] = run.membershipChanges();
    expect(change).toMatchObject({ workers: 2, lost: [expect.any(Number)] });
    expect(change.cause).toMatch(/sent nothing for \d+ s \(the --step-timeout is 3 s\)/);
    const recovered = (Date.parse(change.time) - stoppedAt) / 1000;
    console.log(`stall: the survivors went on ${recovered.toFixed(2)} s after SIGSTOP`);
    // The deadline, the watchdog's 1 s period, and a step (well under a second here).
    expect(recovered).toBeLessThan(stepTimeout + 2);
    const steps = run.stepsDone();
    expect(await run.untilSteps(Math.min(40, steps + 5), 20_000)).toBe(true);
    // The stalled process is out of the run: the run completes, and the coordinator exits,
    // while it is still stopped (its open connection must not keep the coordinator up).
    expect(await run.untilSteps(40, 60_000)).toBe(true);
    const finishedAt = Date.now();
    expect(await run.coordinator.exited, run.coordinator.stderr().slice(-3000)).toBe(0);
    // The final evaluation, the workers' 10 s to close, the server's grace, main's 3 s.
    expect((Date.now() - finishedAt) / 1000).toBeLessThan(25);
    expect(run.stepsDone()).toBe(40);
    expect(isAlive(stalled.child.pid as number)).toBe(true);
    // Continued after the run: its coordinator is gone, but so is its place in the run. It
    // ends at once rather than asking to rejoin for --coordinator-grace (60 s).
    stalled.child.kill('SIGCONT');
    const continuedAt = Date.now();
    expect(await stalled.exited, stalled.stderr().slice(-3000)).toBe(3);
    expect((Date.now() - continuedAt) / 1000).toBeLessThan(10);
    // Why it goes: the coordinator's Stop, when it reached the stopped process's socket before
    // the connection closed, else the stall it measured itself.
    expect(errorLines(stalled.stderr()).at(-1)).toMatch(
      /sent nothing for \d+ s \(the --step-timeout is 3 s\)|after this process stood still for \d+ s \(stopped, or starved of CPU\), past the --step-timeout of 3 s: the coordinator has dropped it from the run$/,
    );
  }, 120_000);
});

describe('below --min-workers', () => {
  it('waits --rejoin-timeout, then checkpoints and ends saying how many are missing', async () => {
    const run = await startRun('below-minimum', 2, [
      '--max-restarts',
      '2',
      '--rejoin-timeout',
      '2',
      '--step-timeout',
      '10',
    ]);
    expect(await run.untilSteps(3), run.coordinator.stderr().slice(-3000)).toBe(true);
    const killedAt = Date.now();
    run.workers[0].child.kill('SIGKILL');
    const code = await run.coordinator.exited;
    const seconds = (Date.now() - killedAt) / 1000;
    expect(code).not.toBe(0);
    expect(seconds).toBeGreaterThanOrEqual(2);
    expect(seconds).toBeLessThan(15);
    const errors = errorLines(run.coordinator.stderr());
    expect(errors.at(-1)).toMatch(
      /^1 worker missing: 1 of --min-workers 2 after rank \d \(.*\) disconnected .*, and it did not rejoin within --rejoin-timeout 2 s; the checkpoint after step (\d+) is written$/,
    );
    const step = Number(/after step (\d+) is written/.exec(errors.at(-1) ?? '')?.[1]);
    expect((await readCheckpoint(run.out)).step).toBe(step);
    expect(step).toBeGreaterThanOrEqual(3);
    expect(await run.workers[1].exited).not.toBe(0);
  }, 120_000);
});

describe('train --workers', () => {
  /** The launcher's worker processes by rank. */
  function workerPids(launcher: number): Map<number, number> {
    let lines: string[] = [];
    try {
      lines = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(launcher)], {
        encoding: 'utf8',
      }).split('\n');
    } catch {
      // no child yet (ps exits 1)
    }
    const ranks = new Map<number, number>();
    for (const line of lines) {
      const match = /^\s*(\d+)\s.*\bworker\b.*--rank (\d+)/.exec(line);
      if (match) ranks.set(Number(match[2]), Number(match[1]));
    }
    return ranks;
  }

  it('restarts a worker that died, then ends a crash loop at --max-restarts', async () => {
    const out = join(work, 'crash-loop');
    const child = startCli([
      'train',
      '--workers',
      '2',
      ...longRun(),
      '--batch-size',
      '6',
      '--backend',
      'wasm',
      '--max-restarts',
      '1',
      '--http-port',
      '0',
      '--out',
      out,
    ]);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const membership = () => stderr.split('\n').filter((l) => l.includes('"msg":"membership: '));
    const pidOf = (rank: number) => workerPids(child.pid as number).get(rank);
    const trained = () => existsSync(join(out, 'metrics.jsonl'));
    expect(await waitUntil(() => trained() && pidOf(1) !== undefined, 60_000)).toBe(true);
    const first = pidOf(1) as number;
    leftovers.push(first);
    process.kill(first, 'SIGKILL');
    // Restarted, rejoined: one membership change in one line (below --min-workers the loss waits
    // for the join, so both are one change).
    const rejoined = () => membership().some((l) => /disconnected.*; rank 1 .* joined/.test(l));
    expect(await waitUntil(rejoined, 60_000), stderr.slice(-4000)).toBe(true);
    const second = pidOf(1) as number;
    expect(second).not.toBe(first);
    leftovers.push(second);
    process.kill(second, 'SIGKILL');
    expect(await exited).toBe(3);
    const last = errorLines(stderr).at(-1) ?? '';
    expect(last).toMatch(/--max-restarts 1/);
    expect(last).toMatch(/rank 1|worker 1/);
    expect(await waitUntil(() => workerPids(child.pid as number).size === 0, 10_000)).toBe(true);
  }, 180_000);
});
