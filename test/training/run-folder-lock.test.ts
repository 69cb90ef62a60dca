import { type ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  LOCK_FILE,
  LOCK_RENEW_MS,
  LOCK_STALE_MS,
  type LockOwner,
  RunFolderLock,
} from '../../src/shared/training/run-folder-lock.js';
import { ensureBuilt } from '../cli/run-cli.js';

// The lock of a run folder, taken by real processes on real files.

const HOLDER = join(import.meta.dirname, 'fixtures/lock-holder.mjs');
let work: string;
const children: ChildProcessWithoutNullStreams[] = [];
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'run-lock-'));
  await ensureBuilt();
}, 180_000);
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await rm(work, { recursive: true, force: true });
});

type Outcome = { acquired: true; pid: number } | { refused: string };

/** Starts a lock-holder process; resolves with it and its first line. */
async function holder(dir: string, ...args: string[]) {
  const child = spawn(process.execPath, [HOLDER, dir, ...args]);
  children.push(child);
  const outcome = await new Promise<Outcome>((resolve, reject) => {
    let out = '';
    // Log records (JSON lines) are expected; anything else is a crash.
    child.stderr.on('data', (d) => {
      if (!String(d).startsWith('{')) reject(new Error(String(d)));
    });
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]) as Outcome);
    });
  });
  const closed = new Promise((resolve) => child.on('close', resolve));
  return { child, outcome, closed };
}

/** Writes a lock as another process would have left it, renewed `ageMs` ago. */
async function plantLock(dir: string, owner: Partial<LockOwner>, ageMs: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  const full = {
    id: `planted-${Math.random()}`,
    pid: 1,
    host: 'coordinator-7f9c',
    since: '2026-01-02T03:04:05.000Z',
    ...owner,
  };
  await writeFile(path, JSON.stringify(full));
  const at = new Date(Date.now() - ageMs);
  await utimes(path, at, at);
}

function owner(dir: string): LockOwner {
  return JSON.parse(readFileSync(join(dir, LOCK_FILE), 'utf8')) as LockOwner;
}

describe('the run folder lock', () => {
  it('refuses a second process, naming the owner, until the owner releases it', async () => {
    const dir = join(work, 'two');
    const first = await holder(dir);
    expect(first.outcome).toMatchObject({ acquired: true });
    const second = await holder(dir);
    const { since } = owner(dir);
    // One line naming the owner; the lock's age depends on this machine's speed.
    const refused = (second.outcome as { refused: string }).refused;
    expect(refused.replace(/renewed \d+ s ago/, 'renewed N s ago')).toBe(
      `run folder ${dir} is in use by pid ${first.child.pid} on ${hostname()} since ${since} ` +
        `(lock renewed N s ago): stop that run first; a lock not renewed for ${LOCK_STALE_MS / 1000} s is taken over`,
    );
    first.child.stdin.end();
    await first.closed;
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    const third = await holder(dir);
    expect(third.outcome).toMatchObject({ acquired: true });
    third.child.stdin.end();
    await third.closed;
  });

  it('is released when the process calls process.exit', async () => {
    const dir = join(work, 'exit');
    const h = await holder(dir, 'exit');
    expect(h.outcome).toMatchObject({ acquired: true });
    await h.closed;
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it('takes over at once the lock of a process of this host that is gone', async () => {
    const dir = join(work, 'dead-pid');
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    await plantLock(dir, { pid: Number(gone.stdout), host: hostname() }, 0);
    const lock = await RunFolderLock.acquire(dir);
    expect(owner(dir)).toEqual(lock.owner);
    await lock.release();
  });

  it('refuses the lock of another host while it is renewed, and takes it over once stale', async () => {
    const dir = join(work, 'other-host');
    await plantLock(dir, { pid: 1 }, 2_000);
    await expect(RunFolderLock.acquire(dir)).rejects.toThrow(
      `run folder ${dir} is in use by pid 1 on coordinator-7f9c since 2026-01-02T03:04:05.000Z (lock renewed 2 s ago)`,
    );
    await plantLock(dir, { pid: 1 }, LOCK_STALE_MS + 1_000);
    const lock = await RunFolderLock.acquire(dir);
    expect(owner(dir)).toMatchObject({ pid: process.pid, host: hostname() });
    // This process does not take over its own lock.
    await expect(RunFolderLock.acquire(dir)).rejects.toThrow(`pid ${process.pid} on ${hostname()}`);
    await lock.release();
  });

  it('gives a stale lock to exactly one of several processes racing for it', async () => {
    for (const round of [1, 2]) {
      const dir = join(work, `race-${round}`);
      await plantLock(dir, {}, LOCK_STALE_MS + 5_000);
      const at = String(Date.now() + 1_500);
      const racers = await Promise.all(Array.from({ length: 5 }, () => holder(dir, 'race', at)));
      const winners = racers.filter((r) => 'acquired' in r.outcome);
      expect(winners).toHaveLength(1);
      expect(owner(dir).pid).toBe(winners[0].child.pid);
      for (const r of racers) {
        if ('refused' in r.outcome)
          expect(r.outcome.refused).toMatch(/^run folder .* is in use by/);
        r.child.stdin.end();
      }
      await Promise.all(racers.map((r) => r.closed));
      // No guard or claim is left behind.
      expect(await readdir(dir)).toEqual([]);
    }
  }, 30_000);

  it('gives a stale lock to exactly one of many acquisitions interleaved in one process', async () => {
    // Concurrent acquisitions interleave at every file operation: one that saw the stale lock
    // reaches its takeover after another has already replaced it.
    for (let round = 0; round < 100; round++) {
      const dir = join(work, `interleaved-${round}`);
      await plantLock(dir, {}, LOCK_STALE_MS + 5_000);
      const outcomes = await Promise.allSettled(
        Array.from({ length: 8 }, () => RunFolderLock.acquire(dir, () => {})),
      );
      const won = outcomes.filter((o) => o.status === 'fulfilled');
      const current = owner(dir);
      await Promise.all(won.map((w) => w.value.release()));
      expect(won.map((w) => w.value.owner)).toEqual([current]);
      expect(await readdir(dir)).toEqual([]);
    }
  });

  it('tells its owner when another process took it over', async () => {
    const dir = join(work, 'lost');
    let lost: LockOwner | undefined;
    const lock = await RunFolderLock.acquire(dir, (current) => {
      lost = current;
    });
    await plantLock(dir, { pid: 4242 }, 0);
    await expect.poll(() => lost?.pid, { timeout: LOCK_RENEW_MS + 2_000 }).toBe(4242);
    // Releasing leaves the other's lock alone.
    await lock.release();
    expect(owner(dir).pid).toBe(4242);
  }, 15_000);

  it('is renewed while the main thread computes without a pause', async () => {
    const dir = join(work, 'busy');
    const lock = await RunFolderLock.acquire(dir);
    const taken = statSync(join(dir, LOCK_FILE)).mtimeMs;
    // A synchronous training step longer than the renewal interval.
    const until = Date.now() + LOCK_RENEW_MS + 1_000;
    while (Date.now() < until) {
      // busy
    }
    expect(statSync(join(dir, LOCK_FILE)).mtimeMs).toBeGreaterThan(taken + LOCK_RENEW_MS / 2);
    await lock.release();
  });

  it('removes the files left by interrupted writes when taken', async () => {
    const dir = join(work, 'leftovers');
    await mkdir(join(dir, 'model'), { recursive: true });
    const left = [
      '.checkpoint.ckpt.tmp-4242-0a1b2c3d',
      '.config.json.tmp-4242-deadbeef',
      `.${LOCK_FILE}.claim-old`,
    ];
    for (const name of left) await writeFile(join(dir, name), Buffer.alloc(1000));
    const old = new Date(Date.now() - LOCK_STALE_MS - 1_000);
    await utimes(join(dir, `.${LOCK_FILE}.claim-old`), old, old);
    await mkdir(join(dir, `${LOCK_FILE}.takeover-someone-1`));
    await writeFile(join(dir, 'model', 'model.json.tmp'), '{');
    await writeFile(join(dir, 'checkpoint.ckpt'), 'kept');
    await writeFile(join(dir, 'model', 'model.json'), '{}');
    const lock = await RunFolderLock.acquire(dir);
    expect((await readdir(dir)).sort()).toEqual(['checkpoint.ckpt', 'model', LOCK_FILE]);
    expect(await readdir(join(dir, 'model'))).toEqual(['model.json']);
    await lock.release();
  });
});
