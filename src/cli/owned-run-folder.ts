import { existsSync } from 'node:fs';
import { readdir, rm, rmdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import { CHECKPOINT_FILE } from '../shared/training/checkpoint.js';
import { createRunDir, latestRunDir, METRICS_FILE } from '../shared/training/run-folder.js';
import { LOCK_FILE, RunFolderLock } from '../shared/training/run-folder-lock.js';
import { RUN_FLAGS_FILE, restoreRunFlags, saveRunFlags } from './run-flags.js';

/** `--resume auto`: resume the --out folder if it holds a checkpoint, start a run there otherwise. */
export const RESUME_AUTO = 'auto';

/**
 * The run folder of one `train` or `coordinator` command, owned (locked, see RunFolderLock) by
 * this process from before anything in it is read until the command ends: a second process on
 * the same folder is refused, naming this one. Open it first thing in the command's action and
 * release it in a `finally` (process exit releases it too).
 */
export class OwnedRunFolder {
  private constructor(
    private readonly command: Command,
    /** The folder of the run to resume; undefined for a new run. */
    readonly resumeDir: string | undefined,
    private lock: RunFolderLock | undefined,
  ) {}

  /**
   * Reads --resume and --out: `--resume DIR` (or the latest run under runs/), `--resume auto`
   * with `--out DIR`, or a new run in `--out DIR`. Locks that folder (a new one under runs/ is
   * locked once created, by run()), then, for a resumed run, restores the flags it was started
   * with onto `command` (restoreRunFlags). Throws UserError for contradictory flags or a missing
   * folder, RunFolderLocked when another process owns the folder.
   */
  static async open(command: Command): Promise<OwnedRunFolder> {
    const resume = command.getOptionValue('resume') as string | true | undefined;
    const out = command.getOptionValue('out') as string | undefined;
    if (resume === RESUME_AUTO) {
      if (out === undefined) {
        throw new UserError(
          '--resume auto needs --out DIR: the run folder to resume, or to start the run in',
        );
      }
      const dir = resolve(out);
      const lock = await RunFolderLock.acquire(dir);
      if (existsSync(join(dir, CHECKPOINT_FILE))) {
        return OwnedRunFolder.resumed(command, dir, lock);
      }
      log().info({ runDir: dir }, `--resume auto: ${dir} holds no checkpoint; starting a new run`);
      return new OwnedRunFolder(command, undefined, lock);
    }
    if (resume !== undefined) {
      const dir = resume === true ? await latestRunDir() : resolve(resume);
      if (out !== undefined && resolve(out) !== dir) {
        throw new UserError(`--out ${out} and --resume ${dir}: a resumed run stays in its folder`);
      }
      if (!existsSync(dir)) throw new UserError(`--resume ${resume}: there is no folder ${dir}`);
      return OwnedRunFolder.resumed(command, dir, await RunFolderLock.acquire(dir));
    }
    const lock = out === undefined ? undefined : await RunFolderLock.acquire(resolve(out));
    return new OwnedRunFolder(command, undefined, lock);
  }

  private static async resumed(
    command: Command,
    dir: string,
    lock: RunFolderLock,
  ): Promise<OwnedRunFolder> {
    try {
      await restoreRunFlags(dir, command);
    } catch (error) {
      await lock.release();
      throw error;
    }
    return new OwnedRunFolder(command, dir, lock);
  }

  /**
   * Runs `run` in the run's folder: the resumed one, or a new one (`--out`, or under runs/) with
   * the flags that started it saved (saveRunFlags) and named in the run's first log line. A new
   * folder that is still empty when the run fails (bad data, an interruption before training)
   * is removed again, with an emptied runs/ above it: a failed start leaves nothing behind.
   */
  async run<T>(model: string, run: (runDir: string) => Promise<T>): Promise<T> {
    const { command } = this;
    if (this.resumeDir !== undefined) {
      await saveRunFlags(this.resumeDir, command);
      return run(this.resumeDir);
    }
    const out = command.getOptionValue('out') as string | undefined;
    const runDir = await createRunDir(model, out);
    this.lock ??= await RunFolderLock.acquire(runDir);
    // With --resume auto, the earlier run may be this one, restarted before its first
    // checkpoint: its workers may still hold its state (see restartPoint), and its metrics
    // are trimmed to where it goes on once that is known (trainWorld).
    await removeEarlierMetrics(runDir, command.getOptionValue('resume') === RESUME_AUTO);
    log().info({ runDir }, `run folder: ${runDir}`);
    await saveRunFlags(runDir, command);
    try {
      return await run(runDir);
    } catch (error) {
      const left = await readdir(runDir).catch(() => [RUN_FLAGS_FILE]);
      if (left.every((name) => name === RUN_FLAGS_FILE || name === LOCK_FILE)) {
        await this.release();
        await rm(runDir, { recursive: true, force: true });
        if (out === undefined) await rmdir(dirname(runDir)).catch(() => undefined);
      }
      throw error;
    }
  }

  /** Gives the folder up; idempotent. */
  async release(): Promise<void> {
    await this.lock?.release();
  }
}

/**
 * A new run may start in a folder that an earlier one left without a checkpoint (it failed or
 * was killed before its first): its metrics are removed, so that the new run's are not
 * appended to the old one's (its trace is kept under another name, see openTrace).
 */
async function removeEarlierMetrics(runDir: string, keepMetrics: boolean): Promise<void> {
  const file = join(runDir, METRICS_FILE);
  if (keepMetrics || !existsSync(file)) return;
  await rm(file, { force: true });
  log().info(
    { runDir, removed: [METRICS_FILE] },
    `removed ${METRICS_FILE} of an earlier run in ${runDir} that wrote no checkpoint`,
  );
}
