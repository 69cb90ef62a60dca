import { existsSync } from 'node:fs';
import { readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { DISTRIBUTED_FLAGS } from '../shared/config/command-flags.js';
import { type FlagName, flagOf } from '../shared/config/flags.js';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import { createRunDir, latestRunDir } from '../shared/training/run-folder.js';
import { isGiven } from './flag-options.js';

/**
 * The flags that shape a run without being part of its training configuration (which the
 * checkpoint keeps): `--resume` keeps them too, unless they are given again.
 */
export const KEPT_ON_RESUME: readonly FlagName[] = [
  'workers',
  'gpus',
  'backend',
  'checkpointEvery',
  // The global batch is the training configuration's, which a resumed run keeps anyway.
  ...DISTRIBUTED_FLAGS.filter((name) => name !== 'globalBatchSize'),
];

/** Flags a resumed run may change in its training configuration (see resumeTrainConfig). */
const TRAINING_CHANGES = ['epochs', 'steps', 'data', 'evalBatchSize'] as const;

/** The file of a run folder that keeps the KEPT_ON_RESUME flags it was started with. */
export const RUN_FLAGS_FILE = 'run-flags.json';

type Stored = Partial<Record<FlagName, string | boolean>>;

/** Records the KEPT_ON_RESUME flags given to `command` in `runDir` (as given, not defaults). */
export async function saveRunFlags(runDir: string, command: Command): Promise<void> {
  const stored: Stored = {};
  for (const name of KEPT_ON_RESUME) {
    const source = command.getOptionValueSource(name);
    if (source === 'cli' || source === 'env' || source === 'config') {
      stored[name] = command.getOptionValue(name) as string | boolean;
    }
  }
  await writeFile(join(runDir, RUN_FLAGS_FILE), `${JSON.stringify(stored, null, 2)}\n`);
}

/**
 * Gives `command` the flags the run in `runDir` was started with, where they are not given
 * again, and says in one line what was kept and what was overridden.
 */
export async function restoreRunFlags(runDir: string, command: Command): Promise<void> {
  const file = join(runDir, RUN_FLAGS_FILE);
  let stored: Stored = {};
  if (existsSync(file)) {
    try {
      stored = JSON.parse(await readFile(file, 'utf8')) as Stored;
    } catch (error) {
      throw new UserError(`${file} is not valid JSON: ${(error as Error).message}`);
    }
  }
  const has = (name: FlagName) => command.options.some((o) => o.attributeName() === name);
  const shown = (name: FlagName, value: unknown) =>
    value === true ? flagOf(name) : `${flagOf(name)} ${String(value)}`;
  const kept: string[] = [];
  const overridden: string[] = [];
  for (const name of KEPT_ON_RESUME) {
    if (!has(name)) continue;
    const before = stored[name];
    if (isGiven(command, name)) {
      if (before !== undefined && before !== command.getOptionValue(name)) {
        overridden.push(`${shown(name, command.getOptionValue(name))} (was ${String(before)})`);
      }
    } else if (before !== undefined) {
      command.setOptionValueWithSource(name, before, 'config');
      kept.push(shown(name, before));
    }
  }
  for (const name of TRAINING_CHANGES) {
    if (has(name) && isGiven(command, name)) {
      overridden.push(shown(name, command.getOptionValue(name)));
    }
  }
  log().info(
    { runDir, kept, overridden },
    `resuming ${runDir} with its configuration` +
      (kept.length > 0 ? ` and its flags ${kept.join(', ')}` : '') +
      (overridden.length > 0 ? `; overridden: ${overridden.join(', ')}` : ''),
  );
}

/**
 * The run folder `--resume` names (the latest under runs/ when it names none), with the run's
 * flags restored onto `command` (restoreRunFlags); undefined without --resume.
 */
export async function resumedRunDir(command: Command): Promise<string | undefined> {
  const resume = command.getOptionValue('resume') as string | true | undefined;
  if (resume === undefined) return undefined;
  const runDir = resume === true ? await latestRunDir() : resolve(resume);
  const out = command.getOptionValue('out') as string | undefined;
  if (out !== undefined && resolve(out) !== runDir) {
    throw new UserError(`--out ${out} and --resume ${runDir}: a resumed run stays in its folder`);
  }
  await restoreRunFlags(runDir, command);
  return runDir;
}

/**
 * Runs `run` in the run's folder: the resumed one, or a new one (`--out`, or under runs/) with
 * the flags that started it saved (saveRunFlags) and named in the run's first log line. A new
 * folder that is still empty when the run fails (bad data, an interruption before training)
 * is removed again, with an emptied runs/ above it: a failed start leaves nothing behind.
 */
export async function inRunFolder<T>(
  command: Command,
  model: string,
  resumeDir: string | undefined,
  run: (runDir: string) => Promise<T>,
): Promise<T> {
  if (resumeDir !== undefined) {
    await saveRunFlags(resumeDir, command);
    return run(resumeDir);
  }
  const out = command.getOptionValue('out') as string | undefined;
  const runDir = await createRunDir(model, out);
  log().info({ runDir }, `run folder: ${runDir}`);
  await saveRunFlags(runDir, command);
  try {
    return await run(runDir);
  } catch (error) {
    const left = await readdir(runDir).catch(() => [RUN_FLAGS_FILE]);
    if (left.every((name) => name === RUN_FLAGS_FILE)) {
      await rm(runDir, { recursive: true, force: true });
      if (out === undefined) await rmdir(dirname(runDir)).catch(() => undefined);
    }
    throw error;
  }
}
