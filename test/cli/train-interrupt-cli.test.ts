import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../../src/shared/training/checkpoint.js';
import { ensureBuilt, errorLines, infoLines, runCli, startCli } from './run-cli.js';

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'train-interrupt-'));
  await ensureBuilt();
}, 180_000);
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

// A cosine schedule over the whole run: the resumed part must use the original horizon.
const ARGS = [
  'train',
  '--model',
  'lenet5',
  '--dataset',
  'synthetic',
  '--batch-size',
  '16',
  '--steps',
  '40',
  '--optimizer',
  'sgd',
  '--lr',
  '0.1',
  '--momentum',
  '0.9',
  '--schedule',
  'cosine',
  '--backend',
  'wasm',
  '--json',
];

function stepsLogged(runDir: string): number {
  const file = join(runDir, 'metrics.jsonl');
  if (!existsSync(file)) return 0;
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"type":"step"')).length;
}

describe('tfjs-ddp train, interrupted and resumed', () => {
  it('SIGINT checkpoints and says how to resume; the resumed run ends as an uninterrupted one', async () => {
    // Uninterrupted, in the default run folder under ./runs.
    const straight = await runCli(ARGS, { cwd: work });
    expect(straight.code).toBe(0);
    const straightRun = JSON.parse(straight.stdout).runDir as string;
    expect(straightRun).toMatch(new RegExp(`^${work}/runs/lenet5-\\d{8}-\\d{6}$`));

    const interruptedRun = join(work, 'interrupted');
    const child = startCli([...ARGS, '--out', interruptedRun]);
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d) => (stdout += d));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    while (stepsLogged(interruptedRun) < 3) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGINT');
    expect(await closed).toBe(130);
    expect(stdout).toBe('');
    // Told once, at INFO: the user asked for it.
    expect(errorLines(stderr)).toEqual([]);
    const told = infoLines(stderr).filter((m) => m.startsWith('interrupted by'));
    expect(told).toHaveLength(1);
    const [message] = told;
    expect(message).toMatch(
      new RegExp(
        `^interrupted by SIGINT after step (\\d+); checkpoint written; continue with: tfjs-ddp train --resume ${interruptedRun}$`,
      ),
    );
    const stoppedAt = Number(/after step (\d+)/.exec(message)?.[1]);
    expect(stoppedAt).toBeGreaterThanOrEqual(3);
    expect(stoppedAt).toBeLessThan(40);
    expect((await readCheckpoint(interruptedRun)).step).toBe(stoppedAt);

    const resumed = await runCli([
      'train',
      '--resume',
      interruptedRun,
      '--backend',
      'wasm',
      '--json',
    ]);
    expect(errorLines(resumed.stderr)).toEqual([]);
    expect(resumed.code).toBe(0);
    expect(JSON.parse(resumed.stdout)).toMatchObject({ steps: 40, runDir: interruptedRun });

    const a = await readCheckpoint(straightRun);
    const b = await readCheckpoint(interruptedRun);
    expect(b.step).toBe(40);
    expect(Buffer.from(b.weights.buffer).equals(Buffer.from(a.weights.buffer))).toBe(true);
  });
});
