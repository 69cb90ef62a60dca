import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { TRAINING_FLAGS } from '../shared/config/command-flags.js';
import { envOf, FLAGS, type FlagName, flagOf } from '../shared/config/flags.js';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import { isGiven } from './flag-options.js';

/**
 * Flags that are not settings of the run: where it is and how this command reports. Every other
 * flag of `train` and `coordinator` that is not part of the training configuration (which the
 * checkpoint keeps) is kept by `--resume` unless given again: see keptOnResume.
 */
const NOT_RUN_SETTINGS: readonly FlagName[] = ['out', 'resume', 'json'];

/** The training configuration's flags, which the checkpoint keeps (the global batch too). */
const IN_THE_CHECKPOINT: readonly FlagName[] = [...TRAINING_FLAGS, 'globalBatchSize'];

/**
 * Secrets: never written to the run folder. The file records that one was given, and a resumed
 * run must be given it again (rather than run without the protection it started with).
 */
const SECRETS: readonly FlagName[] = ['token', 'httpToken'];
const SECRET_GIVEN = '(given; secrets are not stored)';

/** Flags a resumed run may change in its training configuration (see resumeTrainConfig). */
const TRAINING_CHANGES = ['epochs', 'steps', 'data', 'evalBatchSize'] as const;

/** The file of a run folder that keeps the flags it was started with (see keptOnResume). */
export const RUN_FLAGS_FILE = 'run-flags.json';

type Stored = Partial<Record<FlagName, string | boolean>>;

/**
 * The flags of `command` that a resumed run keeps, in the command's order: all but the training
 * configuration's (the checkpoint keeps those) and those that are not settings of the run.
 */
export function keptOnResume(command: Command): FlagName[] {
  const names = new Set(command.options.map((o) => o.attributeName()));
  return (Object.keys(FLAGS) as FlagName[]).filter(
    (name) =>
      names.has(name) && !IN_THE_CHECKPOINT.includes(name) && !NOT_RUN_SETTINGS.includes(name),
  );
}

/**
 * Records the flags given to `command` that a resumed run keeps in `runDir` (as given, not
 * defaults); of a secret, only that it was given.
 */
export async function saveRunFlags(runDir: string, command: Command): Promise<void> {
  const stored: Stored = {};
  for (const name of keptOnResume(command)) {
    const source = command.getOptionValueSource(name);
    if (source === 'cli' || source === 'env' || source === 'config') {
      stored[name] = SECRETS.includes(name)
        ? SECRET_GIVEN
        : (command.getOptionValue(name) as string | boolean);
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
  for (const name of keptOnResume(command)) {
    const before = stored[name];
    if (SECRETS.includes(name)) {
      if (before !== undefined && !isGiven(command, name)) {
        throw new UserError(
          `the run in ${runDir} was started with ${flagOf(name)}: give it again (or ${envOf(name)}); ` +
            'secrets are not kept in the run folder',
        );
      }
      continue;
    }
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
