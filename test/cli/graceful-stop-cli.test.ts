import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { childPids, isAlive, waitUntil } from '../distributed/cli-runs.js';
import { ensureBuilt, startCli } from './run-cli.js';

// SIGTERM in the phases where processes used to linger: each must exit within 5 s, say so once
// at INFO, and leave no process behind.

const STOP_WITHIN_MS = 5000;
let work: string;
const started: ChildProcessWithoutNullStreams[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'graceful-stop-'));
  await ensureBuilt();
}, 180_000);
afterEach(() => {
  for (const child of started.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

interface LogRecord {
  level: number;
  msg: string;
}

/** A CLI process whose JSON log records are collected as they come. */
function launch(args: string[]) {
  const child = startCli(args, { cwd: work });
  started.push(child);
  const records: LogRecord[] = [];
  let partial = '';
  child.stderr.on('data', (chunk) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.startsWith('{')) records.push(JSON.parse(line) as LogRecord);
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => resolve(code)),
  );
  return { child, records, exited };
}

/**
 * Sends SIGTERM once a record matches `ready` (and, with `children`, once that many child
 * processes run: the log line may be read before they are spawned); resolves with the exit
 * code, the time taken and the children's pids.
 */
async function terminateWhen(run: ReturnType<typeof launch>, ready: RegExp, children = 0) {
  const seen = await waitUntil(() => run.records.some((r) => ready.test(r.msg)), 60_000);
  expect(seen, `no log line matching ${ready}`).toBe(true);
  const spawned = await waitUntil(() => childPids(run.child.pid!).length >= children, 10_000);
  expect(spawned, `${children} child processes`).toBe(true);
  const pids = childPids(run.child.pid!);
  const t0 = Date.now();
  run.child.kill('SIGTERM');
  const code = await run.exited;
  return { code, elapsedMs: Date.now() - t0, children: pids };
}

/** The interruption is told once, at INFO, and nothing is logged as an error. */
function expectOneInterruption(records: readonly LogRecord[]) {
  expect(records.filter((r) => r.level >= 50).map((r) => r.msg)).toEqual([]);
  const told = records.filter((r) => /^(interrupted|stopped) by SIGTERM/.test(r.msg));
  expect(told.map((r) => r.level)).toEqual([30]);
}

const RUN = ['--model', 'lenet5', '--dataset', 'synthetic', '--steps', '5', '--backend', 'wasm'];

describe('SIGTERM in every phase', () => {
  it('a coordinator still waiting for workers to join exits at once', async () => {
    const run = launch(['coordinator', ...RUN, '--world-size', '2', '--port', '0']);
    const { code, elapsedMs } = await terminateWhen(run, /waiting for 2 workers to join/);
    expect(code).toBe(143);
    expect(elapsedMs).toBeLessThan(STOP_WITHIN_MS);
    expectOneInterruption(run.records);
  });

  it('a worker that has not reached its coordinator exits at once', async () => {
    // A port that accepts nothing: bound, never listening.
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    await new Promise((resolve) => blocker.close(resolve));
    const run = launch(['worker', '--coordinator', `127.0.0.1:${port}`, '--backend', 'wasm']);
    const { code, elapsedMs } = await terminateWhen(run, /this worker computes on/);
    expect(code).toBe(143);
    expect(elapsedMs).toBeLessThan(STOP_WITHIN_MS);
    expectOneInterruption(run.records);
  });

  it('`train --workers 2` still starting its workers exits at once and leaves none behind', async () => {
    const run = launch(['train', ...RUN, '--workers', '2', '--out', join(work, 'spawning')]);
    const { code, elapsedMs, children } = await terminateWhen(run, /waiting for 2 workers/, 2);
    expect(code).toBe(143);
    expect(elapsedMs).toBeLessThan(STOP_WITHIN_MS);
    expect(children).toHaveLength(2);
    expect(await waitUntil(() => children.every((pid) => !isAlive(pid)), 1000)).toBe(true);
    expectOneInterruption(run.records);
  });
});
