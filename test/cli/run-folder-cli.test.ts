import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHECKPOINT_FILE, readCheckpoint } from '../../src/shared/training/checkpoint.js';
import { LOCK_FILE } from '../../src/shared/training/run-folder-lock.js';
import { train } from '../distributed/cli-runs.js';
import { ensureBuilt, errorLines, infoLines, runCli, startCli } from './run-cli.js';

// A run folder belongs to one process at a time (`train`, `coordinator`), and `--resume auto`
// resumes it or starts it: real CLI processes on real folders.

let work: string;
const started: ReturnType<typeof startCli>[] = [];
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'run-folder-cli-'));
  await ensureBuilt();
}, 180_000);
afterAll(async () => {
  for (const child of started) child.kill('SIGKILL');
  await rm(work, { recursive: true, force: true });
});

const RUN = [
  '--model',
  'lenet5',
  '--dataset',
  'synthetic',
  '--batch-size',
  '8',
  '--backend',
  'wasm',
];

describe('the run folder', () => {
  it('is refused to a second run or resume while its owner trains, and released on SIGTERM', async () => {
    const out = join(work, 'owned');
    const owner = startCli(['train', ...RUN, '--steps', '100000', '--out', out]);
    started.push(owner);
    let stderr = '';
    owner.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => owner.on('close', resolve));
    // Training has begun once the first step's metrics are written.
    await expect
      .poll(() => existsSync(join(out, 'metrics.jsonl')), { timeout: 60_000, interval: 100 })
      .toBe(true);

    for (const args of [
      ['train', ...RUN, '--steps', '5', '--out', out],
      ['train', '--resume', out],
      ['coordinator', '--resume', out, '--world-size', '1'],
    ]) {
      const second = await runCli(args);
      expect(second.code, second.stderr).toBe(3);
      const [line, ...more] = errorLines(second.stderr);
      expect(more).toEqual([]);
      expect(line).toMatch(
        new RegExp(
          `^run folder ${out} is in use by pid ${owner.pid} on ${hostname()} since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(lock renewed \\d+ s ago\\)`,
        ),
      );
    }

    owner.kill('SIGTERM');
    expect(await exited, stderr.slice(-2000)).toBe(143);
    expect(existsSync(join(out, LOCK_FILE))).toBe(false);
    expect((await readCheckpoint(out)).step).toBeGreaterThan(0);
  }, 120_000);

  it('--resume auto starts a run, then resumes it, and refuses a damaged checkpoint', async () => {
    const out = join(work, 'auto');
    const auto = ['--resume', 'auto', '--out', out, '--checkpoint-every', '1'];
    // An earlier attempt died before its first checkpoint: its records go, not into the new run's.
    await mkdir(out);
    await writeFile(join(out, 'metrics.jsonl'), '{"type":"step","step":1,"loss":12345}\n');
    const first = await train([...RUN, ...auto, '--steps', '2']);
    expect(readFileSync(join(out, 'metrics.jsonl'), 'utf8')).not.toContain('12345');
    expect(first.summary).toMatchObject({ steps: 2, runDir: out });
    expect(infoLines(first.result.stderr)).toContain(
      `--resume auto: ${out} holds no checkpoint; starting a new run`,
    );

    // A write killed in an earlier life of the run left its temporary file.
    const stale = `.${CHECKPOINT_FILE}.tmp-99999-0badc0de`;
    await writeFile(join(out, stale), Buffer.alloc(100_000));
    const second = await train(['--resume', 'auto', '--out', out, '--steps', '3']);
    expect(second.summary).toMatchObject({ steps: 3, runDir: out });
    expect(infoLines(second.result.stderr).some((l) => l.startsWith(`resuming ${out}`))).toBe(true);
    expect(await readdir(out)).not.toContain(stale);
    expect(existsSync(join(out, LOCK_FILE))).toBe(false);

    // An edited checkpoint is refused, and the folder is left as it was (no new run in it).
    const file = join(out, CHECKPOINT_FILE);
    const bytes = readFileSync(file).toString('latin1');
    await writeFile(file, Buffer.from(bytes.replace('"step":3', '"step":9'), 'latin1'));
    const refused = await runCli(['train', '--resume', 'auto', '--out', out, '--steps', '4']);
    expect(refused.code).toBe(2);
    expect(errorLines(refused.stderr)).toEqual([
      `checkpoint ${file} is damaged (its checksum does not match: the file was edited or cut short): it cannot be resumed`,
    ]);
    expect(readFileSync(file).toString('latin1')).toContain('"step":9');
    expect(existsSync(join(out, LOCK_FILE))).toBe(false);
  }, 120_000);

  it('--resume auto needs --out', async () => {
    const result = await runCli(['train', ...RUN, '--resume', 'auto']);
    expect(result.code).toBe(2);
    expect(errorLines(result.stderr)).toEqual([
      '--resume auto needs --out DIR: the run folder to resume, or to start the run in',
    ]);
  });
});
