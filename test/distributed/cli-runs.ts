// Helpers of the distributed tests: real `tfjs-ddp` processes (the built CLI), their
// run folders, and weight comparisons.
import { execFileSync } from 'node:child_process';
import { expect } from 'vitest';
import { readCheckpoint } from '../../src/shared/training/checkpoint.js';
import { type CliResult, errorLines, runCli } from '../cli/run-cli.js';

export { ensureBuilt, errorLines, MAIN, ROOT, startCli } from '../cli/run-cli.js';

/** The single-process `train --json` summary, with "workers": N in a distributed run. */
export interface Summary {
  model: string;
  backend: string;
  workers: number;
  steps: number;
  imagesPerSec: number;
  finalLoss: number | null;
  valAccuracy: number | null;
  runDir: string;
}

/** Runs `tfjs-ddp train ... --json` to completion; fails the test (with the log) unless it exits 0. */
export async function train(args: string[]): Promise<{ summary: Summary; result: CliResult }> {
  const result = await runCli(['train', ...args, '--json']);
  expect(
    result.code,
    `train ${args.join(' ')} exited ${result.code}:\n${result.stderr.slice(-4000)}`,
  ).toBe(0);
  expect(errorLines(result.stderr)).toEqual([]);
  return { summary: JSON.parse(result.stdout) as Summary, result };
}

/**
 * `train` flags of the small deterministic run the invariance and resume tests compare:
 * lenet5 on `data` for `steps` steps, SGD with momentum, augmentation on, on wasm.
 */
export function lenet5RunFlags(data: string, steps: number): string[] {
  return [
    '--model',
    'lenet5',
    '--data',
    data,
    '--val-size',
    '20',
    '--steps',
    String(steps),
    '--optimizer',
    'sgd',
    '--lr',
    '0.05',
    '--momentum',
    '0.9',
    '--augment',
    '--backend',
    'wasm',
  ];
}

/** All weights of a run's latest checkpoint (TrainStep.weightsLayout order). */
export async function finalWeights(runDir: string): Promise<Float32Array> {
  return (await readCheckpoint(runDir)).weights;
}

/** ‖a − b‖₂ / ‖b‖₂ over all weights. */
export function relativeError(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += (a[i] - b[i]) ** 2;
    norm += b[i] ** 2;
  }
  return Math.sqrt(diff / norm);
}

/** Pids of the live child processes of `pid`. */
export function childPids(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => n > 0);
  } catch {
    return [];
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitUntil(check: () => boolean, ms: number, every = 50): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, every));
  }
  return check();
}
