import {
  type EvaluationMetrics,
  Split,
  type StepMetrics,
  type StepPlan,
} from '../gen/tfjs_ddp/v1/coordinator.js';
import type { CollectiveName } from '../shared/collectives/create-collective.js';
import type { StarReductionService } from '../shared/collectives/star-reduction-service.js';
import type { GenerationCredential } from '../shared/distributed/call-authenticator.js';
import type { ReplicaState } from '../shared/distributed/state-parts.js';
import { log } from '../shared/logging/logger.js';
import type { ChannelEvents, Command, ControlChannel } from './control-channel.js';
import type { ReplicaGroup } from './replica-group.js';
import { RunFailure } from './run-failure.js';

export interface WorkerGroupOptions {
  /** How long a worker may send nothing (the step timeout). */
  silenceTimeoutMs: number;
  allReduce: CollectiveName;
  /** The star all-reduce's reduction point, in the coordinator. */
  reduction: StarReductionService;
  /** Rotated for every generation and sent in its Membership (the ring's and the star's streams carry it). */
  generationCredential: GenerationCredential;
}

/** How long a worker's own failure report waits for a root cause (another worker lost) to arrive. */
const REPORT_GRACE_MS = 1500;
const WATCH_PERIOD_MS = 1000;

/**
 * The worker processes of the running world as a ReplicaGroup: commands go out on their
 * control channels (by rank), results come back in their mailboxes. Every wait
 * of the coordinator goes through all(), which rejects as soon as the run fails; the run fails
 * when a worker disconnects, breaks the protocol, reports an error, or sends nothing for
 * `silenceTimeoutMs` (the step timeout: a step blocks a worker's event loop, so it may be
 * silent for as long as its longest step). The first failure wins; a worker's report of its own
 * failure waits briefly, because it is usually the echo of another worker's death, and the
 * death names the culprit.
 */
export class WorkerGroup implements ReplicaGroup, ChannelEvents {
  readonly channels: ControlChannel[] = [];
  private failure: RunFailure | undefined;
  private readonly failed: Promise<never>;
  private rejectFailed!: (error: RunFailure) => void;
  private reportTimer: NodeJS.Timeout | undefined;
  private watchTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: WorkerGroupOptions) {
    this.failed = new Promise<never>((_, reject) => {
      this.rejectFailed = reject;
    });
    this.failed.catch(() => undefined);
  }

  get size(): number {
    return this.channels.length;
  }

  get backend(): string {
    return [...new Set(this.channels.map((c) => c.admission.device?.backend ?? 'unknown'))].join(
      ',',
    );
  }

  async initialize(fromCheckpoint: boolean, startStep: number): Promise<string[]> {
    const world = this.channels.map((c) => c.admission);
    const credential = this.opts.generationCredential.rotate();
    if (this.opts.allReduce === 'star') this.opts.reduction.startGeneration(1, world.length);
    await this.send(
      () => ({
        $case: 'membership',
        value: {
          generation: 1,
          worldSize: world.length,
          peers: world.map((a) => ({ rank: a.rank, address: a.peerAddress, device: a.device })),
          credential,
        },
      }),
      'connecting to the other workers',
    );
    await this.send(
      () => ({ $case: 'initializeWeights', value: { rootRank: 0, fromCheckpoint } }),
      fromCheckpoint ? 'loading the checkpoint' : "receiving rank 0's initial weights",
    );
    return this.all((c) => c.fingerprint(startStep));
  }

  step(step: number, planFor: (rank: number) => StepPlan): Promise<StepMetrics[]> {
    return this.send(
      (c) => ({ $case: 'stepPlan', value: planFor(c.rank) }),
      `training step ${step + 1}`,
    ).then(() => this.all((c) => c.stepMetrics(step)));
  }

  fingerprints(step: number): Promise<string[]> {
    return this.send(
      () => ({ $case: 'fingerprint', value: { step } }),
      `fingerprinting its weights after step ${step}`,
    ).then(() => this.all((c) => c.fingerprint(step)));
  }

  evaluate(
    step: number,
    evaluationId: number,
    shardFor: (rank: number) => number[],
  ): Promise<EvaluationMetrics[]> {
    return this.send(
      (c) => ({
        $case: 'evaluate',
        value: {
          evaluationId,
          step,
          split: Split.SPLIT_VAL,
          sampleIndices: shardFor(c.rank),
          averageBatchNormStats: true,
        },
      }),
      `evaluating after step ${step}`,
    ).then(() => this.all((c) => c.evaluation(evaluationId)));
  }

  async state(step: number, checkpointId: number): Promise<Required<ReplicaState>> {
    const sender = this.channels[0];
    const state = sender.expectState(checkpointId, true);
    state.catch(() => undefined);
    await this.send(
      () => ({
        $case: 'checkpoint',
        value: {
          checkpointId,
          step,
          senderRank: 0,
          averageBatchNormStats: true,
          includeOptimizerState: true,
        },
      }),
      `preparing the checkpoint after step ${step}`,
    );
    const [result] = await this.all((c) => (c === sender ? state : Promise.resolve(undefined)));
    const { weights, optimizer } = result as ReplicaState;
    if (!optimizer) throw new RunFailure('rank 0 sent no optimizer state for the checkpoint');
    return { weights, optimizer };
  }

  /** The run's failure, once it has one. */
  get error(): RunFailure | undefined {
    return this.failure;
  }

  add(channel: ControlChannel): void {
    this.channels[channel.rank] = channel;
  }

  /** Starts watching for silent workers. */
  watch(): void {
    let lastCheck = Date.now();
    this.watchTimer = setInterval(() => {
      const now = Date.now();
      // After this process was busy (a checkpoint, an export), messages that arrived meanwhile
      // are still unread: judge silence on the next round, once they have been.
      const late = now - lastCheck > 2 * WATCH_PERIOD_MS;
      lastCheck = now;
      if (late) return;
      for (const c of this.channels) {
        if (now - c.lastHeard > this.opts.silenceTimeoutMs) {
          this.fail(
            new RunFailure(
              `${c.label} sent nothing for ${Math.round((now - c.lastHeard) / 1000)} s (the --step-timeout is ${this.opts.silenceTimeoutMs / 1000} s) while ${c.activity}`,
            ),
          );
          return;
        }
      }
    }, WATCH_PERIOD_MS);
    this.watchTimer.unref();
  }

  /** fn applied to every channel, in parallel; rejects with the run's failure as soon as there is one. */
  all<T>(fn: (channel: ControlChannel) => Promise<T>): Promise<T[]> {
    if (this.failure) return Promise.reject(this.failure);
    const work = Promise.all(this.channels.map(fn));
    // Rejections after the run failed are the same failure.
    work.catch(() => undefined);
    return Promise.race([work, this.failed]);
  }

  /** Sends each rank its command (`commandFor` may give each its own). */
  private send(commandFor: (channel: ControlChannel) => Command, activity?: string): Promise<void> {
    return this.all((c) => c.send(commandFor(c), activity)).then(() => undefined);
  }

  /** Fails the run now with `error` (the first failure wins). */
  fail(error: RunFailure): void {
    if (this.failure) return;
    this.failure = error;
    clearTimeout(this.reportTimer);
    for (const c of this.channels) c?.fail(error);
    this.rejectFailed(error);
  }

  lost(_channel: ControlChannel, error: RunFailure): void {
    this.fail(error);
  }

  broken(_channel: ControlChannel, error: RunFailure): void {
    this.fail(error);
  }

  reported(channel: ControlChannel, message: string): void {
    log().warn({ rank: channel.rank }, `${channel.label} failed: ${message}`);
    if (this.failure || this.reportTimer) return;
    this.reportTimer = setTimeout(
      () => this.fail(new RunFailure(`${channel.label} failed: ${message}`)),
      REPORT_GRACE_MS,
    );
  }

  /** Ends every stream with a StopCommand (`error` empty: the run completed) and stops watching. */
  stop(error: string): void {
    clearInterval(this.watchTimer);
    clearTimeout(this.reportTimer);
    for (const c of this.channels) c?.stop(error);
  }
}
