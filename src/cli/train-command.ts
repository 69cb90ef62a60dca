import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import {
  addLaunchOptions,
  isDistributed,
  type LaunchFlags,
  trainWithWorkers,
} from '../coordinator/launcher.js';
import { type BackendRequest, initBackend } from '../shared/backend/select-backend.js';
import { resolveTrainConfig, type TrainFlags } from '../shared/config/resolve-train-config.js';
import { resumeTrainConfig } from '../shared/config/resume-train-config.js';
import { addTrainingOptions } from '../shared/config/train-options.js';
import { UserError } from '../shared/errors.js';
import { gracefulStop } from '../shared/process/graceful-stop.js';
import { type Checkpoint, readCheckpoint } from '../shared/training/checkpoint.js';
import { type TrainSummary, trainLocally } from '../shared/training/local-training.js';
import { latestRunDir } from '../shared/training/run-folder.js';

interface TrainCommandFlags extends TrainFlags {
  backend: string;
  out?: string;
  checkpointEvery?: string;
  resume?: string | true;
  json?: boolean;
}

export function registerTrainCommand(program: Command): void {
  const command = program
    .command('train')
    .description(
      'train a model of the zoo on CIFAR-10 (in this process, or with --workers N processes)',
    );
  addTrainingOptions(command)
    .addOption(
      new Option('--backend <name>', 'compute backend: auto, tensorflow, wasm, cpu')
        .default('auto')
        .env('TFJS_DDP_BACKEND'),
    )
    .addOption(
      new Option('--out <dir>', 'run folder (default: a new folder under runs/)').env(
        'TFJS_DDP_OUT',
      ),
    )
    .addOption(
      new Option(
        '--checkpoint-every <steps>',
        'checkpoint every K steps (default: every epoch); always at the end',
      ).env('TFJS_DDP_CHECKPOINT_EVERY'),
    )
    .option('--resume [dir]', 'continue the run in DIR (default: the latest under runs/)')
    .option('--json', 'print only the final summary as one JSON object on stdout');
  addLaunchOptions(command).action(async (flags: TrainCommandFlags & LaunchFlags) => {
    const summary = isDistributed(flags) ? await trainDistributed(flags) : await train(flags);
    process.stdout.write(flags.json ? `${JSON.stringify(summary)}\n` : describe(summary));
  });
}

async function trainDistributed(flags: TrainCommandFlags & LaunchFlags): Promise<TrainSummary> {
  const stop = gracefulStop('stopping every worker after this step and writing a checkpoint');
  try {
    return await trainWithWorkers(flags, stop);
  } finally {
    stop.dispose();
  }
}

async function train(flags: TrainCommandFlags): Promise<TrainSummary> {
  const checkpointEvery = positiveInteger('--checkpoint-every', flags.checkpointEvery);
  let resumeFrom: Checkpoint | undefined;
  let runDir: string | undefined;
  let config: ReturnType<typeof resolveTrainConfig>;
  if (flags.resume !== undefined) {
    runDir = flags.resume === true ? await latestRunDir() : resolve(flags.resume);
    if (flags.out !== undefined && resolve(flags.out) !== runDir) {
      throw new UserError(
        `--out ${flags.out} and --resume ${runDir}: a resumed run stays in its folder`,
      );
    }
    resumeFrom = await readCheckpoint(runDir);
    config = resumeTrainConfig(resumeFrom.config, flags, `the checkpoint in ${runDir}`);
  } else {
    config = resolveTrainConfig(flags);
  }
  const backend = await initBackend(flags.backend as BackendRequest);

  const stop = gracefulStop('stopping after this step and writing a checkpoint');
  try {
    return await trainLocally({
      config,
      backend: backend.name,
      runDir,
      out: flags.out,
      resumeFrom,
      checkpointEvery,
      signal: stop.signal,
    });
  } finally {
    stop.dispose();
  }
}

function positiveInteger(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || n < 1) {
    throw new UserError(`${flag}: expected a whole number of steps ≥ 1 (got "${text}")`);
  }
  return n;
}

function describe(s: TrainSummary): string {
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(2)}%`);
  return [
    `trained ${s.model} for ${s.steps} steps on ${s.backend} (${Math.round(s.imagesPerSec)} images/s)`,
    `final training loss ${s.finalLoss?.toFixed(4) ?? 'n/a'}, validation accuracy ${pct(s.valAccuracy)}`,
    `run folder: ${s.runDir} (model: ${s.runDir}/model/model.json)`,
    '',
  ].join('\n');
}
