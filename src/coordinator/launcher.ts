import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { credentials, ServerCredentials } from '@grpc/grpc-js';
import { type Command, Option } from 'commander';
import {
  addDistributedOptions,
  type DistributedFlags,
  parseDistributedFlags,
  wholeNumber,
} from '../cli/distributed-options.js';
import { initBackend } from '../shared/backend/select-backend.js';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import type { GracefulStop } from '../shared/process/graceful-stop.js';
import type { TrainSummary } from '../shared/training/local-training.js';
import { Coordinator } from './coordinator.js';
import { type DistributedConfigFlags, resolveDistributedConfig } from './distributed-config.js';
import { planGpus } from './gpu-plan.js';
import { type LocalWorkerSpec, LocalWorkers } from './local-workers.js';

export interface LaunchFlags extends DistributedConfigFlags, DistributedFlags {
  workers?: string;
  gpus?: string | true;
  backend: string;
  checkpointEvery?: string;
}

/** How long workers may take to exit after the run's Stop. */
const EXIT_GRACE_MS = 15_000;
/** After a failure: how long a worker may take to exit on SIGTERM before it is killed. */
const FAILED_STOP_GRACE_MS = 2000;

/** Adds `--workers N`, `--gpus [list]` and the distributed flags to `train`. */
export function addLaunchOptions(command: Command): Command {
  command
    .addOption(
      new Option(
        '--workers <n>',
        'train with N worker processes on this machine (a coordinator here, over gRPC on 127.0.0.1)',
      ),
    )
    .addOption(
      new Option(
        '--gpus [list]',
        'one worker per GPU: the CUDA ids to use (e.g. 0,1,2,3), or every visible GPU',
      ),
    );
  return addDistributedOptions(command);
}

/** Whether `train` runs distributed; --global-batch-size alone is refused (it needs workers). */
export function isDistributed(flags: LaunchFlags): boolean {
  const distributed = flags.workers !== undefined || flags.gpus !== undefined;
  if (!distributed && flags.globalBatchSize !== undefined) {
    throw new UserError(
      '--global-batch-size is for distributed runs: give --workers N (or --gpus)',
    );
  }
  return distributed;
}

/**
 * `train --workers N`, like torchrun --nproc_per_node: the coordinator runs in this process
 * on 127.0.0.1 (a free port, a random join token) and N workers run as child processes
 * (LocalWorkers: logs tagged by rank, no orphans), each with its own GPU when there are GPUs.
 * `stop` (the process's graceful stop) ends the run after the current step with a checkpoint,
 * or at once before training started; a second signal kills the workers. Rejects with the
 * coordinator's error (naming the rank) when a worker fails, and with the worker's exit when
 * one exits badly after the run.
 */
export async function trainWithWorkers(
  flags: LaunchFlags,
  stop: GracefulStop,
): Promise<TrainSummary> {
  const gpus = planGpus({
    workers: flags.workers === undefined ? undefined : wholeNumber('--workers', flags.workers, 1),
    gpus: flags.gpus,
    backend: flags.backend,
  });
  const distributed = parseDistributedFlags(flags);
  const { config, runDir, resumeFrom } = await resolveDistributedConfig(flags, gpus.workers);
  // The coordinator only builds, fingerprints and exports the model: the GPUs stay the workers'.
  await initBackend('wasm');
  const token = randomBytes(16).toString('hex');
  let workers: LocalWorkers | undefined;
  stop.onForce(() => workers?.stop(0));
  const coordinator = await Coordinator.start({
    config,
    worldSize: gpus.workers,
    runDir,
    out: flags.out,
    resumeFrom,
    host: '127.0.0.1',
    port: 0,
    security: {
      token,
      tls: false,
      server: ServerCredentials.createInsecure(),
      channel: credentials.createInsecure(),
    },
    signal: stop.signal,
    ...distributed,
  });
  const specs = Array.from({ length: gpus.workers }, (_, rank) =>
    workerSpec(
      rank,
      coordinator.port,
      flags,
      config.model,
      // Workers that fetch their images get no folder to read them from.
      distributed.dataFrom === 'local' ? config.data.dataDir : undefined,
      distributed.joinTimeoutMs,
      token,
      gpus.devices?.[rank],
    ),
  );
  // Interrupted while the coordinator started: run() rejects at once, and no worker starts.
  if (stop.signal.aborted) await coordinator.run();
  workers = new LocalWorkers(specs, log());
  const started = workers;
  // A worker process that dies ends the run now (its rank named), not at a deadline.
  started.done.catch((error: Error) => coordinator.abort(error.message));
  let summary: TrainSummary;
  try {
    summary = await coordinator.run();
  } catch (error) {
    await started.stop(FAILED_STOP_GRACE_MS);
    throw error;
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>((r) => {
    timer = setTimeout(() => r('late'), EXIT_GRACE_MS);
  });
  const exited = await Promise.race([started.done.then(() => 'exited' as const), late]).finally(
    () => clearTimeout(timer),
  );
  if (exited === 'late') {
    await started.stop();
    throw new UserError(
      `the workers did not exit within ${EXIT_GRACE_MS / 1000} s after the run ended`,
      3,
    );
  }
  return { ...summary, workers: gpus.workers };
}

function workerSpec(
  rank: number,
  port: number,
  flags: LaunchFlags,
  model: string,
  dataDir: string | undefined,
  joinTimeoutMs: number,
  token: string,
  device: string | undefined,
): LocalWorkerSpec {
  const args = [
    'worker',
    '--coordinator',
    `127.0.0.1:${port}`,
    '--bind-host',
    '127.0.0.1',
    '--advertise-host',
    '127.0.0.1',
    '--peer-port',
    '0',
    '--rank',
    String(rank),
    '--model',
    model,
    '--backend',
    flags.backend,
    '--join-timeout',
    String(Math.ceil(joinTimeoutMs / 1000)),
  ];
  if (dataDir !== undefined) args.push('--data', resolve(dataDir));
  if (device !== undefined) args.push('--gpu');
  // The token travels in the environment (not visible in ps); token or TLS files the user's
  // environment may name must not compete with it (the coordinator here listens on loopback).
  const env: Record<string, string> = {
    TFJS_DDP_TOKEN: token,
    TFJS_DDP_TOKEN_FILE: '',
    TFJS_DDP_TLS_CERT: '',
    TFJS_DDP_TLS_KEY: '',
    TFJS_DDP_TLS_CA: '',
  };
  if (device !== undefined) {
    env.CUDA_VISIBLE_DEVICES = device;
    env.TF_FORCE_GPU_ALLOW_GROWTH = 'true';
  }
  return { rank, args, env };
}
