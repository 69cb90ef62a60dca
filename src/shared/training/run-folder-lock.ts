import { randomUUID } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { link, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ExplainedError } from '../errors.js';
import { log } from '../logging/logger.js';

/** The lock file of a run folder, written by the process that owns the run. */
export const LOCK_FILE = 'run.lock';
/** How often the owner renews its lock (the file's mtime). */
export const LOCK_RENEW_MS = 2_000;
/** A lock not renewed for this long belongs to a dead process (on any host): it is taken over. */
export const LOCK_STALE_MS = 30_000;

/** Who owns a run folder; `id` is unique to one acquisition. */
export interface LockOwner {
  id: string;
  pid: number;
  host: string;
  /** When the owner took the lock (ISO 8601). */
  since: string;
}

/** The run folder is owned by a live process; the message names it. Exit code 3. */
export class RunFolderLocked extends ExplainedError {
  constructor(
    readonly dir: string,
    readonly owner: LockOwner | undefined,
    ageMs: number,
  ) {
    const who = owner
      ? `pid ${owner.pid} on ${owner.host} since ${owner.since}`
      : 'a process that is taking its lock now';
    super(
      `run folder ${dir} is in use by ${who} (lock renewed ${Math.round(ageMs / 1000)} s ago): ` +
        `stop that run first; a lock not renewed for ${LOCK_STALE_MS / 1000} s is taken over`,
      3,
    );
  }
}

/**
 * The renewal runs in a thread of its own: the main thread may compute synchronously for longer
 * than LOCK_STALE_MS (a training step of a large model on a CPU backend), and a lock must not
 * look abandoned meanwhile. Each renewal first checks that the lock is still this owner's, and
 * posts the owner found otherwise (null: none), then stops.
 */
const RENEWER = `
const { parentPort, workerData } = require('node:worker_threads');
const { readFileSync, utimesSync } = require('node:fs');
const timer = setInterval(() => {
  let owner = null;
  try { owner = JSON.parse(readFileSync(workerData.path, 'utf8')); } catch {}
  if (owner === null || owner.id !== workerData.id) {
    clearInterval(timer);
    parentPort.postMessage(owner);
    return;
  }
  try { const now = new Date(); utimesSync(workerData.path, now, now); } catch {}
}, workerData.renewMs);
`;

/** Locks held by this process (so that it never takes over its own lock as stale). */
const heldHere = new Set<string>();

/**
 * The exclusive ownership of a run folder by one process, across hosts that share the folder
 * (a Kubernetes PersistentVolume): `run.lock` holds the owner (pid, host, since) and its mtime
 * is renewed every LOCK_RENEW_MS. Another process is refused while the lock is live; it takes
 * over a lock that is stale: not renewed for LOCK_STALE_MS, or left by a dead process of this
 * host (pid gone, or this very pid: a container restarted in place). Taking over goes through
 * a guard folder named after the stale owner (`mkdir` is atomic), so of several processes racing
 * for one stale lock exactly one replaces it. The owner checks at each renewal that the lock is
 * still its own and calls `onLost` otherwise. The lock is released by release() and, on
 * process.exit, synchronously.
 */
export class RunFolderLock {
  private readonly renewer: Worker;
  private readonly releaseOnExit = () => this.releaseSync();
  private released = false;

  private constructor(
    readonly dir: string,
    readonly owner: LockOwner,
    onLost: (current: LockOwner | undefined) => void,
  ) {
    heldHere.add(owner.id);
    this.renewer = new Worker(RENEWER, {
      eval: true,
      workerData: { path: join(dir, LOCK_FILE), id: owner.id, renewMs: LOCK_RENEW_MS },
    });
    this.renewer.unref();
    this.renewer.on('message', (current: LockOwner | null) => {
      this.releaseSync();
      onLost(current ?? undefined);
    });
    process.on('exit', this.releaseOnExit);
  }

  /**
   * Creates `dir` if needed and takes its lock. Throws RunFolderLocked when a live process
   * owns it. `onLost` is called if the lock is later found to be another's (this process was
   * paused for longer than LOCK_STALE_MS and another one took over); by default it ends the
   * process with one line.
   */
  static async acquire(
    dir: string,
    onLost: (current: LockOwner | undefined) => void = exitOnLost(dir),
  ): Promise<RunFolderLock> {
    await mkdir(dir, { recursive: true });
    const path = join(dir, LOCK_FILE);
    const me: LockOwner = {
      id: randomUUID(),
      pid: process.pid,
      host: hostname(),
      since: new Date().toISOString(),
    };
    // The claim is written whole first, so that a reader never sees a half-written owner.
    const claim = join(dir, `.${LOCK_FILE}.claim-${me.id}`);
    await writeFile(claim, `${JSON.stringify(me)}\n`);
    // Counted as held from now on: between publishing the lock and returning, this acquisition
    // is a lock of this pid that another acquisition in this process must not take for stale.
    heldHere.add(me.id);
    try {
      return await RunFolderLock.publish(dir, path, claim, me, onLost);
    } catch (error) {
      heldHere.delete(me.id);
      throw error;
    }
  }

  /** Makes the written claim the folder's lock: a new one, or a stale one's replacement. */
  private static async publish(
    dir: string,
    path: string,
    claim: string,
    me: LockOwner,
    onLost: (current: LockOwner | undefined) => void,
  ): Promise<RunFolderLock> {
    try {
      for (;;) {
        if (await linkIfAbsent(claim, path)) break;
        const seen = await readLock(path);
        if (seen === undefined) continue; // released meanwhile: try again
        if (!isStale(seen)) throw new RunFolderLocked(dir, seen.owner, seen.ageMs);
        if (!(await takeOver(path, seen, claim))) throw new RunFolderLocked(dir, undefined, 0);
        log().warn(
          { dir, previousOwner: seen.owner },
          `took over the lock of ${dir} from ${seen.owner ? `pid ${seen.owner.pid} on ${seen.owner.host}` : 'an unknown owner'}, ` +
            `not renewed for ${Math.round(seen.ageMs / 1000)} s (its process is gone)`,
        );
        break;
      }
    } finally {
      await rm(claim, { force: true });
    }
    if ((await readLock(path))?.owner?.id !== me.id) throw new RunFolderLocked(dir, undefined, 0);
    await removeLeftovers(dir);
    return new RunFolderLock(dir, me, onLost);
  }

  /** Gives the folder up (if the lock is still this process's). */
  async release(): Promise<void> {
    this.releaseSync();
  }

  private releaseSync(): void {
    if (this.released) return;
    this.released = true;
    void this.renewer.terminate();
    process.off('exit', this.releaseOnExit);
    heldHere.delete(this.owner.id);
    const path = join(this.dir, LOCK_FILE);
    try {
      if (parseOwner(readFileSync(path, 'utf8'))?.id === this.owner.id) unlinkSync(path);
    } catch {
      // Already gone, or taken over: nothing of ours to remove.
    }
  }
}

/** A lock as found: its owner (undefined when unreadable), age and identity. */
interface SeenLock {
  owner: LockOwner | undefined;
  ageMs: number;
  /** Names this lock among the locks of the folder over time (its owner's id, or its inode). */
  key: string;
}

async function readLock(path: string): Promise<SeenLock | undefined> {
  try {
    const [text, info] = await Promise.all([readFile(path, 'utf8'), stat(path)]);
    const owner = parseOwner(text);
    return { owner, ageMs: Date.now() - info.mtimeMs, key: owner?.id ?? `inode-${info.ino}` };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const owner = JSON.parse(text) as LockOwner;
    return typeof owner.id === 'string' ? owner : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether a lock belongs to no live process: not renewed for LOCK_STALE_MS, or, on this host,
 * left by a process that is gone or by this pid (a container restarted in place gets the same
 * pid and hostname), unless this process holds it.
 */
function isStale({ owner, ageMs }: SeenLock): boolean {
  if (owner?.host === hostname()) {
    if (heldHere.has(owner.id)) return false;
    if (owner.pid === process.pid || !isAlive(owner.pid)) return true;
  }
  return ageMs > LOCK_STALE_MS;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Publishes the claim as the lock if there is none; false when a lock exists. */
async function linkIfAbsent(claim: string, path: string): Promise<boolean> {
  try {
    await link(claim, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/**
 * Replaces the stale lock `seen` by the claim, unless another process is replacing it: the guard
 * `run.lock.takeover-<key>-<n>` admits one process per stale lock (a guard left by a taker that
 * died is itself stale after LOCK_STALE_MS, and the next n is used). The holder of the guard
 * checks that the lock is still the stale one before replacing it, so a process that saw the
 * stale lock late finds the new owner's instead and gives up.
 */
async function takeOver(path: string, seen: SeenLock, claim: string): Promise<boolean> {
  for (let n = 1; ; n++) {
    const guard = `${path}.takeover-${seen.key}-${n}`;
    try {
      await mkdir(guard);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const info = await stat(guard).catch(() => undefined);
      if (info === undefined || Date.now() - info.mtimeMs < LOCK_STALE_MS) return false;
      continue;
    }
    try {
      if ((await readLock(path))?.key !== seen.key) return false;
      await rename(claim, path);
      return true;
    } finally {
      await rm(guard, { recursive: true, force: true });
    }
  }
}

/** What an interrupted write (atomic-file.ts) or lock claim leaves in a run folder. */
const ATOMIC_TEMP = /^\..+\.tmp-\d+-[0-9a-f]+$/;

/**
 * Removes what processes killed in this folder left: temporary files of atomic writes (a
 * checkpoint's is as large as the checkpoint), here and in model/, takeover guards of earlier
 * locks, and lock claims older than LOCK_STALE_MS (younger ones may be a live process's).
 */
async function removeLeftovers(dir: string): Promise<void> {
  const removed: string[] = [];
  let bytes = 0;
  for (const folder of [dir, join(dir, 'model')]) {
    const names = await readdir(folder).catch(() => [] as string[]);
    for (const name of names) {
      const path = join(folder, name);
      const info = await stat(path).catch(() => undefined);
      if (info === undefined) continue;
      const leftover =
        ATOMIC_TEMP.test(name) ||
        (folder !== dir && name.endsWith('.tmp')) || // model.json.tmp (model-files.ts)
        (folder === dir &&
          (name.startsWith(`${LOCK_FILE}.takeover-`) ||
            (name.startsWith(`.${LOCK_FILE}.claim-`) &&
              Date.now() - info.mtimeMs > LOCK_STALE_MS)));
      if (!leftover) continue;
      await rm(path, { recursive: true, force: true });
      removed.push(name);
      if (info.isFile()) bytes += info.size;
    }
  }
  if (removed.length > 0) {
    log().info(
      { dir, removed },
      `removed ${removed.length} file${removed.length > 1 ? 's' : ''} left in ${dir} by an interrupted run (${(bytes / 1e6).toFixed(1)} MB)`,
    );
  }
}

/** The default reaction to a lock taken over: end the process before it writes anything more. */
function exitOnLost(dir: string): (current: LockOwner | undefined) => void {
  return (current) => {
    log().error(
      `lost the lock of run folder ${dir} to ${current ? `pid ${current.pid} on ${current.host}` : 'another process'} ` +
        `(this process did not renew it for ${LOCK_STALE_MS / 1000} s): stopping without writing to it`,
    );
    process.exit(1);
  };
}
