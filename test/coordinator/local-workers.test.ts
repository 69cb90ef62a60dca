import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { LocalWorkers, WorkerProcessError } from '../../src/coordinator/local-workers.js';
import { GRADIENT_PROCESS_NODE_FLAGS } from '../../src/shared/transport/grpc-settings.js';

const CHILD = fileURLToPath(new URL('../fixtures/child-process.mjs', import.meta.url));
const PARENT = fileURLToPath(new URL('../fixtures/launcher-parent.mjs', import.meta.url));

function captureLogger() {
  const records: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      records.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { log: pino({ base: {} }, sink), records };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(check: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

describe('LocalWorkers', () => {
  it('relays each child log line tagged with its rank and resolves when all exit 0', async () => {
    const { log, records } = captureLogger();
    const workers = new LocalWorkers(
      [0, 1].map((rank) => ({ rank, args: ['exit', '0'] })),
      log,
      CHILD,
    );
    await workers.done;
    const started = records.filter((r) => r.msg === 'child started');
    expect(started.map((r) => r.rank).sort()).toEqual([0, 1]);
    expect(started.every((r) => r.mode === 'exit' && r.level === 30)).toBe(true);
    // Workers move gradients: they start with the flags that keep V8's full collections away.
    for (const r of started) expect(r.execArgv).toEqual([...GRADIENT_PROCESS_NODE_FLAGS]);
    expect(records.filter((r) => r.msg === 'plain stdout line')).toHaveLength(2);
  });

  it('stops every other child when one fails, and names the failed rank', async () => {
    const { log } = captureLogger();
    const workers = new LocalWorkers(
      [
        { rank: 0, args: ['wait'] },
        { rank: 1, args: ['exit', '3'], env: { DELAY_MS: '300' } },
        { rank: 2, args: ['wait'] },
      ],
      log,
      CHILD,
    );
    await new Promise((r) => setTimeout(r, 150));
    const pids = workers.pids();
    expect(pids).toHaveLength(3);
    const err = await workers.done.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WorkerProcessError);
    expect((err as WorkerProcessError).rank).toBe(1);
    expect((err as WorkerProcessError).exitCode).toBe(3);
    expect(await waitUntil(() => pids.every((p) => !isAlive(p)), 10_000)).toBe(true);
  });

  it('leaves no orphans when the launcher itself is killed with SIGKILL', async () => {
    const parent = spawn(process.execPath, [PARENT], { stdio: ['ignore', 'pipe', 'inherit'] });
    const pids = await new Promise<number[]>((resolve) => {
      parent.stdout.once('data', (d) => resolve(JSON.parse(String(d))));
    });
    expect(pids).toHaveLength(2);
    expect(pids.every(isAlive)).toBe(true);
    parent.kill('SIGKILL');
    expect(await waitUntil(() => pids.every((p) => !isAlive(p)), 10_000)).toBe(true);
  });
});
