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
import type { DataCursor } from '../shared/training/sampler.js';
import type { ChannelEvents, Command, ControlChannel } from './control-channel.js';
import {
  type ElasticLimits,
  MembershipChange,
  type MembershipRecord,
} from './membership-change.js';
import type { ReplicaGroup } from './replica-group.js';
import { RunFailure } from './run-failure.js';
import { formGeneration, reform } from './world-reform.js';

export interface WorkerGroupOptions {
  /** How long a worker may send nothing (the step timeout). */
  silenceTimeoutMs: number;
  allReduce: CollectiveName;
  /** The star all-reduce's reduction point, in the coordinator. */
  reduction: StarReductionService;
  /** Rotated for every generation and sent in its Membership (the ring's and the star's streams carry it). */
  generationCredential: GenerationCredential;
  limits: ElasticLimits;
  /** A worker is out of the group (lost, left, stopped): free its rank for another. */
  release(channel: ControlChannel): void;
}

/** How long a worker's report that its collective failed waits for a root cause (a lost worker). */
const REPORT_GRACE_MS = 1500;
const WATCH_PERIOD_MS = 1000;

/**
 * The worker processes of the running world as a ReplicaGroup: commands go out on the control
 * channels of the current generation's members (by position), results come back in their
 * mailboxes. Every wait goes through all(), which rejects as soon as the run fails (RunFailure)
 * or the generation ends (MembershipChange): a member disconnects, reports that it fails, sends
 * nothing for `silenceTimeoutMs` (the step timeout: a step blocks a worker's event loop), or
 * says its collective failed with no lost worker to explain it (after a short grace, since it
 * is usually the echo of a death, and the death names the culprit).
 *
 * The commit rule: step() resolves once every member has reduced the step, and only then sends
 * every member its CommitStep, synchronously, so that the group's committedSteps and what the
 * workers are told never disagree. Joiners wait in `joiners` until reform() takes them in.
 */
export class WorkerGroup implements ReplicaGroup, ChannelEvents {
  /** The current generation's members, in collective order. */
  members: ControlChannel[] = [];
  /** Attached workers waiting for the next step boundary. */
  readonly joiners: ControlChannel[] = [];
  generation = 0;
  committedSteps = 0;
  private restarts = 0;
  private failure: RunFailure | undefined;
  private readonly failed: Promise<never>;
  private rejectFailed!: (error: RunFailure) => void;
  /** How the current generation ended, once it has. */
  private change: MembershipChange | undefined;
  private ended!: Promise<never>;
  private endGeneration!: (change: MembershipChange) => void;
  /** Ranks lost since the last reform, and when the first loss was seen. */
  private readonly lostRanks: number[] = [];
  private changeSince = 0;
  private reportTimer: NodeJS.Timeout | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  private wakeJoinWait: (() => void) | undefined;

  constructor(private readonly opts: WorkerGroupOptions) {
    this.failed = new Promise<never>((_, reject) => {
      this.rejectFailed = reject;
    });
    this.failed.catch(() => undefined);
    this.newGeneration();
  }

  /** Every channel the group holds: members and joiners. */
  get channels(): ControlChannel[] {
    return [...this.members, ...this.joiners];
  }

  get size(): number {
    return this.members.length;
  }

  get backend(): string {
    return [...new Set(this.members.map((c) => c.admission.device?.backend ?? 'unknown'))].join(
      ',',
    );
  }

  /** Workers wait to join (and there is room) or announced that they leave. */
  get changePending(): boolean {
    const room = this.members.length < this.opts.limits.maxWorkers;
    return (room && this.joiners.length > 0) || this.members.some((c) => c.leavingReason);
  }

  async initialize(
    fromCheckpoint: boolean,
    startStep: number,
    keepHeldState = false,
  ): Promise<string[]> {
    this.committedSteps = startStep;
    await formGeneration(this, this.members, startStep, 'connecting to the other workers');
    await this.send(
      () => ({
        $case: 'initializeWeights',
        value: { rootRank: 0, fromCheckpoint: fromCheckpoint && !keepHeldState, keepHeldState },
      }),
      keepHeldState
        ? 'fingerprinting the state it kept'
        : fromCheckpoint
          ? 'loading the checkpoint'
          : "receiving rank 0's initial weights",
    );
    const fingerprints = await this.all((c) => c.fingerprint(startStep));
    for (const c of this.members) c.hasState = true;
    return fingerprints;
  }

  step(step: number, planFor: (position: number) => StepPlan): Promise<StepMetrics[]> {
    return this.send(
      (_c, position) => ({ $case: 'stepPlan', value: planFor(position) }),
      `training step ${step + 1}`,
    )
      .then(() => this.all((c) => c.stepMetrics(step)))
      .then((metrics) => {
        // Every member reduced the step: commit it, unless the generation ended meanwhile.
        if (this.change) throw this.change;
        this.committedSteps = step + 1;
        for (const c of this.members) {
          c.send({ $case: 'commit', value: { step } }).catch(() => undefined);
        }
        return metrics;
      });
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
    shardFor: (position: number) => number[],
  ): Promise<EvaluationMetrics[]> {
    return this.send(
      (_c, position) => ({
        $case: 'evaluate',
        value: {
          evaluationId,
          step,
          split: Split.SPLIT_VAL,
          sampleIndices: shardFor(position),
          averageBatchNormStats: true,
        },
      }),
      `evaluating after step ${step}`,
    ).then(() => this.all((c) => c.evaluation(evaluationId)));
  }

  /**
   * The state of the member at position 0 after `step` steps (BatchNorm statistics averaged over
   * the members first when `average`: every member is sent the command; otherwise only the
   * sender is, and nothing is collective).
   */
  async state(step: number, checkpointId: number, average = true): Promise<Required<ReplicaState>> {
    const sender = this.members[0];
    const state = sender.expectState(checkpointId, true);
    state.catch(() => undefined);
    const command: Command = {
      $case: 'checkpoint',
      value: {
        checkpointId,
        step,
        senderRank: 0,
        averageBatchNormStats: average,
        includeOptimizerState: true,
      },
    };
    const activity = `preparing the checkpoint after step ${step}`;
    await this.all((c) =>
      average || c === sender ? c.send(command, activity) : Promise.resolve(),
    );
    const [result] = await this.all((c) => (c === sender ? state : Promise.resolve(undefined)));
    const { weights, optimizer } = result as ReplicaState;
    if (!optimizer) throw new RunFailure(`${sender.label} sent no optimizer state`);
    return { weights, optimizer };
  }

  /**
   * Forms the next generation at step `step` (every step before it committed): without the
   * lost and leaving workers, with the joiners (they receive a member's state and `cursor`).
   * Pauses for joins below --min-workers (BelowMinimum once --rejoin-timeout passes). Rejects
   * with RunFailure past --max-restarts, MembershipChange when the new generation fails too.
   */
  async reform(step: number, cursor: DataCursor): Promise<MembershipRecord> {
    return reform(this, step, cursor);
  }

  /** Called by reform(): the losses since the last reform, counted against --max-restarts. */
  takeLosses(): { change: MembershipChange | undefined; lost: number[]; since: number } {
    const taken = { change: this.change, lost: this.lostRanks.splice(0), since: this.changeSince };
    if (taken.change) {
      const failure = this.countRestart(taken.change.why);
      if (failure) throw failure;
    }
    this.changeSince = 0;
    return taken;
  }

  /**
   * A worker admitted into the running job was lost before a step boundary took it in (it
   * died after its Join, or after opening its Control stream): a crash loop, which counts
   * against --max-restarts like a lost member.
   */
  lostBeforeAdmission(why: string): void {
    const failure = this.countRestart(`${why} before it was admitted`);
    if (failure) this.fail(failure);
  }

  /** Counts one more membership change; past --max-restarts, the run's failure. */
  private countRestart(why: string): RunFailure | undefined {
    this.restarts++;
    const max = this.opts.limits.maxRestarts;
    if (this.restarts <= max) return undefined;
    return new RunFailure(
      max === 0
        ? `${why} (the run does not survive a lost worker: --max-restarts is 0)`
        : `${why}; that is membership change ${this.restarts}, over --max-restarts ${max}`,
    );
  }

  /**
   * Called by formGeneration(): `members` are the new generation's. Returns its number and its
   * credential (a fresh one: the previous generation's streams are refused from now on).
   */
  startGeneration(members: ControlChannel[]): { generation: number; credential: string } {
    const credential = this.opts.generationCredential.rotate();
    this.generation++;
    this.members = members;
    this.newGeneration();
    const change = new MembershipChange(`generation ${this.generation} replaced it`, []);
    for (const c of members) c.startGeneration(this.generation, change);
    if (this.opts.allReduce === 'star') {
      this.opts.reduction.startGeneration(this.generation, members.length);
    }
    return { generation: this.generation, credential };
  }

  /** Waits until `count` joiners wait or `deadline` (ms since the epoch) passes. */
  async joinersAtLeast(count: number, deadline: number): Promise<void> {
    while (this.joiners.length < count && Date.now() < deadline && !this.failure) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.wakeJoinWait = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    if (this.failure) throw this.failure;
  }

  get limits(): ElasticLimits {
    return this.opts.limits;
  }

  /** Takes a worker out of the group for good (it left, or is released): its rank is free. */
  release(channel: ControlChannel, stopWith: string | undefined): void {
    this.members = this.members.filter((c) => c !== channel);
    const at = this.joiners.indexOf(channel);
    if (at >= 0) this.joiners.splice(at, 1);
    if (stopWith !== undefined) channel.stop(stopWith);
    this.opts.release(channel);
  }

  /** A member lost in the current generation, not yet handled by reform(): the run's failure it would be. */
  get lossInProgress(): RunFailure | undefined {
    return this.change && this.lostRanks.length > 0 ? new RunFailure(this.change.why) : undefined;
  }

  /** The run's failure, once it has one. */
  get error(): RunFailure | undefined {
    return this.failure;
  }

  /** The initial world's channel (before initialize). */
  add(channel: ControlChannel): void {
    this.members.push(channel);
    this.members.sort((a, b) => a.rank - b.rank);
  }

  /** A worker attached to the running job: it joins at the next step boundary. */
  arrived(channel: ControlChannel): void {
    this.joiners.push(channel);
    log().info(
      { rank: channel.rank },
      `${channel.label} is waiting to join; it is admitted at the next step boundary`,
    );
    this.wakeJoinWait?.();
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
          const why = `${c.label} sent nothing for ${Math.round((now - c.lastHeard) / 1000)} s (the --step-timeout is ${this.opts.silenceTimeoutMs / 1000} s) while ${c.activity}`;
          this.lose(c, why, why);
        }
      }
    }, WATCH_PERIOD_MS);
    this.watchTimer.unref();
  }

  /** fn applied to every member, in parallel; rejects as soon as the run fails or the generation ends. */
  all<T>(fn: (channel: ControlChannel, position: number) => Promise<T>): Promise<T[]> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.change) return Promise.reject(this.change);
    const work = Promise.all(this.members.map(fn));
    // Rejections after the run failed or the generation ended are the same failure.
    work.catch(() => undefined);
    return Promise.race([work, this.failed, this.ended]);
  }

  /** Sends each member its command (`commandFor` may give each its own). */
  send(
    commandFor: (channel: ControlChannel, position: number) => Command,
    activity?: string,
  ): Promise<void> {
    return this.all((c, position) => c.send(commandFor(c, position), activity)).then(
      () => undefined,
    );
  }

  /** Fails the run now with `error` (the first failure wins). */
  fail(error: RunFailure): void {
    if (this.failure) return;
    this.failure = error;
    clearTimeout(this.reportTimer);
    for (const c of this.channels) c?.fail(error);
    this.rejectFailed(error);
    this.wakeJoinWait?.();
  }

  lost(channel: ControlChannel, error: RunFailure): void {
    this.lose(channel, error.message);
  }

  broken(_channel: ControlChannel, error: RunFailure): void {
    this.fail(error);
  }

  /** The worker is about to exit with this error: it is lost. */
  reported(channel: ControlChannel, message: string): void {
    this.lose(channel, `${channel.label} failed: ${message}`, message);
  }

  generationFailed(channel: ControlChannel, message: string): void {
    log().warn({ rank: channel.rank }, `${channel.label}: its collective failed: ${message}`);
    if (this.change || this.reportTimer || !this.members.includes(channel)) return;
    this.reportTimer = setTimeout(() => {
      this.reportTimer = undefined;
      this.endWith(new MembershipChange(`${channel.label}: its collective failed: ${message}`, []));
    }, REPORT_GRACE_MS);
  }

  leaving(channel: ControlChannel, reason: string): void {
    log().info(
      { rank: channel.rank },
      `${channel.label} leaves (${reason}) at the next step boundary`,
    );
  }

  /** Ends every stream with a StopCommand (`error` empty: the run completed) and stops watching. */
  stop(error: string): void {
    clearInterval(this.watchTimer);
    clearTimeout(this.reportTimer);
    for (const c of this.channels) c?.stop(error);
  }

  /**
   * A worker is gone (`why`, for the run's record); `stopWith`, when given, is told to it (it
   * may still be alive: stalled, or failing). A member's loss ends the generation.
   */
  private lose(channel: ControlChannel, why: string, stopWith?: string): void {
    const member = this.members.includes(channel);
    if (!member && !this.joiners.includes(channel)) return;
    this.release(channel, stopWith);
    if (!member) {
      log().warn({ rank: channel.rank }, `${why} before it was admitted`);
      this.lostBeforeAdmission(why);
      return;
    }
    if (channel.leavingReason !== undefined) {
      why = `${channel.label} left (${channel.leavingReason}) during a step`;
    }
    this.lostRanks.push(channel.rank);
    this.endWith(new MembershipChange(why, [channel.rank]));
  }

  /** Ends the current generation (the first cause is the one told). */
  private endWith(change: MembershipChange): void {
    if (this.failure) return;
    clearTimeout(this.reportTimer);
    this.reportTimer = undefined;
    this.changeSince ||= Date.now();
    if (this.change) return;
    this.change = change;
    this.endGeneration(change);
  }

  private newGeneration(): void {
    this.change = undefined;
    this.ended = new Promise<never>((_, reject) => {
      this.endGeneration = reject;
    });
    this.ended.catch(() => undefined);
  }
}
