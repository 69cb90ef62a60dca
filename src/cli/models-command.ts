import { type Command, Option } from 'commander';
import {
  BACKEND_REQUESTS,
  type BackendRequest,
  initBackend,
} from '../shared/backend/select-backend.js';
import {
  buildArchitecture,
  countParams,
  MODEL_NAMES,
  MODEL_SPECS,
  type ModelName,
  type ParamCounts,
  parseModelName,
} from '../shared/models/zoo.js';

/** `tfjs-ddp models` (the zoo with parameter counts) and `tfjs-ddp summary --model NAME`. */
export function registerModelsCommand(program: Command): void {
  program
    .command('models')
    .description('list the model zoo with each model’s source and parameter counts')
    .option(
      '--json',
      'print a JSON array of {name, totalParams, trainableParams, nonTrainableParams}',
    )
    .action(async (opts: { json?: boolean }) => {
      // The counts come from real (zero-weight) builds: the shapes are the truth, not a table.
      await initBackend('cpu');
      const rows = MODEL_NAMES.map((name) => ({ name, ...countsOf(name) }));
      if (opts.json) {
        const json = rows.map(({ name, totalParams, trainableParams, nonTrainableParams }) => ({
          name,
          totalParams,
          trainableParams,
          nonTrainableParams,
        }));
        process.stdout.write(`${JSON.stringify(json)}\n`);
        return;
      }
      process.stdout.write(formatTable(rows));
    });

  program
    .command('summary')
    .description('print a Keras-style layer table of a model, with its parameter totals')
    .addOption(
      new Option('--model <name>', `model: ${MODEL_NAMES.join(', ')}`)
        .env('TFJS_DDP_MODEL')
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--backend <name>', 'compute backend to build the model on')
        .choices(BACKEND_REQUESTS)
        .env('TFJS_DDP_BACKEND')
        .default('auto'),
    )
    .action(async (opts: { model: string; backend: BackendRequest }) => {
      const name = parseModelName(opts.model);
      await initBackend(opts.backend);
      const model = buildArchitecture(name);
      try {
        process.stdout.write(`Model: "${name}" (${MODEL_SPECS[name].source})\n`);
        // tfjs's default widths cut off our layer names; a model with merges (the ResNets)
        // gets a fifth column, "Receives inputs", so it needs five column stops.
        const merges = model.layers.some((l) =>
          l.inboundNodes.some((n) => n.inboundLayers.length > 1),
        );
        const positions = merges ? [0.27, 0.47, 0.64, 0.72, 1] : [0.32, 0.61, 0.89, 1];
        model.summary(130, positions, (line?: unknown) => {
          process.stdout.write(`${String(line ?? '')}\n`);
        });
      } finally {
        model.dispose();
      }
    });
}

function countsOf(name: ModelName): ParamCounts {
  const model = buildArchitecture(name);
  try {
    return countParams(model);
  } finally {
    model.dispose();
  }
}

function formatTable(rows: ({ name: ModelName } & ParamCounts)[]): string {
  const header = ['name', 'source', 'total', 'trainable', 'non-trainable'];
  const cells = rows.map((r) => [
    r.name,
    MODEL_SPECS[r.name].source,
    r.totalParams.toLocaleString('en-US'),
    r.trainableParams.toLocaleString('en-US'),
    r.nonTrainableParams.toLocaleString('en-US'),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  // Names and sources left-aligned, counts right-aligned.
  const line = (c: string[]) =>
    c.map((s, i) => (i < 2 ? s.padEnd(widths[i]) : s.padStart(widths[i]))).join('  ');
  return [header, ...cells].map(line).join('\n') + '\n';
}
