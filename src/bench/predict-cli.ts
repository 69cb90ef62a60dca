import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { initBackend } from '../shared/backend/select-backend.js';
import {
  DEFAULT_BUCKET_BYTES,
  DEFAULT_FIRST_BUCKET_BYTES,
  planBuckets,
} from '../shared/collectives/bucket-plan.js';
import { powerSgdRank } from '../shared/collectives/grad-compression.js';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import { buildArchitecture, countParams, parseModelName } from '../shared/models/zoo.js';
import { renderChart } from '../shared/observe/render-chart.js';
import { parsePositiveIntegers } from './byte-sizes.js';
import { parseLinkRate } from './link-rate.js';
import { measurePowerSgd } from './power-sgd-cost.js';
import { type FittedLink, fitLinks, predict, SCENARIOS } from './predict-bench.js';
import {
  formatPredictTables,
  type PredictReport,
  predictChartSpec,
  predictMarkdown,
} from './predict-report.js';
import { computeResultFiles, overlapProfile, readinessProfile } from './readiness-profile.js';
import { writeResultFiles } from './result-files.js';
import type { ScalingReport } from './scaling-bench.js';

interface PredictFlags {
  model: string;
  results: string;
  scaling?: string;
  computeResults?: string;
  computeMs?: string;
  batchSize?: string;
  speedup: string;
  accumulate: string;
  maxWorkers: string;
  bucketSizeMb: string;
  powersgdRank: string;
  link?: string;
  linkMbps?: string;
  latencyUs?: string;
  json?: boolean;
  out?: string;
}

/** `tfjs-ddp bench predict`. */
export function addPredictCommand(bench: Command): void {
  bench
    .command('predict')
    .description(
      'predict throughput and scaling efficiency up to N workers from the measured step time ' +
        'and the latency and bandwidth fitted to `bench allreduce` results (α–β model)',
    )
    .requiredOption('--model <name>', 'model of the zoo (its gradient size)')
    .option('--results <dir>', 'folder with allreduce-*.json (and scaling-*.json)', 'bench/results')
    .option(
      '--link <rate>',
      'use the results measured on emulated links of this rate (bench allreduce/scaling --link)',
    )
    .option(
      '--scaling <file>',
      'bench scaling results to check against (default: every <results>/scaling-<model>-*.json of the link)',
    )
    .option(
      '--compute-results <file>',
      'bench compute results with the gradient readiness of the overlap scenarios (default: the first <results>/compute-*.json that has the model’s; else an assumption)',
    )
    .option(
      '--compute-ms <ms>',
      'one worker’s step time without communication (default: the scaling file’s N = 1)',
    )
    .option('--batch-size <n>', 'images per step per worker (default: the scaling file’s)')
    .option('--speedup <x>', 'also predict with compute this many times faster (a GPU)', '50')
    .option('--accumulate <list>', 'micro-batches per all-reduce (gradient accumulation)', '1,4')
    .option('--max-workers <n>', 'largest N (powers of two up to it)', '256')
    .option('--bucket-size-mb <x>', 'gradient bucket size, as in train', '25')
    .option('--powersgd-rank <r>', 'rank of the PowerSGD scenarios', '4')
    .option(
      '--link-mbps <x>',
      'instead of the fitted figures: a network link of this bandwidth (MB/s)…',
    )
    .option('--latency-us <x>', '…and this latency per message (µs)')
    .option('--json', 'print the inputs, the predictions and the check as one JSON object')
    .option('--out <dir>', 'folder for the JSON, Markdown and chart files (default: --results)')
    .action(async (flags: PredictFlags) => {
      const model = parseModelName(flags.model);
      const link = flags.link === undefined ? undefined : parseLinkRate(flags.link).text;
      const scaling =
        flags.scaling !== undefined
          ? [await readScaling(flags.scaling)]
          : await scalingReports(flags.results, model, link);
      // The step time of one worker: from the plain run's N = 1 when there is one.
      const reference = scaling.find((r) => (r.compression ?? 'none') === 'none') ?? scaling[0];
      const one = reference?.results.find((r) => r.workers === 1);
      const computeMs =
        flags.computeMs !== undefined ? positive(flags.computeMs, '--compute-ms') : one?.stepMs;
      const batchSize =
        flags.batchSize !== undefined
          ? positive(flags.batchSize, '--batch-size')
          : reference?.batchSize;
      if (computeMs === undefined || batchSize === undefined) {
        const on = link ? ` --link ${link}` : '';
        throw new UserError(
          `no step time for ${model}: run tfjs-ddp bench scaling --model ${model}${on} --out ${flags.results}, or give --compute-ms and --batch-size`,
        );
      }
      await initBackend('cpu');
      const architecture = buildArchitecture(model);
      const gradientBytes = 4 * countParams(architecture).trainableParams;
      const shapes = architecture.trainableWeights.map((w) => w.shape as number[]);
      architecture.dispose();
      const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
      const maxWorkers = positive(flags.maxWorkers, '--max-workers');
      const workers: number[] = [];
      for (let n = 1; n <= maxWorkers; n *= 2) workers.push(n);
      const bucketBytes =
        flags.bucketSizeMb === '25'
          ? DEFAULT_BUCKET_BYTES
          : positive(flags.bucketSizeMb, '--bucket-size-mb') * 1024 * 1024;
      // Fitted first: a missing benchmark is said before PowerSGD is timed.
      const fitted = await links(flags, link);
      const profile =
        flags.computeResults !== undefined
          ? await readinessProfile([flags.computeResults], model, sizes, true)
          : await readinessProfile(await computeResultFiles(flags.results), model, sizes);
      const overlap = overlapProfile(
        profile,
        planBuckets(sizes, DEFAULT_FIRST_BUCKET_BYTES, bucketBytes),
      );
      const rank = positive(flags.powersgdRank, '--powersgd-rank');
      if (!Number.isInteger(rank)) throw new UserError('--powersgd-rank must be a whole number');
      const ranks = new Set([rank]);
      for (const r of scaling) {
        const checked = powerSgdRank(r.compression ?? 'none');
        if (checked) ranks.add(checked);
      }
      const powerSgdChecked = [];
      for (const r of ranks) {
        powerSgdChecked.push(
          await measurePowerSgd(shapes, r, DEFAULT_FIRST_BUCKET_BYTES, bucketBytes),
        );
      }
      const inputs = {
        model,
        gradientBytes,
        firstBucketBytes: DEFAULT_FIRST_BUCKET_BYTES,
        bucketBytes,
        powerSgd: powerSgdChecked[0],
        powerSgdChecked,
        computeMs,
        batchSize,
        speedup: positive(flags.speedup, '--speedup'),
        accumulate: parsePositiveIntegers(flags.accumulate, '--accumulate'),
        workers,
        links: fitted,
        link,
        overlap,
      };
      const { rows, checks } = predict({ ...inputs, scaling });
      const report: PredictReport = { inputs, rows, checks };
      const command = `tfjs-ddp ${process.argv.slice(2).join(' ')}`;
      const name = `predict-${model}${link ? `-${link}` : ''}`;
      const chart = await renderChart(predictChartSpec(report));
      const files: Record<string, string | Uint8Array> = {
        [`${name}.json`]: `${JSON.stringify({ command, date: new Date().toISOString(), ...report }, null, 2)}\n`,
        [`${name}.md`]: `${predictMarkdown(report, command)}\n![${name}](${name}.svg)\n`,
        [`${name}.svg`]: chart.svg,
      };
      if (chart.png) files[`${name}.png`] = chart.png;
      const paths = await writeResultFiles(flags.out ?? flags.results, files);
      log().info({ files: paths }, `results written to ${paths.join(', ')}`);
      process.stdout.write(
        flags.json ? `${JSON.stringify(report)}\n` : formatPredictTables(report),
      );
    });
}

async function links(flags: PredictFlags, link: string | undefined): Promise<FittedLink[]> {
  if (flags.linkMbps === undefined && flags.latencyUs === undefined) {
    return fitLinks(flags.results, link);
  }
  if (link !== undefined) throw new UserError('--link reads measured links: leave out --link-mbps');
  if (flags.linkMbps === undefined || flags.latencyUs === undefined) {
    throw new UserError('--link-mbps and --latency-us go together');
  }
  const mbps = positive(flags.linkMbps, '--link-mbps');
  const alphaMs = positive(flags.latencyUs, '--latency-us') / 1000;
  return SCENARIOS.map(([algo, compression]) => ({
    algo,
    compression,
    alphaMs,
    // PowerSGD sends float32 (its fewer bytes come from PowerSgdShape).
    betaMsPerByte: 1 / (mbps * 1000) / (compression === 'bf16' ? 2 : 1),
    source: `--link-mbps ${mbps} --latency-us ${flags.latencyUs}`,
  }));
}

/** Every `bench scaling` report of `model` in `dir` measured on `link` (absent: loopback). */
async function scalingReports(
  dir: string,
  model: string,
  link: string | undefined,
): Promise<ScalingReport[]> {
  const names = (await readdir(dir).catch(() => [] as string[]))
    .filter((f) => f.startsWith(`scaling-${model}-`) && f.endsWith('.json'))
    .sort();
  const reports = await Promise.all(names.map((f) => readScaling(join(dir, f))));
  return reports.filter((r) => r.model === model && r.link === link);
}

async function readScaling(path: string): Promise<ScalingReport> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as ScalingReport;
  } catch (error) {
    throw new UserError(
      `--scaling ${path}: cannot read bench scaling results: ${(error as Error).message}`,
    );
  }
}

function positive(text: string, flag: string): number {
  const x = Number(text);
  if (!Number.isFinite(x) || x <= 0)
    throw new UserError(`${flag}: "${text}" is not a positive number`);
  return x;
}
