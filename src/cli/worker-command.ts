import { hostname } from 'node:os';
import type { Command } from 'commander';
import { exitWithParent, launchedByParent } from '../coordinator/local-workers.js';
import { BACKEND_REQUESTS, type BackendRequest } from '../shared/backend/select-backend.js';
import { loadSecurity } from '../shared/distributed/security.js';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import { gracefulStop } from '../shared/process/graceful-stop.js';
import { runWorker } from '../worker/worker.js';
import {
  addSecurityOptions,
  envOption,
  envSwitch,
  type SecurityFlags,
  switchValue,
  wholeNumber,
} from './distributed-options.js';

interface WorkerFlags extends SecurityFlags {
  coordinator: string;
  peerPort: string;
  advertiseHost: string;
  bindHost: string;
  data?: string;
  backend: string;
  model?: string;
  rank?: string;
  joinTimeout: string;
}

/**
 * `tfjs-ddp worker`: one data-parallel replica. Joins the coordinator, trains what it is told,
 * exits 0 when the run completes. Every flag can also be set by its TFJS_DDP_* variable.
 */
export function registerWorkerCommand(program: Command): void {
  const command = program
    .command('worker')
    .description('join a distributed run as one worker (see `tfjs-ddp coordinator`)')
    .addOption(
      envOption(
        '--coordinator <host:port>',
        'where the coordinator listens (required)',
      ).makeOptionMandatory(),
    )
    .addOption(
      envOption(
        '--peer-port <n>',
        'port of this worker\u2019s peer server for the ring (0: any free one)',
      ).default('7071'),
    )
    .addOption(
      envOption('--advertise-host <host>', 'how the other workers reach this one').default(
        hostname(),
        'this machine\u2019s hostname',
      ),
    )
    .addOption(
      envOption('--bind-host <addr>', 'interface the peer server listens on').default('0.0.0.0'),
    )
    .addOption(
      envOption(
        '--data <dir>',
        'local CIFAR-10 folder (unless the run uses --data-from coordinator)',
      ),
    )
    .addOption(
      envOption('--backend <name>', 'compute backend')
        .choices([...BACKEND_REQUESTS])
        .default('auto'),
    )
    .addOption(envSwitch('--gpu', 'require a GPU: fail rather than train on a CPU'))
    .addOption(
      envOption(
        '--model <name>',
        'the model this worker expects to train (default: the coordinator\u2019s, checked by architecture)',
      ),
    )
    .addOption(envOption('--rank <n>', 'the rank to ask for (default: the lowest free one)'))
    .addOption(
      envOption(
        '--join-timeout <s>',
        'seconds to keep trying to reach and join the coordinator',
      ).default('600'),
    );
  addSecurityOptions(command).action(async (flags: WorkerFlags, self: Command) => {
    const security = await loadSecurity(flags);
    if (!/^[^:\s]+:\d+$/.test(flags.coordinator) && !/^\[[^\]]+\]:\d+$/.test(flags.coordinator)) {
      throw new UserError(`--coordinator: expected HOST:PORT (got "${flags.coordinator}")`);
    }
    exitWithParent(log());
    // Started by `train --workers`: Ctrl-C reaches the whole process group, and the launcher
    // stops the run in order (a checkpoint first); this process waits for its Stop.
    const stop = gracefulStop('leaving the run', { ignoreSigint: launchedByParent() });
    try {
      await runWorker({
        coordinator: flags.coordinator,
        bindHost: flags.bindHost,
        peerPort: wholeNumber('--peer-port', flags.peerPort, 0),
        advertiseHost: flags.advertiseHost,
        dataDir: flags.data,
        backend: flags.backend as BackendRequest,
        gpu: switchValue(self, '--gpu'),
        model: flags.model,
        rank: flags.rank === undefined ? undefined : wholeNumber('--rank', flags.rank, 0),
        joinTimeoutMs: 1000 * wholeNumber('--join-timeout', flags.joinTimeout, 1),
        security,
        signal: stop.signal,
      });
    } finally {
      stop.dispose();
      // Stop watching the launcher, and do not let a lingering connection keep the process up.
      process.stdin.destroy();
      setTimeout(() => process.exit(), 3000).unref();
    }
  });
}
