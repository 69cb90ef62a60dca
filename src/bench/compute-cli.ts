import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { log } from '../shared/logging/logger.js';
import { MODEL_NAMES, parseModelName } from '../shared/models/zoo.js';
import { cliEntry } from './bench-child.js';
import { type ComputeRow, medianOf, saveComputeResults } from './compute-report.js';
import type { StepMeasurement } from './compute-step.js';

const run = promisify(execFile);

interface Options {
  models: string;
  backend: string;
  batch: number;
  warmup: number;
  steps: number;
  profile: boolean;
  out: string;
}

/**
 * `tfjs-ddp bench compute`: images/s of a full training step (forward, loss, gradients,
 * optimiser apply) at a fixed batch for each zoo model, after warm-up, and the peak RSS of the
 * process that ran it (one `bench compute-step` process per model). Writes
 * <out>/compute-<backend>.{json,md}, replacing the entries of the models it ran and keeping
 * the others.
 *
 *   tfjs-ddp bench compute --models baseline,resnet18 --steps 5
 */
export function addComputeCommand(bench: Command): void {
  bench
    .command('compute')
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
    .option('--out <dir>', 'folder for the JSON and Markdown results', 'bench/results')
    .action(async (opts: Options) => {
      const models = opts.models.split(',').map((m) => parseModelName(m.trim(), '--models'));
      const rows: ComputeRow[] = [];
      for (const model of models) {
        const row = await measure(model, opts);
        rows.push(row);
        process.stderr.write(
          `${model}: ${row.imagesPerSec} img/s (best ${row.bestImagesPerSec}, by CPU time ` +
            `${row.cpuImagesPerSec}), step ${row.medianStepMs} ms, peak RSS ${row.peakRssMiB} MiB\n`,
        );
        // When each bucket could have left, had the all-reduce overlapped the backward pass.
        const ready = (row.buckets ?? []).map((b) => medianOf(b.readyMs)).join(', ');
        process.stderr.write(
          `  forward ${medianOf(row.forwardMs ?? [])} ms, backward ${medianOf(row.backwardMs ?? [])} ms, buckets final at ${ready} ms into it\n`,
        );
        for (const k of row.kernels?.slice(0, 12) ?? []) {
          process.stderr.write(
            `  ${k.name.padEnd(24)} ${String(k.calls).padStart(5)} ${k.ms} ms\n`,
          );
        }
      }
      const paths = await saveComputeResults(opts.out, opts.backend, rows);
      log().info({ files: paths }, `results written to ${paths.join(', ')}`);
    });
}

async function measure(model: string, opts: Options): Promise<ComputeRow> {
  const args = [
    cliEntry(),
    'bench',
    'compute-step',
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

function toInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new InvalidArgumentError(`expected a positive integer, got ${value}`);
  }
  return n;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
