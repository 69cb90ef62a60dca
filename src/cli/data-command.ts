import { type Command, InvalidArgumentError, Option } from 'commander';
import { cifar10CacheDir } from '../shared/data/cache-dir.js';
import { CIFAR10_MD5, CIFAR10_URL, downloadCifar10 } from '../shared/data/cifar10-download.js';
import { classHistogram, type DatasetSplits } from '../shared/data/labeled-images.js';
import { DATASET_NAMES, DEFAULT_VAL_SIZE, loadDataset } from '../shared/data/load-dataset.js';
import { UserError } from '../shared/errors.js';

/** `tfjs-ddp data download` and `tfjs-ddp data info`. */
export function registerDataCommand(program: Command): void {
  const data = program.command('data').description('get and inspect the training data');

  data
    .command('download')
    .description(
      'download CIFAR-10 (binary version), verify its MD5 and install it atomically; ' +
        'a no-op when it is already there',
    )
    .option('--dir <dir>', 'folder to install the batches in', cifar10CacheDir())
    .addOption(
      new Option('--url <url>', 'where to fetch cifar-10-binary.tar.gz')
        .env('TFJS_DDP_CIFAR10_URL')
        .default(CIFAR10_URL),
    )
    .addOption(
      new Option('--md5 <hex>', 'expected MD5 of the archive')
        .env('TFJS_DDP_CIFAR10_MD5')
        .default(CIFAR10_MD5),
    )
    .option('--force', 'download and replace the folder even when it is complete', false)
    .action(async (opts: { dir: string; url: string; md5: string; force: boolean }) => {
      const result = await downloadCifar10(opts);
      process.stdout.write(
        result.downloaded
          ? `CIFAR-10 installed in ${result.dir} (${(result.bytes / 2 ** 20).toFixed(1)} MiB ` +
              'archive, MD5 verified)\n'
          : `CIFAR-10 is already in ${result.dir}; nothing to do (--force downloads it again)\n`,
      );
    });

  data
    .command('info')
    .description('count the images of each class in the training and validation splits')
    .addOption(
      new Option('--data <dir>', 'CIFAR-10 binary folder (default: the cache)').env(
        'TFJS_DDP_DATA',
      ),
    )
    .addOption(
      new Option('--dataset <name>', 'data set')
        .choices(DATASET_NAMES)
        .env('TFJS_DDP_DATASET')
        .default('cifar10'),
    )
    .addOption(
      new Option('--val-size <n>', 'validation holdout size when there is no test batch')
        .env('TFJS_DDP_VAL_SIZE')
        .argParser(wholeNumber)
        .default(DEFAULT_VAL_SIZE),
    )
    .addOption(
      new Option('--seed <n>', 'seed that chooses the holdout')
        .env('TFJS_DDP_SEED')
        .argParser(wholeNumber)
        .default(0),
    )
    .option('--json', 'print one JSON object instead of a table', false)
    .action(async (opts: InfoFlags) => {
      if (opts.data !== undefined && opts.dataset === 'synthetic') {
        throw new UserError('--data and --dataset synthetic: give one of them, not both');
      }
      const splits = await loadDataset({
        dataset: opts.dataset,
        dataDir: opts.data,
        valSize: opts.valSize,
        seed: opts.seed,
      });
      const summary = summarize(splits, opts);
      process.stdout.write(
        opts.json ? `${JSON.stringify(summary)}\n` : formatSummary(summary, splits.classNames),
      );
    });
}

interface InfoFlags {
  data?: string;
  dataset: 'cifar10' | 'synthetic';
  valSize: number;
  seed: number;
  json: boolean;
}

interface SplitSummary {
  count: number;
  classCounts: number[];
}

function summarize(splits: DatasetSplits, opts: InfoFlags) {
  const split = (images: DatasetSplits['train']): SplitSummary => ({
    count: images.count,
    classCounts: classHistogram(images, splits.classNames.length),
  });
  return {
    dataset: splits.name,
    dataDir: splits.dataDir ?? null,
    valSource: splits.valSource,
    seed: opts.seed,
    classNames: splits.classNames,
    train: split(splits.train),
    val: split(splits.val),
  };
}

function formatSummary(s: ReturnType<typeof summarize>, classNames: readonly string[]): string {
  const n = (v: number) => v.toLocaleString('en-US');
  const validation =
    s.valSource === 'test'
      ? 'validation: a separate test set'
      : `validation: ${n(s.val.count)} images held out of the training batches (seed ${s.seed})`;
  const nameWidth = Math.max(5, ...classNames.map((c) => c.length));
  const width = Math.max(7, n(s.train.count).length + 2);
  const row = (label: string, train: number, val: number) =>
    `${label.padEnd(nameWidth)}${n(train).padStart(width)}${n(val).padStart(width)}\n`;
  return (
    `${s.dataset}${s.dataDir === null ? ' (generated)' : ` from ${s.dataDir}`}\n${validation}\n\n` +
    `${'class'.padEnd(nameWidth)}${'train'.padStart(width)}${'val'.padStart(width)}\n` +
    classNames.map((c, i) => row(c, s.train.classCounts[i], s.val.classCounts[i])).join('') +
    row('total', s.train.count, s.val.count)
  );
}

function wholeNumber(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError('expected a whole number ≥ 0');
  return Number(value);
}
