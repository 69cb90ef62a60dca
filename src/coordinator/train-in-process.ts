import { hostname } from 'node:os';
import type { TrainConfig } from '../shared/config/train-config.js';
import { inMemorySamples } from '../shared/data/sample-source.js';
import { log } from '../shared/logging/logger.js';
import type { Checkpoint } from '../shared/training/checkpoint.js';
import { Replica } from '../shared/training/replica.js';
import { InProcessGroup } from './in-process-group.js';
import { nowMs } from './observe/run-events.js';
import { type ObserveSettings, RunObservers } from './observe/run-observers.js';
import { prepareRun } from './prepared-run.js';
import { type TrainSummary, trainWorld } from './train-world.js';

export interface InProcessTrainingOptions {
  config: TrainConfig;
  /** The backend already initialised (initBackend), for the summary. */
  backend: string;
  /**
   * The run folder: for a resumed run, the one its checkpoint is in; absent for a new run, which
   * gets `out` (or a new folder under runs/).
   */
  runDir?: string;
  out?: string;
  /** Continue from this checkpoint (its config must be `config` up to the run length). */
  resumeFrom?: Checkpoint;
  checkpointEvery?: number;
  /** Once aborted (reason: the signal's name), the run stops after the current step. */
  signal?: AbortSignal;
  /** The dashboard, /metrics and the trace; absent: none of them. */
  observe?: ObserveSettings;
}

/**
 * `train` without --workers: a world of one, trained by the same loop, replica and step as a
 * world of N (trainWorld), its one replica in this process (InProcessGroup) training the
 * coordinator's own model in place. Rejects like trainWorld (TrainingInterrupted after a
 * signal, once checkpointed).
 */
export async function trainInProcess(opts: InProcessTrainingOptions): Promise<TrainSummary> {
  const { config, resumeFrom } = opts;
  const prepared = await prepareRun({
    config,
    worldSize: 1,
    runDir: opts.runDir,
    out: opts.out,
    resumeFrom,
  });
  const replica = new Replica(
    prepared.model,
    { train: config, compression: 'none', firstBucketBytes: 0, bucketBytes: 0, overlap: false },
    Promise.resolve(inMemorySamples(prepared.data, config)),
  );
  const observers = await RunObservers.start(
    opts.observe ?? { httpPort: 0, httpHost: '127.0.0.1' },
  );
  if (observers.url) log().info({ dashboard: observers.url }, `dashboard: ${observers.url}`);
  observers.clocks.sameHost(0);
  observers.events.emit({
    type: 'worker',
    time: nowMs(),
    rank: 0,
    state: 'joined',
    host: hostname(),
    device: 'this process',
    backend: opts.backend,
  });
  let outcome: 'completed' | 'interrupted' | 'failed' = 'failed';
  try {
    const checkpoint = resumeFrom && {
      weights: resumeFrom.weights,
      optimizer: resumeFrom.optimizer,
    };
    const summary = await trainWorld(
      {
        config,
        prepared,
        resumeFrom,
        checkpointEvery: opts.checkpointEvery,
        // One replica has nothing to disagree with.
        fingerprintEvery: 0,
        signal: opts.signal,
        observers,
      },
      new InProcessGroup(replica, opts.backend, checkpoint),
    );
    outcome = 'completed';
    return summary;
  } catch (error) {
    if (opts.signal?.aborted) outcome = 'interrupted';
    throw error;
  } finally {
    observers.events.emit({ type: 'run-ended', time: nowMs(), outcome });
    await observers.close();
    replica.dispose();
    prepared.model.dispose();
  }
}
