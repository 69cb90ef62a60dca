import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { train } from '../distributed/cli-runs.js';
import { ensureBuilt } from './run-cli.js';

// `--resume` keeps the flags the run was started with (not only its training configuration),
// unless they are given again, and says which in one line.

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'resume-flags-'));
  await ensureBuilt();
}, 180_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const RUN = ['--model', 'lenet5', '--dataset', 'synthetic', '--batch-size', '8'];

/** The message of the one `resuming ...` record among the JSON log lines. */
function resumingLine(stderr: string): { msg: string; kept: string[]; overridden: string[] } {
  const records = stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; kept: string[]; overridden: string[] })
    .filter((r) => r.msg.startsWith('resuming ') && r.kept !== undefined);
  expect(records).toHaveLength(1);
  return records[0];
}

describe('train --resume', () => {
  it('keeps --workers and --checkpoint-every of the run, unless a flag overrides them', async () => {
    const out = join(work, 'run');
    const first = await train([
      ...RUN,
      '--steps',
      '2',
      '--workers',
      '2',
      '--checkpoint-every',
      '1',
      '--backend',
      'wasm',
      '--out',
      out,
    ]);
    expect(first.summary).toMatchObject({ workers: 2, steps: 2 });

    const kept = await train(['--resume', out, '--steps', '3']);
    expect(kept.summary).toMatchObject({ workers: 2, steps: 3, runDir: out });
    const line = resumingLine(kept.result.stderr);
    expect(line.kept).toEqual(['--backend wasm', '--checkpoint-every 1', '--workers 2']);
    expect(line.overridden).toEqual(['--steps 3']);
    expect(line.msg).toBe(
      `resuming ${out} with its configuration and its flags --backend wasm, ` +
        '--checkpoint-every 1, --workers 2; overridden: --steps 3',
    );

    const overridden = await train(['--resume', out, '--steps', '4', '--workers', '1']);
    expect(overridden.summary).toMatchObject({ workers: 1, steps: 4 });
    expect(resumingLine(overridden.result.stderr).overridden).toEqual([
      '--workers 1 (was 2)',
      '--steps 4',
    ]);
    // The override is the run's flag from now on.
    expect(JSON.parse(readFileSync(join(out, 'run-flags.json'), 'utf8'))).toEqual({
      workers: '1',
      backend: 'wasm',
      checkpointEvery: '1',
    });
  });

  it('keeps the flags of a single-process run too', async () => {
    const out = join(work, 'local');
    await train([
      ...RUN,
      '--steps',
      '2',
      '--checkpoint-every',
      '1',
      '--backend',
      'wasm',
      '--out',
      out,
    ]);
    const resumed = await train(['--resume', out, '--steps', '3']);
    expect(resumed.summary).toMatchObject({ steps: 3, backend: 'wasm', runDir: out });
    expect(resumingLine(resumed.result.stderr).kept).toEqual([
      '--backend wasm',
      '--checkpoint-every 1',
    ]);
  });
});
