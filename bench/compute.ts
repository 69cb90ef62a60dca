import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Command, Option } from 'commander';
import { MODEL_NAMES, parseModelName } from '../src/shared/models/zoo.js';
import type { StepMeasurement } from './measure-step.js';

/**
 * The compute benchmark: images/s of a full training step (forward, loss, gradients, optimiser
 * apply) at a fixed batch for each zoo model, after warm-up, and the peak RSS of the process that
 * ran it (one process per model). Writes bench/results/compute-<backend>.{json,md}, replacing the
 * entries of the models it ran and keeping the others.
 *
 *   npm run bench:compute -- --models baseline,resnet18 --steps 5
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const resultsDir = path.resolve(here, '../../bench/results');
const run = promisify(execFile);

interface Row extends StepMeasurement {
  /** From the median wall time of a step. */
  imagesPerSec: number;
  /** From the shortest wall time. */
  bestImagesPerSec: number;
  /** From the median CPU time: the figure for an idle machine. */
  cpuImagesPerSec: number;
  medianStepMs: number;
  date: string;
  cpu: string;
}

interface Options {
  models: string;
  backend: string;
  batch: number;
  warmup: number;
  steps: number;
  profile: boolean;
}

const program = new Command('bench:compute')
  .description('training-step throughput and peak memory of the zoo models')
  .option('--models <list>', 'comma-separated model names', MODEL_NAMES.join(','))
  .addOption(
    new Option('--backend <name>', 'compute backend')
      .choices(['wasm', 'cpu', 'tensorflow'])
      .default('wasm'),
  )
  .option('--batch <n>', 'batch size', toInt, 64)
  .option('--warmup <n>', 'untimed steps first', toInt, 2)
  .option('--steps <n>', 'timed steps', toInt, 5)
  .option('--profile', 'also record the kernel times of one step', false)
  .action(async (opts: Options) => {
    const models = opts.models.split(',').map((m) => parseModelName(m.trim(), '--models'));
    const rows: Row[] = [];
    for (const model of models) {
      const row = await measure(model, opts);
      rows.push(row);
      process.stderr.write(
        `${model}: ${row.imagesPerSec} img/s (best ${row.bestImagesPerSec}, by CPU time ` +
          `${row.cpuImagesPerSec}), step ${row.medianStepMs} ms, peak RSS ${row.peakRssMiB} MiB\n`,
      );
      for (const k of row.kernels?.slice(0, 12) ?? []) {
        process.stderr.write(`  ${k.name.padEnd(24)} ${String(k.calls).padStart(5)} ${k.ms} ms\n`);
      }
    }
    await save(opts.backend, rows);
  });

async function measure(model: string, opts: Options): Promise<Row> {
  const args = [
    path.join(here, 'measure-step.js'),
    model,
    opts.backend,
    String(opts.batch),
    String(opts.warmup),
    String(opts.steps),
    ...(opts.profile ? ['profile'] : []),
  ];
  const { stdout } = await run(process.execPath, args, {
    maxBuffer: 1 << 24,
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  const m = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as StepMeasurement;
  const sorted = [...m.stepMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  return {
    ...m,
    medianStepMs: median,
    imagesPerSec: round((m.batch * 1000) / median),
    bestImagesPerSec: round((m.batch * 1000) / sorted[0]),
    cpuImagesPerSec: round((m.batch * 1000) / medianOf(m.cpuMs)),
    date: new Date().toISOString(),
    cpu: `${os.cpus()[0]?.model.trim()} (${os.cpus().length} cores)`,
  };
}

/** Merges the new rows into the saved results (one row per model) and rewrites both files. */
async function save(backend: string, rows: Row[]): Promise<void> {
  await mkdir(resultsDir, { recursive: true });
  const jsonPath = path.join(resultsDir, `compute-${backend}.json`);
  const saved = await readFile(jsonPath, 'utf8').then(
    (text) => JSON.parse(text) as Row[],
    () => [] as Row[],
  );
  const merged = MODEL_NAMES.flatMap(
    (name) => rows.find((r) => r.model === name) ?? saved.find((r) => r.model === name) ?? [],
  );
  // Arrays of numbers on one line, as the project's formatter (biome) writes them.
  const json = JSON.stringify(merged, null, 2).replace(
    /\[\s+(-?[\d.e+-]+(?:,\s+-?[\d.e+-]+)*)\s+\]/g,
    (_, items: string) => `[${items.split(/,\s+/).join(', ')}]`,
  );
  await writeFile(jsonPath, `${json}\n`);
  await writeFile(path.join(resultsDir, `compute-${backend}.md`), markdown(backend, merged));
  process.stderr.write(`wrote ${jsonPath} and compute-${backend}.md\n`);
}

function markdown(backend: string, rows: Row[]): string {
  const lines = [
    `# Compute benchmark: ${backend}`,
    '',
    'Full training step (forward, loss, gradients, optimiser apply) through TrainStep on a',
    "synthetic batch, the model's recipe optimiser; median of the timed steps after warm-up;",
    'peak RSS of the process (one per model). "by CPU" divides by the step\'s CPU time, which',
    'is what counts on an idle machine when others share the cores (wall time then runs longer).',
    'Regenerate with `npm run bench:compute -- --backend ' + backend + '`.',
    '',
  ];
  const header = ['model', 'params', 'batch', 'img/s (median)', 'img/s (best)', 'img/s (by CPU)'];
  header.push('step ms', 'of which apply ms', 'peak RSS MiB', 'measured');
  const cells = rows.map((r) => [
    r.model,
    r.params.toLocaleString('en-US'),
    String(r.batch),
    String(r.imagesPerSec),
    String(r.bestImagesPerSec),
    String(r.cpuImagesPerSec),
    String(r.medianStepMs),
    String(medianOf(r.applyMs)),
    String(r.peakRssMiB),
    `${r.date.slice(0, 10)}, ${r.warmupSteps}+${r.stepMs.length} steps`,
  ]);
  const numeric = header.map((_, i) => i > 0 && i < header.length - 1);
  lines.push(...markdownTable(header, numeric, cells));
  if (rows.length > 0) lines.push('', `Device: ${rows[0].device}; ${rows[0].cpu}.`);
  return `${lines.join('\n')}\n`;
}

/** A Markdown table padded as the project's formatter (biome) pads it; numbers right-aligned. */
function markdownTable(header: string[], numeric: boolean[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, 3, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
  const rule = widths.map((w, i) => (numeric[i] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w)));
  return [line(header), `| ${rule.join(' | ')} |`, ...rows.map(line)];
}

function medianOf(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function toInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`expected a positive integer, got ${value}`);
  return n;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

await program.parseAsync(process.argv);
