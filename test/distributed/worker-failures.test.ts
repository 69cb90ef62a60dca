// A worker that dies or stalls mid-run ends the whole run within the step deadline, with a
// message naming its rank and what it was doing, and no process left behind. Asking for GPUs
// without tfjs-node-gpu is a clear error, never a silent CPU run.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../../src/shared/training/checkpoint.js';
import { infoLines, runCli } from '../cli/run-cli.js';
import { writeSyntheticCifar } from '../helpers/synthetic-cifar.js';
import { ensureBuilt, errorLines, isAlive, startCli, waitUntil } from './cli-runs.js';

let work: string;
let data: string;
const leftovers: number[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'ddp-failures-'));
  data = join(work, 'cifar');
  await writeSyntheticCifar(data, { perBatch: 40 });
  await ensureBuilt();
}, 300_000);

afterEach(() => {
  for (const pid of leftovers.splice(0)) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** The launcher's worker processes by rank (from their --rank argument). */
function workerPids(launcher: number): Map<number, number> {
  const lines = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(launcher)], {
    encoding: 'utf8',
  }).split('\n');
  const ranks = new Map<number, number>();
  for (const line of lines) {
    const match = /^\s*(\d+)\s.*\bworker\b.*--rank (\d+)/.exec(line);
    if (match) ranks.set(Number(match[2]), Number(match[1]));
  }
  return ranks;
}

function stepsDone(runDir: string): number {
  const file = join(runDir, 'metrics.jsonl');
  return existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l.includes('"step"')).length
    : 0;
}

/** Starts a long 2-worker run and waits for it to train a few steps. */
async function startLongRun(out: string, stepTimeout: number) {
  const child = startCli([
    'train',
    '--workers',
    '2',
    '--model',
    'lenet5',
    '--data',
    data,
    '--val-size',
    '20',
    '--steps',
    '100000',
    '--batch-size',
    '8',
    '--backend',
    'wasm',
    '--step-timeout',
    String(stepTimeout),
    '--out',
    out,
  ]);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => resolve(code)),
  );
  expect(await waitUntil(() => stepsDone(out) >= 3, 60_000), stderr.slice(-3000)).toBe(true);
  const pids = workerPids(child.pid as number);
  expect([...pids.keys()].sort()).toEqual([0, 1]);
  leftovers.push(...pids.values());
  return { child, exited, pids, stderr: () => stderr };
}

/** Starts a long 2-worker run, waits for it to train, and sends `signal` to worker rank 1. */
async function disturbRank1(name: string, stepTimeout: number, signal: NodeJS.Signals) {
  const { exited, pids, stderr } = await startLongRun(join(work, name), stepTimeout);
  const start = Date.now();
  process.kill(pids.get(1) as number, signal);
  const code = await exited;
  return { code, seconds: (Date.now() - start) / 1000, stderr: stderr(), pids: [...pids.values()] };
}

describe('a worker that fails mid-run', () => {
  it('SIGKILLed: the run stops at once, naming the rank, and no worker is left', async () => {
    const { code, seconds, stderr, pids } = await disturbRank1('killed', 20, 'SIGKILL');
    expect(code).toBe(3);
    expect(seconds).toBeLessThan(10);
    const errors = errorLines(stderr);
    // Whichever sees the death first tells it: the coordinator (the worker's stream ended,
    // saying what it was doing) or the launcher (the process exited).
    expect(errors.at(-1)).toMatch(
      /^(rank 1 \(.*pid \d+\) disconnected \(.*\) while training step \d+|worker 1 exited unexpectedly \(signal SIGKILL\))/,
    );
    expect(await waitUntil(() => pids.every((p) => !isAlive(p)), 5000)).toBe(true);
  });

  it('stalled (SIGSTOP): the run stops within the step deadline, naming the rank', async () => {
    const { code, seconds, stderr, pids } = await disturbRank1('stalled', 4, 'SIGSTOP');
    expect(code).toBe(3);
    // The deadline (4 s), the watchdog's period, then stopping the others.
    expect(seconds).toBeLessThan(4 + 8);
    expect(errorLines(stderr).at(-1)).toMatch(/rank 1\b/);
    // The stopped worker cannot handle SIGTERM: the launcher kills it.
    expect(await waitUntil(() => pids.every((p) => !isAlive(p)), 5000)).toBe(true);
  });
});

describe('Ctrl-C on the launcher', () => {
  it('stops every worker after the current step, with a checkpoint to resume from', async () => {
    const out = join(work, 'interrupted');
    const { child, exited, pids, stderr } = await startLongRun(out, 20);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    const checkpoint = await readCheckpoint(out);
    expect(checkpoint.step).toBeGreaterThanOrEqual(3);
    // Told once, at INFO (not by every worker and the coordinator, as errors).
    expect(errorLines(stderr())).toEqual([]);
    expect(infoLines(stderr()).filter((m) => m.includes('interrupted by'))).toEqual([
      `interrupted by SIGINT after step ${checkpoint.step}; checkpoint written; continue with: tfjs-ddp train --resume ${out}`,
    ]);
    expect(await waitUntil(() => [...pids.values()].every((p) => !isAlive(p)), 5000)).toBe(true);
  });
});

describe('GPUs', () => {
  it('--gpus without tfjs-node-gpu is a clear error, before any worker starts', async () => {
    const result = await runCli([
      'train',
      '--workers',
      '2',
      '--gpus',
      '0,1',
      '--model',
      'lenet5',
      '--dataset',
      'synthetic',
    ]);
    expect(result.code).toBe(2);
    expect(errorLines(result.stderr)).toEqual([
      expect.stringMatching(/^--gpus: @tensorflow\/tfjs-node-gpu is not installed/),
    ]);
  });
});
