import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Command, Option } from 'commander';
import {
  GRAD_COMPRESSION_HELP,
  type GradCompression,
  gradCompressionSchema,
} from '../shared/collectives/grad-compression.js';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import { renderChart } from '../shared/observe/render-chart.js';
import { parsePositiveIntegers } from './byte-sizes.js';
import { requireRootAndIproute2 } from './emulated-network.js';
import { parseLinkRate } from './link-rate.js';
import { writeResultFiles } from './result-files.js';
import { runScalingBench } from './scaling-bench.js';
import {
  formatScalingTable,
  scalingChartSpec,
  scalingJson,
  scalingMarkdown,
} from './scaling-report.js';

interface ScalingFlags {
  model: string;
  workers: string;
  steps: string;
  warmupSteps: string;
  batchSize: string;
  allreduce: 'ring' | 'star';
  gradCompression: string;
  overlap: boolean;
  backend: string;
  dataset: string;
  data?: string;
  runsDir?: string;
  runTimeout: string;
  rounds: string;
  link?: string;
  json?: boolean;
  out: string;
}

/** `tfjs-ddp bench scaling`. */
export function addScalingCommand(bench: Command): void {
  bench
    .command('scaling')
    .description(
      'throughput of `train --workers N` for each N, the step time split, and scaling and ' +
        'distribution efficiency (against N independent single-worker runs at the same time)',
    )
    .requiredOption('--model <name>', 'model of the zoo')
    .option('--workers <list>', 'worker counts to run (1 is always added)', '1,2')
    .option('--steps <n>', 'steps of every run', '6')
    .option(
      '--warmup-steps <n>',
      'first steps of every run left out of the figures (the last is, too)',
      '2',
    )
    .option('--batch-size <n>', 'images per step per worker', '32')
    .addOption(
      new Option('--allreduce <mode>', 'gradient all-reduce')
        .choices(['ring', 'star'])
        .default('ring'),
    )
    .option(
      '--grad-compression <c>',
      `how the N-worker runs send gradients: ${GRAD_COMPRESSION_HELP.join(', ')} (the independent runs send none)`,
      'none',
    )
    .option(
      '--no-overlap',
      'the N-worker runs all-reduce the gradient after the whole backward pass (train --no-overlap)',
    )
    .option('--backend <name>', 'compute backend of the workers', 'auto')
    .addOption(
      new Option('--dataset <name>', 'training data')
        .choices(['synthetic', 'cifar10'])
        .default('synthetic'),
    )
    .option('--data <dir>', 'CIFAR-10 folder (with --dataset cifar10)')
    .option(
      '--runs-dir <dir>',
      'keep the training runs in a new folder under DIR (default: a temporary folder, removed)',
    )
    .option(
      '--rounds <n>',
      'rounds of runs per N, alternating whether the N-worker run or the independent runs go first (speed drifts on shared machines)',
      '2',
    )
    .option('--run-timeout <s>', 'bound on each training run, in seconds', '3600')
    .option(
      '--link <rate>',
      'the N-worker runs with every process in its own network namespace, on links shaped to ' +
        'RATE each way (e.g. 50mbit, 1gbit; needs root and iproute2)',
    )
    .option('--json', 'print only {model, results} as one JSON object')
    .option('--out <dir>', 'folder for the JSON, Markdown and chart files', 'bench/results')
    .action(async (flags: ScalingFlags) => {
      const workers = [...new Set([1, ...parsePositiveIntegers(flags.workers, '--workers')])].sort(
        (a, b) => a - b,
      );
      const [steps] = parsePositiveIntegers(flags.steps, '--steps');
      const warmupSteps = Number(flags.warmupSteps);
      if (!Number.isInteger(warmupSteps) || warmupSteps < 0 || warmupSteps > steps - 2) {
        throw new UserError(
          `--warmup-steps ${flags.warmupSteps}: must be a whole number that leaves a step to measure ` +
            `before the last of --steps ${steps} (the last is left out: it ends with the run's evaluation)`,
        );
      }
      const compression = parseCompression(flags.gradCompression);
      const link = flags.link === undefined ? undefined : parseLinkRate(flags.link);
      // Before anything starts: a run that cannot build its network measures nothing.
      if (link) requireRootAndIproute2();
      const dataDir = flags.data === undefined ? undefined : resolve(flags.data);
      const trainArgs = ['--backend', flags.backend, '--dataset', flags.dataset];
      if (dataDir) trainArgs.push('--data', dataDir);
      // A fresh folder each time: train refuses a folder that already holds a run. Its
      // name says "runs", so that it is not taken for one of the reports (scaling-<model>-*.*)
      // when --runs-dir and --out are the same folder.
      const parent = flags.runsDir ? resolve(flags.runsDir) : tmpdir();
      await mkdir(parent, { recursive: true });
      const runsDir = await mkdtemp(join(parent, `scaling-${flags.model}-runs-`));
      try {
        const report = await runScalingBench({
          model: flags.model,
          workers,
          steps,
          warmupSteps,
          batchSize: parsePositiveIntegers(flags.batchSize, '--batch-size')[0],
          allreduce: flags.allreduce,
          compression,
          overlap: flags.overlap,
          trainArgs,
          backend: flags.backend,
          dataDir,
          link,
          runsDir,
          runTimeoutMs: parsePositiveIntegers(flags.runTimeout, '--run-timeout')[0] * 1000,
          rounds: parsePositiveIntegers(flags.rounds, '--rounds')[0],
        });
        const command = `tfjs-ddp ${process.argv.slice(2).join(' ')}`;
        const name = [
          `scaling-${flags.model}-${flags.allreduce}`,
          ...(compression === 'none' ? [] : [compression.replace(':', '')]),
          ...(flags.overlap ? [] : ['no-overlap']),
          ...(link ? [link.text] : []),
        ].join('-');
        const chart = await renderChart(scalingChartSpec(report));
        const files: Record<string, string | Uint8Array> = {
          [`${name}.json`]: `${JSON.stringify({ command, date: new Date().toISOString(), ...report }, null, 2)}\n`,
          [`${name}.md`]: `${scalingMarkdown(report, command)}\n![${name}](${name}.svg)\n`,
          [`${name}.svg`]: chart.svg,
        };
        if (chart.png) files[`${name}.png`] = chart.png;
        const paths = await writeResultFiles(flags.out, files);
        log().info({ files: paths }, `results written to ${paths.join(', ')}`);
        process.stdout.write(
          flags.json ? `${JSON.stringify(scalingJson(report))}\n` : formatScalingTable(report),
        );
      } finally {
        if (flags.runsDir) log().info({ runsDir }, `run folders kept in ${runsDir}`);
        else await rm(runsDir, { recursive: true, force: true });
      }
    });
}

function parseCompression(text: string): GradCompression {
  const parsed = gradCompressionSchema.safeParse(text);
  if (!parsed.success) {
    throw new UserError(`--grad-compression: ${parsed.error.issues[0]?.message ?? text}`);
  }
  return parsed.data;
}
