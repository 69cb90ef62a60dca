import { type Command, Option } from 'commander';
import { type BackendRequest, initBackend } from '../shared/backend/select-backend.js';
import { DATASETS, type DataConfig } from '../shared/config/train-config.js';
import { loadEvaluationSet } from '../shared/data/load-dataset.js';
import { UserError } from '../shared/errors.js';
import { loadModel } from '../shared/models/model-files.js';
import { type EvalSummary, Evaluator, summarizeEval } from '../shared/training/evaluator.js';
import { readModelMetadata } from '../shared/training/run-folder.js';

export interface EvalFlags {
  modelDir: string;
  data?: string;
  dataset?: string;
  valSize?: string;
  batchSize: string;
  backend: string;
  json?: boolean;
}

export function registerEvalCommand(program: Command): void {
  program
    .command('eval')
    .description(
      'evaluate an exported model on the test batch of the data (or its validation split), ' +
        'with the preprocessing it was trained with',
    )
    .requiredOption('--model-dir <dir>', 'the model folder written by train (<run>/model)')
    .option(
      '--data <dir>',
      'CIFAR-10 folder; test_batch.bin alone is enough (default: the data the model was trained on)',
    )
    .option('--dataset <name>', `${DATASETS.join(' or ')} (default: as in training)`)
    .option('--val-size <n>', 'validation holdout size (default: as in training)')
    .option('--batch-size <n>', 'images per batch', '256')
    .addOption(
      new Option('--backend <name>', 'compute backend: auto, tensorflow, wasm, cpu')
        .default('auto')
        .env('TFJS_DDP_BACKEND'),
    )
    .option('--json', 'print {"accuracy","loss","perClass","confusion"} as one JSON object')
    .action(async (flags: EvalFlags) => {
      const summary = await evaluateModel(flags);
      process.stdout.write(
        flags.json
          ? `${JSON.stringify({
              accuracy: summary.accuracy,
              loss: summary.loss,
              perClass: summary.perClass,
              confusion: summary.confusion,
            })}\n`
          : formatEvaluation(summary),
      );
    });
}

/** Evaluates `flags.modelDir` as `eval` does (also used by `report`). */
export async function evaluateModel(flags: EvalFlags): Promise<EvalSummary> {
  const metadata = await readModelMetadata(flags.modelDir);
  const batchSize = wholeNumber('--batch-size', flags.batchSize, 1);
  const data = dataOptions(flags, metadata.data);
  await initBackend(flags.backend as BackendRequest);
  const evaluation = await loadEvaluationSet({ ...data, seed: metadata.seed });
  const model = await loadModel(flags.modelDir);
  try {
    const sums = new Evaluator(model).run(evaluation.images, {
      preprocessing: metadata.preprocessing,
      batchSize,
    });
    return summarizeEval(sums, evaluation.classNames);
  } finally {
    model.dispose();
  }
}

/** The data as in training, unless a flag says otherwise. */
function dataOptions(flags: EvalFlags, trained: DataConfig): DataConfig {
  if (flags.data !== undefined && flags.dataset === 'synthetic') {
    throw new UserError('--data and --dataset synthetic: give one of them, not both');
  }
  if (flags.dataset !== undefined && !(DATASETS as readonly string[]).includes(flags.dataset)) {
    throw new UserError(
      `--dataset: expected one of ${DATASETS.join(', ')} (got "${flags.dataset}")`,
    );
  }
  const valSize =
    flags.valSize === undefined ? trained.valSize : wholeNumber('--val-size', flags.valSize, 0);
  if (flags.data !== undefined) return { dataset: 'cifar10', dataDir: flags.data, valSize };
  if (flags.dataset !== undefined && flags.dataset !== trained.dataset) {
    return { dataset: flags.dataset as DataConfig['dataset'], valSize };
  }
  return { ...trained, valSize };
}

function wholeNumber(flag: string, text: string, min: number): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < min) {
    throw new UserError(`${flag}: expected a whole number ≥ ${min} (got "${text}")`);
  }
  return Number(text);
}

/** Accuracy, loss, a per-class table and the confusion matrix (rows: true class). */
export function formatEvaluation(s: EvalSummary): string {
  const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
  const name = (i: number) => s.perClass[i].class.slice(0, 12);
  const width = Math.max(6, ...s.confusion.flat().map((c) => String(c).length + 1));
  const cell = (v: string | number) => String(v).padStart(width);
  const lines = [
    `accuracy ${pct(s.accuracy)} (${Math.round(s.accuracy * s.count)}/${s.count}), loss ${s.loss.toFixed(4)}`,
    '',
    `${'class'.padEnd(16)}${'accuracy'.padStart(10)}${'images'.padStart(8)}`,
    ...s.perClass.map(
      (c, i) =>
        `${`${i} ${name(i)}`.padEnd(16)}${pct(c.accuracy).padStart(10)}${String(c.count).padStart(8)}`,
    ),
    '',
    'confusion matrix (rows: true class, columns: predicted class)',
    `${''.padEnd(16)}${s.confusion.map((_, i) => cell(i)).join('')}`,
    ...s.confusion.map((row, t) => `${`${t} ${name(t)}`.padEnd(16)}${row.map(cell).join('')}`),
    '',
  ];
  return lines.join('\n');
}
