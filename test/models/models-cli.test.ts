import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

// The real CLI, as built by `npm run build`.
const MAIN = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));
const run = promisify(execFile);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(...args: string[]): Promise<Result> {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAIN, ...args], {
      env: { ...process.env, LOG_FORMAT: 'json' },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(() => {
  expect(existsSync(MAIN), `${MAIN} is missing: run \`npm run build\` before the tests`).toBe(true);
});

describe('tfjs-ddp models', () => {
  it('--json prints only the array of counts, one entry per model, as MODELS.md gives them', async () => {
    const { code, stdout } = await cli('models', '--json');
    expect(code).toBe(0);
    const rows = JSON.parse(stdout) as Record<string, unknown>[];
    expect(rows.map((r) => r.name)).toEqual([
      'baseline',
      'lenet5',
      'alexnet8',
      'vgg16',
      'resnet18',
      'vgg11a',
      'vgg13b',
      'vgg16c',
      'vgg16d',
      'vgg19e',
      'resnet34k',
    ]);
    for (const row of rows) {
      expect(Object.keys(row)).toEqual([
        'name',
        'totalParams',
        'trainableParams',
        'nonTrainableParams',
      ]);
    }
    expect(rows[9]).toEqual({
      name: 'vgg19e',
      totalParams: 39_002_738,
      trainableParams: 38_975_326,
      nonTrainableParams: 27_412,
    });
    expect(rows[10].totalParams).toBe(22_926_730);
  });

  it('prints a table with sources and grouped counts', async () => {
    const { code, stdout } = await cli('models');
    expect(code).toBe(0);
    expect(stdout).toMatch(/^baseline\s+keras-tutorials\s+198,506\s+198,494\s+12$/m);
    expect(stdout).toMatch(/^vgg16c\s+vgg-study\s+28,969,330\s+28,944,478\s+24,852$/m);
    expect(stdout).toMatch(/^resnet34k\s+keras-resnet\s+22,926,730/m);
  });
});

describe('tfjs-ddp summary', () => {
  it('prints the Keras-style layer table of lenet5 with its totals', async () => {
    const { code, stdout } = await cli('summary', '--model', 'lenet5', '--backend', 'cpu');
    expect(code).toBe(0);
    expect(stdout).toMatch(/conv2d_1 \(Conv2D\)\s+\[\[null,14,14,6\]\]\s+\[null,10,10,16\]\s+2416/);
    expect(stdout).toMatch(/probs \(Activation\)/);
    expect(stdout).toContain('Total params: 62006\n');
    expect(stdout).toContain('Trainable params: 62006\n');
    expect(stdout).toContain('Non-trainable params: 0\n');
  });

  it('rejects an unknown model in one line that lists the valid names', async () => {
    const { code, stdout, stderr } = await cli('summary', '--model', 'vgg20', '--backend', 'cpu');
    expect(code).toBe(2);
    expect(stdout).toBe('');
    const lines = stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]).msg).toMatch(/unknown model "vgg20".*baseline, lenet5,.*resnet34k/);
  });
});
