import type * as tfl from '@tensorflow/tfjs-layers';
import type { SampleSource } from '../shared/data/sample-source.js';
import type { RunSettings } from '../shared/distributed/run-settings.js';
import { UserError } from '../shared/errors.js';
import { architectureFingerprint, buildModel } from '../shared/models/zoo.js';
import { Replica } from '../shared/training/replica.js';
import { weightsFingerprint } from '../shared/training/weights-fingerprint.js';
import type { CoordinatorLink } from './coordinator-link.js';
import { fetchedSamples, localSamples } from './sample-source.js';

/** What a worker that kept its replica tells a restarted coordinator at Join. */
export interface HeldState {
  heldSteps: number;
  heldFingerprint: string;
  heldReducedStep: boolean;
}

/**
 * A worker's model and replica, built from the first coordinator's run settings and kept when
 * that coordinator goes away (see runWorker): its weights, optimiser state, BatchNorm
 * statistics and step count outlive the link, whose replacement is set with `link`.
 */
export class WorkerReplica {
  /** The coordinator the replica answers to now (its commits, its samples). */
  link: CoordinatorLink;
  /** What the replica is doing, for the heartbeats of the current session. */
  activity: (activity: string) => void = () => undefined;

  private constructor(
    private readonly model: tfl.LayersModel,
    readonly replica: Replica,
    link: CoordinatorLink,
  ) {
    this.link = link;
  }

  /**
   * Builds the model the coordinator names (refusing one of another architecture) and the
   * replica, reading its samples locally or from the coordinator.
   */
  static build(settings: RunSettings, link: CoordinatorLink, dataDir?: string): WorkerReplica {
    const model = buildModel(settings.train.model, { seed: settings.train.seed });
    if (architectureFingerprint(model) !== settings.architecture) {
      model.dispose();
      throw new UserError(
        `this worker's build of ${settings.train.model} has another architecture than the coordinator's (different tfjs-ddp releases?)`,
      );
    }
    let kept: WorkerReplica | undefined;
    const samples: Promise<SampleSource> =
      settings.dataFrom === 'coordinator'
        ? Promise.resolve(
            fetchedSamples(settings, (split, ids) =>
              (kept as WorkerReplica).link.fetchSamples(split, ids),
            ),
          )
        : localSamples(settings, dataDir);
    // Awaited by the first step; failing to load must not count as unhandled before then.
    samples.catch(() => undefined);
    const replica = new Replica(
      model,
      settings,
      samples,
      (activity) => kept?.activity(activity),
      (step) => (kept as WorkerReplica).link.commitOf(step),
    );
    replica.committedSteps = settings.startStep;
    kept = new WorkerReplica(model, replica, link);
    return kept;
  }

  /**
   * The coordinator is gone: a step held for its commit is applied when the coordinator had
   * committed it; one it had not stays held, for the next coordinator to decide (restartPoint).
   */
  settleAfterLoss(): void {
    this.replica.applyIfCommitted(this.link.committedSteps);
  }

  /**
   * The committed steps and the fingerprint of the trainable weights (BatchNorm statistics
   * differ between ranks until they are averaged, so they are left out), and whether the
   * next step's reduced gradient is held.
   */
  held(): HeldState {
    const { trainStep } = this.replica;
    const trainable = trainStep.getWeights().subarray(0, trainStep.trainableLayout.size);
    return {
      heldSteps: this.replica.committedSteps,
      heldFingerprint: weightsFingerprint(trainable),
      heldReducedStep: this.replica.holdsReducedStep,
    };
  }

  dispose(): void {
    this.replica.dispose();
    this.model.dispose();
  }
}
