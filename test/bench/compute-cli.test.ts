// `tfjs-ddp bench compute` end to end on a small model, and the promise that makes the bench
// commands a part of the one binary at no cost: no other command loads the benchmarks or
// their charting libraries.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, errorLines, MAIN, ROOT, runCli } from '../cli/run-cli.js';

let out: string;
beforeAll(async () => {
  await ensureBuilt();
  out = await mkdtemp(join(tmpdir(), 'bench-compute-'));
});
afterAll(() => rm(out, { recursive: true, force: true }));

describe('tfjs-ddp bench compute', () => {
  it('measures a model in a process of its own and writes JSON and Markdown', async () => {
    const args = ['--models', 'lenet5', '--steps', '2', '--warmup', '1', '--batch', '8'];
    const r = await runCli(['bench', 'compute', ...args, '--out', out]);
    expect(errorLines(r.stderr)).toEqual([]);
    expect(r.code).toBe(0);
    const [row] = JSON.parse(await readFile(join(out, 'compute-wasm.json'), 'utf8'));
    expect(row).toMatchObject({ model: 'lenet5', backend: 'wasm', batch: 8, warmupSteps: 1 });
    expect(row.stepMs).toHaveLength(2);
    expect(row.imagesPerSec).toBeGreaterThan(0);
    expect(row.peakRssMiB).toBeGreaterThan(0);
    // No tensor leaks from step to step.
    expect(row.tensorGrowth).toBe(0);
    // The gradient tap's timeline: lenet5's 10 weights in one (1 MiB) bucket, final at the end.
    expect(row.forwardMs).toHaveLength(2);
    expect(row.backwardMs).toHaveLength(2);
    expect(row.parameterReadyMs).toHaveLength(10);
    expect(row.buckets).toEqual([
      { index: 0, firstParameter: 0, endParameter: 10, bytes: 4 * 62_006, readyMs: row.backwardMs },
    ]);
    expect(Math.max(...row.parameterReadyMs)).toBeLessThanOrEqual(Math.max(...row.backwardMs));
    const md = await readFile(join(out, 'compute-wasm.md'), 'utf8');
    expect(md).toContain('Regenerate with `tfjs-ddp bench compute --backend wasm`.');
    expect(md).toMatch(/^\| lenet5 +\| +62,006 \| +8 \|/m);
    expect(md).toMatch(/^\| lenet5 +\| +0 \| 0–9 +\| 0\.25 \| +[\d.]+ \| +100% \|$/m);
  });

  it('refuses an unknown model in one line', async () => {
    const r = await runCli(['bench', 'compute', '--models', 'nope', '--out', out]);
    expect(r.code).toBe(2);
    expect(errorLines(r.stderr)).toEqual([
      expect.stringContaining('--models: unknown model "nope"'),
    ]);
  });
});

/** The module URLs a run of the CLI with `args` loads (test/fixtures/record-loads.mjs). */
async function loadedModules(args: string[]): Promise<string[]> {
  const file = join(out, `loads-${args.join('-')}.txt`);
  await promisify(execFile)(
    process.execPath,
    ['--import', join(ROOT, 'test/fixtures/record-loads.mjs'), MAIN, ...args],
    { env: { ...process.env, RECORD_LOADS_FILE: file } },
  );
  return (await readFile(file, 'utf8')).trim().split('\n');
}

const benchOrCharts = (urls: string[]) =>
  urls.filter((u) => /\/dist\/src\/bench\/|\/node_modules\/(vega|@resvg)/.test(u));

describe('loading', () => {
  it('keeps the benchmarks and vega out of a worker and a coordinator', async () => {
    for (const command of ['worker', 'coordinator', 'train']) {
      const urls = await loadedModules([command, '--help']);
      // The command's own modules did load (the recording works).
      expect(urls.some((u) => u.endsWith('/dist/src/cli/main.js'))).toBe(true);
      expect(urls.some((u) => u.includes('/dist/src/worker/'))).toBe(true);
      expect([command, benchOrCharts(urls)]).toEqual([command, []]);
    }
  });

  it('loads the benchmarks for bench, and vega only when a chart is drawn', async () => {
    const urls = await loadedModules(['bench', '--help']);
    expect(urls.some((u) => u.endsWith('/dist/src/bench/compute-cli.js'))).toBe(true);
    expect(urls.filter((u) => u.includes('/node_modules/vega'))).toEqual([]);
  });
});
