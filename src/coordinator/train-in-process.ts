import type { TrainConfig } from '../shared/config/train-config.js';
import { inMemorySamples } from '../shared/data/sample-source.js';
import type { Checkpoint } from '../shared/training/checkpoint.js';
import { Replica } from '../shared/training/replica.js';
import { InProcessGroup } from './in-process-group.js';
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
    { train: config, compression: 'none', firstBucketBytes: 0, bucketBytes: 0 },
    Promise.resolve(inMemorySamples(prepared.data, config)),
  );
  try {
    const checkpoint = resumeFrom && {
      weights: resumeFrom.weights,
      optimizer: resumeFrom.optimizer,
    };
    return await trainWorld(
      {
        config,
        prepared,
        resumeFrom,
        checkpointEvery: opts.checkpointEvery,
        // One replica has nothing to disagree with.
        fingerprintEvery: 0,
        signal: opts.signal,
      },
      new InProcessGroup(replica, opts.backend, checkpoint),
    );
  } finally {
    replica.dispose();
    prepared.model.dispose();
  }
}
