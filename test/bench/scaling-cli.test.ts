// `tfjs-ddp bench scaling` end to end on a tiny model: real `train --workers N` runs and
// independent single-worker runs, the --json shape, and the table, JSON and chart files.
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensureBuilt, errorLines, runCli } from '../cli/run-cli.js';

// Reports and run folders go to separate folders: the run folder's name is random
// (scaling-lenet5-runs-XXXXXX); picking it by prefix from a folder that also holds the
// reports (scaling-lenet5-ring.*) once picked a report, in about one run in four.
let out: string;
let runsParent: string;
beforeAll(async () => {
  await ensureBuilt();
  out = await mkdtemp(join(tmpdir(), 'bench-scaling-'));
  runsParent = await mkdtemp(join(tmpdir(), 'bench-scaling-runs-'));
});
afterAll(async () => {
  await rm(out, { recursive: true, force: true });
  await rm(runsParent, { recursive: true, force: true });
});

it('measures lenet5 with 1 and 2 workers on synthetic data, in alternating rounds', async () => {
  const r = await runCli([
    'bench',
    'scaling',
    '--model',
    'lenet5',
    '--workers',
    '2',
    '--steps',
    '3',
    '--warmup-steps',
    '1',
    '--batch-size',
    '8',
    '--backend',
    'wasm',
    '--rounds',
    '2',
    '--json',
    '--out',
    out,
    '--runs-dir',
    runsParent,
  ]);
  expect(errorLines(r.stderr)).toEqual([]);
  expect(r.code).toBe(0);
  const json = JSON.parse(r.stdout);
  expect(Object.keys(json)).toEqual(['model', 'results']);
  expect(json.model).toBe('lenet5');
  expect(json.results.map((x: { workers: number }) => x.workers)).toEqual([1, 2]);
  const [one, two] = json.results;
  for (const row of [one, two]) {
    expect(Object.keys(row)).toEqual([
      'workers',
      'imagesPerSec',
      'scalingEfficiency',
      'distributionEfficiency',
      'computeMs',
      'allreduceMs',
      'waitMs',
      'dataMs',
    ]);
    expect(row.imagesPerSec).toBeGreaterThan(0);
    expect(row.computeMs).toBeGreaterThan(0);
  }
  expect(one.scalingEfficiency).toBe(1);
  expect(one.distributionEfficiency).toBe(1);
  // A world of one reduces nothing: its all-reduce is a call that returns at once.
  expect(one.allreduceMs).toBeLessThan(1);
  // Two workers exchange gradients: the all-reduce takes time, and the efficiencies
  // are what their definitions say.
  expect(two.allreduceMs).toBeGreaterThan(0);
  expect(two.scalingEfficiency).toBeCloseTo(two.imagesPerSec / (2 * one.imagesPerSec), 3);

  const file = JSON.parse(await readFile(join(out, 'scaling-lenet5-ring.json'), 'utf8'));
  // Overlap is the default: the 2-worker runs' buckets left during the backward pass.
  expect(file.overlap).toBe(true);
  expect(two.distributionEfficiency).toBeCloseTo(
    file.results[1].imagesPerSec / file.results[1].independentImagesPerSec,
    3,
  );
  const row = file.results[1];
  expect(row.syncShare).toBeCloseTo((row.allreduceMs + row.waitMs) / row.stepMs, 6);
  // Steps 1 (warm-up) and 3 (the last, which ends with the run's evaluation) are left out,
  // in each of the two rounds.
  expect(file.results[1].measuredSteps).toBe(2);
  expect(file.results[1].roundEfficiencies).toHaveLength(2);
  // Round 1 runs the 2-worker run first, round 2 the independent runs first.
  const runFolders = await readdir(runsParent);
  expect(runFolders).toEqual([expect.stringMatching(/^scaling-lenet5-runs-/)]);
  const runs = join(runsParent, runFolders[0]);
  const firstStepAt = async (round: number, run: string) => {
    const lines = await readFile(join(runs, `round-${round}`, run, 'metrics.jsonl'), 'utf8');
    return Date.parse(JSON.parse(lines.split('\n')[0]).time);
  };
  expect(await firstStepAt(1, 'n2')).toBeLessThan(await firstStepAt(1, 'n2-independent-0'));
  expect(await firstStepAt(2, 'n2')).toBeGreaterThan(await firstStepAt(2, 'n2-independent-0'));
  const md = await readFile(join(out, 'scaling-lenet5-ring.md'), 'utf8');
  expect(md).toMatch(/^\| 2 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+, [\d.]+ \|.* \| [\d.]+% \|$/m);
  const svg = await readFile(join(out, 'scaling-lenet5-ring.svg'), 'utf8');
  expect(svg).toMatch(/^<svg/);
  expect(svg).toContain('distribution');
  if (existsSync(join(out, 'scaling-lenet5-ring.png'))) {
    const png = await readFile(join(out, 'scaling-lenet5-ring.png'));
    expect(png.subarray(1, 4).toString()).toBe('PNG');
  }
});

it('refuses a warm-up that leaves no step to measure', async () => {
  const r = await runCli([
    'bench',
    'scaling',
    '--model',
    'lenet5',
    '--steps',
    '3',
    '--warmup-steps',
    '2',
  ]);
  expect(r.code).toBe(2);
  expect(errorLines(r.stderr)[0]).toMatch(
    /^--warmup-steps 2: must be a whole number that leaves a step to measure before the last/,
  );
});

it('refuses an unknown compression before it runs anything', async () => {
  const r = await runCli(['bench', 'scaling', '--model', 'lenet5', '--grad-compression', 'fp8']);
  expect(r.code).toBe(2);
  expect(errorLines(r.stderr)).toEqual([
    expect.stringMatching(/^--grad-compression: unknown compression "fp8": expected none, bf16/),
  ]);
});
