import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { DISTRIBUTED_FLAGS } from '../shared/config/command-flags.js';
import { type FlagName, flagOf } from '../shared/config/flags.js';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
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
