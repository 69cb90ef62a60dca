import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerCommands } from '../../src/cli/commands.js';
import {
  keptOnResume,
  RUN_FLAGS_FILE,
  restoreRunFlags,
  saveRunFlags,
} from '../../src/cli/run-flags.js';
import { TRAINING_FLAGS } from '../../src/shared/config/command-flags.js';
import { FLAGS, type FlagName, type FlagSpec, flagOf } from '../../src/shared/config/flags.js';

// Every flag of `train` and `coordinator` that is a setting of the run survives --resume through
// the run folder's file, whatever flags the schema grows; secrets never reach the file.

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'resume-flags-'));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const SECRET_VALUE = 'hunter2-never-on-disk';

/** The command `name` of the real CLI, unparsed. */
function command(name: string): Command {
  const program = new Command('tfjs-ddp');
  registerCommands(program);
  const found = program.commands.find((c) => c.name() === name);
  if (!found) throw new Error(`no command ${name}`);
  return found;
}

/** A value other than the default for each flag: the last choice, a number, or the switch. */
function argsFor(name: FlagName): string[] {
  const spec: FlagSpec = FLAGS[name];
  if (!spec.arg) return [flagOf(name)];
  if (name === 'token' || name === 'httpToken') return [flagOf(name), SECRET_VALUE];
  return [flagOf(name), spec.choices ? spec.choices[spec.choices.length - 1] : '3'];
}

describe.each(['train', 'coordinator'])('%s --resume', (name) => {
  it('keeps every setting of the run, and asks for its secrets again', async () => {
    const kept = keptOnResume(command(name));
    // The settings users rely on are among them; the training configuration is the checkpoint's.
    const expected =
      name === 'train'
        ? ['checkpointEvery', 'workers', 'allowOversubscribe', 'stepTimeout', 'httpPort', 'trace']
        : ['checkpointEvery', 'worldSize', 'port', 'bindHost', 'tokenFile', 'tlsCert', 'token'];
    expect(kept).toEqual(expect.arrayContaining(expected));
    for (const training of [...TRAINING_FLAGS, 'globalBatchSize']) {
      expect(kept).not.toContain(training);
    }
    for (const other of ['out', 'resume', 'json']) expect(kept).not.toContain(other);

    const started = command(name);
    started.parseOptions(kept.flatMap(argsFor));
    const dir = join(work, name);
    await mkdir(dir);
    await saveRunFlags(dir, started);
    expect(readFileSync(join(dir, RUN_FLAGS_FILE), 'utf8')).not.toContain(SECRET_VALUE);

    const secrets = kept.filter((n) => n === 'token' || n === 'httpToken');
    const withoutSecrets = command(name);
    withoutSecrets.parseOptions(['--resume', dir]);
    if (secrets.length > 0) {
      await expect(restoreRunFlags(dir, withoutSecrets)).rejects.toThrow(
        `the run in ${dir} was started with ${flagOf(secrets[0])}: give it again`,
      );
    }
    const resumed = command(name);
    resumed.parseOptions(['--resume', dir, ...secrets.flatMap(argsFor)]);
    await restoreRunFlags(dir, resumed);
    for (const flag of kept) {
      expect([flag, resumed.getOptionValue(flag)]).toEqual([flag, started.getOptionValue(flag)]);
    }
  });
});
