import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { credentials, ServerCredentials } from '@grpc/grpc-js';
import { initBackend } from '../shared/backend/select-backend.js';
import type { TrainConfig } from '../shared/config/train-config.js';
import { UserError } from '../shared/errors.js';
import { log } from '../shared/logging/logger.js';
import type { GracefulStop } from '../shared/process/graceful-stop.js';
import type { Checkpoint } from '../shared/training/checkpoint.js';
import { Coordinator } from './coordinator.js';
import type { DistributedSettings } from './distributed-config.js';
import type { GpuPlan } from './gpu-plan.js';
import { type LocalWorkerSpec, LocalWorkers } from './local-workers.js';
import type { ObserveSettings } from './observe/run-observers.js';
import type { TrainSummary } from './train-world.js';

/** What `train --workers` runs, parsed and resolved by the CLI. */
export interface LaunchSettings extends DistributedSettings {
  /** The run's configuration; `batchSize` is the global batch. */
  config: TrainConfig;
  runDir: string;
  resumeFrom?: Checkpoint;
  /** How many workers, and the GPU of each. */
  gpus: GpuPlan;
  /** The workers' backend request (auto, tensorflow, wasm, cpu). */
  backend: string;
  /** The dashboard, /metrics and the trace. */
  observe?: ObserveSettings;
}

/** How long workers may take to exit after the run's Stop. */
const EXIT_GRACE_MS = 15_000;
/** After a failure: how long a worker may take to exit on SIGTERM before it is killed. */
const FAILED_STOP_GRACE_MS = 2000;

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
  settings: LaunchSettings,
  stop: GracefulStop,
): Promise<TrainSummary> {
  const { config, runDir, resumeFrom, gpus, backend, ...distributed } = settings;
  // The coordinator only builds, fingerprints and exports the model: the GPUs stay the workers'.
  await initBackend('wasm');
  const token = randomBytes(16).toString('hex');
  let workers: LocalWorkers | undefined;
  stop.onForce(() => workers?.stop(0));
  const coordinator = await Coordinator.start({
    config,
    worldSize: gpus.workers,
    runDir,
    resumeFrom,
    host: '127.0.0.1',
    port: 0,
    security: {
      token,
      tls: false,
      pem: undefined,
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
      backend,
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
  workers = new LocalWorkers(specs, log(), undefined, distributed.maxRestarts);
  const started = workers;
  // A worker process that dies beyond --max-restarts ends the run now (its rank named), not at
  // a deadline; within them, it is started again and rejoins the running job.
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
  backend: string,
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
    backend,
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
