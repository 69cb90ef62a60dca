import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import {
  type EvaluationMetrics,
  Split,
  type StepMetrics,
  type StepPlan,
} from '../gen/tfjs_ddp/v1/coordinator.js';
import { createInMemoryCollectives } from '../shared/collectives/in-memory-collectives.js';
import type { ReplicaState } from '../shared/distributed/state-parts.js';
import type { Replica } from '../shared/training/replica.js';
import type { ReplicaGroup } from './replica-group.js';

/**
 * A world of one in the coordinator's process (`train` without --workers): its one replica
 * executes the loop's commands directly, in call order, with a world-size-1 collective (whose
 * operations complete at once: no sockets, no copies). Everything else, from the sampler to
 * the skip policy, is the distributed run's.
 */
export class InProcessGroup implements ReplicaGroup {
  readonly size = 1;
  readonly changePending = false;
  /** The end of the queue of commands: the replica runs one at a time, in call order. */
  private tail: Promise<unknown> = Promise.resolve();
  private completed = 0;

  constructor(
    private readonly replica: Replica,
    readonly backend: string,
    /** The resumed run's state (initialize with fromCheckpoint). */
    private readonly checkpoint?: ReplicaState,
  ) {
    // A world of one never waits on a peer or cuts chunks: the tuning is never used.
    const { collectives } = createInMemoryCollectives('ring', 1, {
      timeoutMs: 60_000,
      chunkBytes: 1024 * 1024,
    });
    replica.useCollective(collectives[0]);
  }

  async initialize(fromCheckpoint: boolean, startStep: number): Promise<string[]> {
    this.completed = startStep;
    const fingerprint = await this.run(() =>
      this.replica.initialize(fromCheckpoint, 0, async () => {
        if (!this.checkpoint) throw new Error('no checkpoint to resume from was given');
        return this.checkpoint;
      }),
    );
    return [fingerprint];
  }

  /** A world of one commits every step it completes (its replica applies it at the next command). */
  get committedSteps(): number {
    return this.completed;
  }

  async step(step: number, planFor: (rank: number) => StepPlan): Promise<StepMetrics[]> {
    const plan = planFor(0);
    const metrics = await this.run(() => this.replica.step(plan));
    this.completed = step + 1;
    return [metrics];
  }

  reform(): Promise<never> {
    return Promise.reject(new Error('a world of one has no membership to change'));
  }

  async fingerprints(step: number): Promise<string[]> {
    return [await this.run(() => this.replica.fingerprint(step))];
  }

  async evaluate(
    step: number,
    evaluationId: number,
    shardFor: (rank: number) => number[],
  ): Promise<EvaluationMetrics[]> {
    const sampleIndices = shardFor(0);
    const command = {
      evaluationId,
      step,
      split: Split.SPLIT_VAL,
      sampleIndices,
      averageBatchNormStats: true,
    };
    return [await this.run(() => this.replica.evaluate(command))];
  }

  async state(step: number, checkpointId: number): Promise<Required<ReplicaState>> {
    const command = {
      checkpointId,
      step,
      senderRank: 0,
      averageBatchNormStats: true,
      includeOptimizerState: true,
    };
    // The sender, asked for its optimiser state: both are there.
    return (await this.run(() => this.replica.checkpoint(command))) as Required<ReplicaState>;
  }

  /**
   * Queues `command` after the previous ones. A step blocks the event loop from start to end
   * (a world of one never waits on a socket), so each command ends with a turn of the event
   * loop: signals (SIGINT stops after this step) and timers get their chance.
   */
  private run<T>(command: () => Promise<T>): Promise<T> {
    const result = this.tail.then(async () => {
      const value = await command();
      await yieldToEventLoop();
      return value;
    });
    this.tail = result.catch(() => undefined);
    return result;
  }
}
