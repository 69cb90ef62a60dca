import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, runCli } from './run-cli.js';

// What a user reads in a terminal (LOG_FORMAT=pretty, as a TTY gets): one line per event with
// its fields inline, the run folder first, workers' lines prefixed by their rank, and no banner
// from tfjs.

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'log-lines-'));
  await ensureBuilt();
}, 180_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const RUN = ['--model', 'lenet5', '--dataset', 'synthetic', '--steps', '1', '--batch-size', '4'];
/** `[HH:MM:SS.mmm] LEVEL: ...`: the start of every pretty record. */
const RECORD = /^\[\d\d:\d\d:\d\d\.\d{3}\] (INFO|WARN|ERROR|DEBUG)\s*: /;

async function prettyRun(args: string[]) {
  const result = await runCli(args, { env: { LOG_FORMAT: 'pretty' } });
  expect(result.code, result.stderr).toBe(0);
  return result.stderr.split('\n').filter((l) => l !== '');
}

describe('logs in a terminal', () => {
  it('one line per event, the run folder first, and no tfjs banner (cpu backend)', async () => {
    const out = join(work, 'cpu');
    const lines = await prettyRun(['train', ...RUN, '--backend', 'cpu', '--out', out]);
    for (const line of lines) expect(line).toMatch(RECORD);
    expect(lines[0]).toMatch(new RegExp(`INFO\\s*: run folder: ${out} \\{"runDir":"${out}"\\}$`));
    expect(lines.join('\n')).not.toContain('Hi, looks like you are running TensorFlow.js');
    expect(lines.some((l) => /compute backend: cpu .*\{"backend":"cpu",/.test(l))).toBe(true);
  });

  it("a worker's lines start with its rank", async () => {
    const out = join(work, 'workers');
    const lines = await prettyRun([
      'train',
      ...RUN,
      '--backend',
      'wasm',
      '--workers',
      '2',
      '--out',
      out,
    ]);
    for (const line of lines) expect(line).toMatch(RECORD);
    expect(lines[0]).toContain(`run folder: ${out}`);
    for (const rank of [0, 1]) {
      expect(lines).toContainEqual(
        expect.stringMatching(
          new RegExp(`INFO\\s*: rank ${rank} \\| joined 127\\.0\\.0\\.1:\\d+ as rank ${rank} of 2`),
        ),
      );
    }
  });
});
