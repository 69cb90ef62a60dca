import type { Command } from 'commander';
import { Coordinator } from '../coordinator/coordinator.js';
import {
  distributedSettings,
  resolveDistributedConfig,
} from '../coordinator/distributed-config.js';
import type { TrainSummary } from '../coordinator/train-world.js';
import { type BackendRequest, initBackend } from '../shared/backend/select-backend.js';
import { COORDINATOR_COMMAND_FLAGS } from '../shared/config/command-flags.js';
import type { FlagValues } from '../shared/config/flags.js';
import { loadSecurity } from '../shared/distributed/security.js';
import { UserError } from '../shared/errors.js';
import { exitAfterLinger, gracefulStop } from '../shared/process/graceful-stop.js';
import { addFlags, readFlags } from './flag-options.js';
import { observeSettings } from './observe-options.js';
import { OwnedRunFolder } from './owned-run-folder.js';

type CoordinatorFlags = FlagValues<(typeof COORDINATOR_COMMAND_FLAGS)[number]>;

/**
 * `tfjs-ddp coordinator`: the control plane of a run across hosts (Kubernetes): admits
 * --world-size workers, plans every step, writes the run folder. Every flag can also be set by
 * its TFJS_DDP_* environment variable. Exit 0 when the run completes.
 */
export function registerCoordinatorCommand(program: Command): void {
  const command = program
    .command('coordinator')
    .description(
      'coordinate a distributed run: admit --world-size workers (`tfjs-ddp worker`), plan their steps, write the run folder',
    );
  addFlags(command, COORDINATOR_COMMAND_FLAGS).action(async (_options, self: Command) => {
    const folder = await OwnedRunFolder.open(self);
    try {
      const flags = readFlags(self, COORDINATOR_COMMAND_FLAGS);
      const summary = await coordinate(flags, folder);
      process.stdout.write(
        flags.json
          ? `${JSON.stringify(summary)}\n`
          : `trained ${summary.model} with ${summary.workers} workers for ${summary.steps} steps; run folder: ${summary.runDir}\n`,
      );
    } finally {
      await folder.release();
      exitAfterLinger();
    }
  });
}

async function coordinate(flags: CoordinatorFlags, folder: OwnedRunFolder): Promise<TrainSummary> {
  const { resumeDir } = folder;
  const { worldSize } = flags;
  if (worldSize === undefined)
    throw new UserError('--world-size is required: the number of workers');
  const security = await loadSecurity(flags);
  const { config, resumeFrom } = await resolveDistributedConfig(flags, worldSize, resumeDir);
  return folder.run(config.model, async (runDir) => {
    await initBackend(flags.backend as BackendRequest);
    const stop = gracefulStop('stopping every worker after this step and writing a checkpoint');
    try {
      const coordinator = await Coordinator.start({
        config,
        worldSize,
        runDir,
        resumeFrom,
        host: flags.bindHost,
        port: flags.port,
        security,
        signal: stop.signal,
        observe: observeSettings(flags, flags.bindHost, security.token),
        ...distributedSettings(flags),
      });
      return await coordinator.run();
    } finally {
      stop.dispose();
    }
  });
}
