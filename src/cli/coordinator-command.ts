import { type Command, Option } from 'commander';
import { Coordinator } from '../coordinator/coordinator.js';
import {
  type DistributedConfigFlags,
  resolveDistributedConfig,
} from '../coordinator/distributed-config.js';
import {
  BACKEND_REQUESTS,
  type BackendRequest,
  initBackend,
} from '../shared/backend/select-backend.js';
import { addTrainingOptions } from '../shared/config/train-options.js';
import { loadSecurity } from '../shared/distributed/security.js';
import { gracefulStop } from '../shared/process/graceful-stop.js';
import type { TrainSummary } from '../shared/training/local-training.js';
import {
  addDistributedOptions,
  addSecurityOptions,
  type DistributedFlags,
  envOption,
  parseDistributedFlags,
  type SecurityFlags,
  wholeNumber,
} from './distributed-options.js';

interface CoordinatorFlags extends DistributedConfigFlags, DistributedFlags, SecurityFlags {
  backend: string;
  port: string;
  bindHost: string;
  worldSize: string;
  json?: boolean;
}

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
  addTrainingOptions(command);
  addDistributedOptions(command);
  addSecurityOptions(command)
    .addOption(
      envOption(
        '--port <n>',
        'gRPC port: coordinator service, star all-reduce, data, health, reflection',
      ).default('7070'),
    )
    .addOption(envOption('--bind-host <addr>', 'interface to listen on').default('0.0.0.0'))
    .addOption(envOption('--world-size <n>', 'number of workers (required)').makeOptionMandatory())
    .addOption(
      envOption(
        '--backend <name>',
        'compute backend of the coordinator itself (it builds and exports the model)',
      )
        .choices([...BACKEND_REQUESTS])
        .default('auto'),
    )
    .addOption(envOption('--out <dir>', 'run folder (default: a new folder under runs/)'))
    .addOption(
      envOption(
        '--checkpoint-every <steps>',
        'checkpoint every K steps (default: every epoch); always at the end',
      ),
    )
    .addOption(
      new Option('--resume [dir]', 'continue the run in DIR (default: the latest under runs/)').env(
        'TFJS_DDP_RESUME',
      ),
    )
    .option('--json', 'print only the final summary as one JSON object on stdout')
    .action(async (flags: CoordinatorFlags) => {
      const summary = await coordinate(flags);
      process.stdout.write(
        flags.json
          ? `${JSON.stringify(summary)}\n`
          : `trained ${summary.model} with ${summary.workers} workers for ${summary.steps} steps; run folder: ${summary.runDir}\n`,
      );
    });
}

async function coordinate(flags: CoordinatorFlags): Promise<TrainSummary> {
  const worldSize = wholeNumber('--world-size', flags.worldSize, 1);
  const port = wholeNumber('--port', flags.port, 0);
  const distributed = parseDistributedFlags(flags);
  const security = await loadSecurity(flags);
  const { config, runDir, resumeFrom } = await resolveDistributedConfig(flags, worldSize);
  await initBackend(flags.backend as BackendRequest);
  const stop = gracefulStop('stopping every worker after this step and writing a checkpoint');
  try {
    const coordinator = await Coordinator.start({
      config,
      worldSize,
      runDir,
      out: flags.out,
      resumeFrom,
      host: flags.bindHost,
      port,
      security,
      signal: stop.signal,
      ...distributed,
    });
    return await coordinator.run();
  } finally {
    stop.dispose();
  }
}
