import { performance } from 'node:perf_hooks';
import type { Command } from 'commander';
import {
  distributedSettings,
  resolveDistributedConfig,
} from '../coordinator/distributed-config.js';
import { planGpus } from '../coordinator/gpu-plan.js';
import { trainWithWorkers } from '../coordinator/launcher.js';
import { trainInProcess } from '../coordinator/train-in-process.js';
import type { TrainSummary } from '../coordinator/train-world.js';
import { checkWorkerCount } from '../coordinator/worker-capacity.js';
import { type BackendRequest, initBackend } from '../shared/backend/select-backend.js';
import { TRAIN_COMMAND_FLAGS } from '../shared/config/command-flags.js';
import type { FlagValues } from '../shared/config/flags.js';
import { resolveTrainConfig } from '../shared/config/resolve-train-config.js';
import { resumeTrainConfig } from '../shared/config/resume-train-config.js';
import { UserError } from '../shared/errors.js';
import { gracefulStop } from '../shared/process/graceful-stop.js';
import { type Checkpoint, readCheckpoint } from '../shared/training/checkpoint.js';
import { formatDuration } from '../shared/training/training-progress.js';
import { addFlags, readFlags } from './flag-options.js';
import { observeSettings } from './observe-options.js';
import { OwnedRunFolder } from './owned-run-folder.js';

type TrainCommandFlags = FlagValues<(typeof TRAIN_COMMAND_FLAGS)[number]>;

export function registerTrainCommand(program: Command): void {
  const command = program
    .command('train')
    .description(
      'train a model of the zoo on CIFAR-10 (in this process, or with --workers N processes)',
    );
  addFlags(command, TRAIN_COMMAND_FLAGS).action(async (_options, self: Command) => {
    const folder = await OwnedRunFolder.open(self);
    try {
      const flags = readFlags(self, TRAIN_COMMAND_FLAGS);
      const started = performance.now();
      const distributed = flags.workers !== undefined || flags.gpus !== undefined;
      const summary = distributed
        ? await trainDistributed(flags, folder)
        : await train(flags, folder);
      const elapsed = (performance.now() - started) / 1000;
      process.stdout.write(
        flags.json ? `${JSON.stringify(summary)}\n` : describe(summary, elapsed),
      );
    } finally {
      await folder.release();
    }
  });
}

/**
 * `train --workers N` (or --gpus): refuses more workers than the machine carries before
 * anything starts, resolves the run's configuration and folder, then launches.
 */
async function trainDistributed(
  flags: TrainCommandFlags,
  folder: OwnedRunFolder,
): Promise<TrainSummary> {
  const { resumeDir } = folder;
  if (flags.workers !== undefined) {
    checkWorkerCount(flags.workers, flags.allowOversubscribe ?? false);
  }
  const gpus = planGpus({ workers: flags.workers, gpus: flags.gpus, backend: flags.backend });
  const { config, resumeFrom } = await resolveDistributedConfig(flags, gpus.workers, resumeDir);
  return folder.run(config.model, async (runDir) => {
    const stop = gracefulStop('stopping every worker after this step and writing a checkpoint');
    try {
      return await trainWithWorkers(
        {
          config,
          runDir,
          resumeFrom,
          gpus,
          backend: flags.backend,
          // On loopback like the workers; their join token is internal, so only --http-token.
          observe: observeSettings(flags, '127.0.0.1'),
          ...distributedSettings(flags),
        },
        stop,
      );
    } finally {
      stop.dispose();
    }
  });
}

async function train(flags: TrainCommandFlags, folder: OwnedRunFolder): Promise<TrainSummary> {
  const { resumeDir } = folder;
  if (flags.globalBatchSize !== undefined) {
    throw new UserError(
      '--global-batch-size is for distributed runs: give --workers N (or --gpus)',
    );
  }
  let resumeFrom: Checkpoint | undefined;
  let config: ReturnType<typeof resolveTrainConfig>;
  if (resumeDir !== undefined) {
    resumeFrom = await readCheckpoint(resumeDir);
    config = resumeTrainConfig(resumeFrom.config, flags, `the checkpoint in ${resumeDir}`);
  } else {
    config = resolveTrainConfig(flags);
  }
  return folder.run(config.model, async (runDir) => {
    const backend = await initBackend(flags.backend as BackendRequest);
    const stop = gracefulStop('stopping after this step and writing a checkpoint');
    try {
      return await trainInProcess({
        config,
        backend: backend.name,
        runDir,
        resumeFrom,
        checkpointEvery: flags.checkpointEvery,
        signal: stop.signal,
        observe: observeSettings(flags, '127.0.0.1'),
      });
    } finally {
      stop.dispose();
    }
  });
}

function describe(s: TrainSummary, elapsedSeconds: number): string {
  const pct = (x: number | null) => (x === null ? 'n/a' : `${(100 * x).toFixed(2)}%`);
  return [
    `trained ${s.model} for ${s.steps} steps in ${formatDuration(elapsedSeconds)} on ${s.backend} (${Math.round(s.imagesPerSec)} images/s)`,
    `final training loss ${s.finalLoss?.toFixed(4) ?? 'n/a'}, validation accuracy ${pct(s.valAccuracy)}`,
    `run folder: ${s.runDir} (model: ${s.runDir}/model/model.json)`,
    '',
  ].join('\n');
}
