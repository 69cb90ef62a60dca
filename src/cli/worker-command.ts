import { hostname } from 'node:os';
import type { Command } from 'commander';
import { exitWithParent, launchedByParent } from '../coordinator/local-workers.js';
import type { BackendRequest } from '../shared/backend/select-backend.js';
import { WORKER_COMMAND_FLAGS } from '../shared/config/command-flags.js';
import { loadSecurity } from '../shared/distributed/security.js';
import { signalExitCode } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import { exitAfterLinger, gracefulStop } from '../shared/process/graceful-stop.js';
import { runWorker } from '../worker/worker.js';
import { addFlags, readFlags } from './flag-options.js';

/**
 * `tfjs-ddp worker`: one data-parallel replica. Joins the coordinator, trains what it is told,
 * exits 0 when the run completes (143 after leaving it on SIGTERM). Every flag can also be set by its TFJS_DDP_* variable.
 */
export function registerWorkerCommand(program: Command): void {
  const command = program
    .command('worker')
    .description('join a distributed run as one worker (see `tfjs-ddp coordinator`)');
  addFlags(command, WORKER_COMMAND_FLAGS).action(async (_options, self: Command) => {
    const flags = readFlags(self, WORKER_COMMAND_FLAGS);
    const security = await loadSecurity(flags);
    exitWithParent(log());
    // Started by `train --workers`: Ctrl-C reaches the whole process group, and the launcher
    // stops the run in order (a checkpoint first); this process waits for its Stop.
    const stop = gracefulStop('leaving the run', { ignoreSigint: launchedByParent() });
    try {
      await runWorker({
        coordinator: flags.coordinator,
        bindHost: flags.bindHost,
        peerPort: flags.peerPort,
        advertiseHost: flags.advertiseHost ?? hostname(),
        dataDir: flags.data,
        backend: flags.backend as BackendRequest,
        gpu: flags.gpu ?? false,
        model: flags.model,
        rank: flags.rank,
        joinTimeoutMs: 1000 * flags.joinTimeout,
        coordinatorGraceMs: 1000 * flags.coordinatorGrace,
        security,
        signal: stop.signal,
      });
      // A worker that left on a signal did not complete its part: it exits with the signal's
      // code, so that a supervisor replaces it (a Kubernetes Indexed Job counts an index whose
      // pod exits 0 as done, and would never bring the worker back).
      if (stop.signal.aborted) process.exitCode = signalExitCode(String(stop.signal.reason));
    } finally {
      stop.dispose();
      // Stop watching the launcher.
      process.stdin.destroy();
      exitAfterLinger();
    }
  });
}
