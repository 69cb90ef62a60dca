import { type ClientDuplexStream, type ServiceError, status } from '@grpc/grpc-js';
import {
  type ControlRequest,
  type ControlResponse,
  CoordinatorServiceClient,
  type FetchCheckpointResponse,
  type JoinRequest,
  type JoinResponse,
  type Split,
} from '../gen/tfjs_ddp/v1/coordinator.js';
import { IMAGE_BYTES, type LabeledImages } from '../shared/data/labeled-images.js';
import { credentialMetadata } from '../shared/distributed/call-authenticator.js';
import { type ReplicaState, StateAssembler } from '../shared/distributed/state-parts.js';
import { BackpressureWriter } from '../shared/transport/backpressure-writer.js';
import { channelOptions, DEFAULT_GRPC_SETTINGS } from '../shared/transport/grpc-settings.js';
import { CoordinatorError, CoordinatorLost, refusal } from './coordinator-errors.js';
import { type JoinOptions, joinCoordinator } from './join-coordinator.js';
import { StallWatch } from './stall-watch.js';

export type Command = NonNullable<ControlResponse['kind']>;
export type Report = NonNullable<ControlRequest['kind']>;

/**
 * A worker's connection to the coordinator: Join, then the Control stream (commands in,
 * reports out, in order, with backpressure), and the data and checkpoint requests of a joined
 * worker. Join carries the join token, every later call the credential Join issued.
 * Commands are handed out one at a time by next(); once the stream ends or fails,
 * next() rejects with an error saying so (after a StopCommand, the stream's end is expected).
 */
export class CoordinatorLink {
  private call: ClientDuplexStream<ControlRequest, ControlResponse> | undefined;
  private writer: BackpressureWriter<ControlRequest> | undefined;
  private readonly queue: Command[] = [];
  private waiting: { resolve: (c: Command) => void; reject: (e: Error) => void } | undefined;
  private ended: Error | undefined;
  private session = { rank: -1, sessionId: '' };
  /** Steps the coordinator has committed (CommitStep), counted from 0. */
  private committed = 0;
  /** The committed_steps of a Membership that arrived and was not handed out yet. */
  private abandonFrom: number | undefined;
  private readonly commitWaiters: {
    step: number;
    resolve: (commit: boolean) => void;
    reject: (error: Error) => void;
  }[] = [];
  /** Called as soon as a new Membership arrives, before the commands ahead of it are done. */
  onMembership: (() => void) | undefined;
  /** A Stop arrived: the stream's end that follows is expected, not a coordinator gone. */
  private stopped = false;
  /** How long this process stood still while its Control stream was open (see lostOrDropped). */
  private stalls: StallWatch | undefined;

  private constructor(
    private client: CoordinatorServiceClient,
    readonly address: string,
    private readonly opts: JoinOptions,
    /** Secret: JoinResponse.credential. */
    private readonly credential: string,
    private timeoutMs: number,
  ) {}

  /** Joins the coordinator at `address` (see joinCoordinator) and returns the link. */
  static async join(
    address: string,
    request: JoinRequest,
    opts: JoinOptions,
  ): Promise<{ link: CoordinatorLink; response: JoinResponse }> {
    const { client, response } = await joinCoordinator(address, request, opts);
    const link = new CoordinatorLink(
      client,
      address,
      opts,
      response.credential,
      opts.joinTimeoutMs,
    );
    return { link, response };
  }

  /**
   * Opens the Control stream as `rank` on a channel of its own; `timeoutMs` (the step timeout)
   * bounds every write and request from now on, and its keepalive: a step blocks this
   * process's event loop, so a ping's answer may wait that long to be read.
   */
  openControl(rank: number, sessionId: string, timeoutMs: number): void {
    this.session = { rank, sessionId };
    this.client.close();
    this.client = new CoordinatorServiceClient(
      this.address,
      this.opts.credentials,
      channelOptions({ ...DEFAULT_GRPC_SETTINGS, keepaliveTimeoutMs: timeoutMs }),
    );
    const call = this.client.control(credentialMetadata(this.credential));
    this.call = call;
    this.writer = new BackpressureWriter(call, `rank ${rank}`, 'the coordinator');
    this.timeoutMs = timeoutMs;
    call.on('data', (message: ControlResponse) => {
      if (message.kind) this.push(message.kind);
    });
    this.stalls = new StallWatch();
    call.on('error', (error: ServiceError) =>
      this.end(
        error.code === status.UNAVAILABLE
          ? this.lostOrDropped(
              `lost the coordinator at ${this.address}: ${error.details || error.message}`,
            )
          : refusal(error, `the control stream to the coordinator at ${this.address} failed`),
      ),
    );
    // A Stop comes before a deliberate end: an end without one is a coordinator gone.
    call.on('end', () =>
      this.end(this.lostOrDropped(`the coordinator at ${this.address} closed the control stream`)),
    );
    call.write({ kind: { $case: 'hello', value: { rank, sessionId } } });
  }

  /** Whether `error` is the end of the Control stream (a commit wait rejects with it). */
  endedWith(error: Error): boolean {
    return this.ended !== undefined && error === this.ended;
  }

  /** Whether the coordinator went away without a Stop (see CoordinatorLost). */
  get lost(): boolean {
    return this.ended instanceof CoordinatorLost && !this.stopped;
  }

  /** Steps the coordinator has committed (CommitStep or Membership) so far. */
  get committedSteps(): number {
    return this.committed;
  }

  /** Whether a new Membership arrived that next() has not handed out yet. */
  get membershipWaiting(): boolean {
    return this.abandonFrom !== undefined;
  }

  /**
   * Whether step `step` is committed (true) or abandoned by a new membership (false), once the
   * coordinator has said. Rejects when the control stream ends first.
   */
  commitOf(step: number): Promise<boolean> {
    if (step < this.committed) return Promise.resolve(true);
    if (this.abandonFrom !== undefined && step >= this.abandonFrom) return Promise.resolve(false);
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => this.commitWaiters.push({ step, resolve, reject }));
  }

  /** The next command, in order. */
  next(): Promise<Command> {
    const command = this.queue.shift();
    if (command?.$case === 'membership') this.abandonFrom = undefined;
    if (command) return Promise.resolve(command);
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
  }

  /**
   * Sends a report; resolves once it has left this process. The worker's next command
   * (often already queued) may be a step that blocks the event loop: a report still
   * buffered then would reach the coordinator a step late, and its plans with it.
   */
  async send(report: Report): Promise<void> {
    if (!this.writer) throw new Error('the control stream is not open');
    await this.writer.write({ kind: report }, this.timeoutMs);
    await this.writer.flushed(this.timeoutMs);
  }

  /** Image bytes and labels of `indices` of a split, from the coordinator (in that order). */
  async fetchSamples(split: Split, indices: readonly number[]): Promise<LabeledImages> {
    const answer = await new Promise<{ indices: number[]; pixels: Uint8Array; labels: Uint8Array }>(
      (resolve, reject) =>
        this.client.fetchSamples(
          { split, indices: [...indices] },
          credentialMetadata(this.credential),
          { deadline: Date.now() + this.timeoutMs },
          (error, response) =>
            error
              ? reject(refusal(error, 'FetchSamples from the coordinator failed'))
              : resolve(response),
        ),
    );
    const n = indices.length;
    if (answer.pixels.length !== n * IMAGE_BYTES || answer.labels.length !== n) {
      throw new CoordinatorError(
        `the coordinator sent ${answer.pixels.length} pixel bytes and ${answer.labels.length} labels for ${n} samples`,
      );
    }
    return { count: n, pixels: answer.pixels, labels: answer.labels };
  }

  /** The state the run resumes from (weights and optimiser state). */
  fetchCheckpoint(): Promise<ReplicaState> {
    const assembler = new StateAssembler('the coordinator', true);
    const call = this.client.fetchCheckpoint(
      { rank: this.session.rank, sessionId: this.session.sessionId },
      credentialMetadata(this.credential),
      { deadline: Date.now() + this.timeoutMs },
    );
    return new Promise((resolve, reject) => {
      call.on('data', (message: FetchCheckpointResponse) => {
        try {
          if (message.part) assembler.add(message.part);
        } catch (error) {
          call.cancel();
          reject(error);
        }
      });
      call.on('error', (error: ServiceError) => reject(refusal(error, 'FetchCheckpoint failed')));
      call.on('end', () => {
        if (assembler.complete) resolve(assembler.result());
        else
          reject(
            new CoordinatorError('the coordinator ended FetchCheckpoint before the whole state'),
          );
      });
    });
  }

  /** Half-closes the control stream and the channel. */
  close(): void {
    this.stalls?.stop();
    this.ended ??= new CoordinatorError('the link to the coordinator is closed');
    try {
      this.call?.end();
    } catch {
      // already gone
    }
    this.client.close();
  }

  /**
   * A Membership's credential is adopted as soon as the command arrives, before the session
   * gets to it: the ring neighbours whose Membership came first may be dialling already.
   */
  private push(command: Command): void {
    if (command.$case === 'stop') this.stopped = true;
    if (command.$case === 'commit') {
      this.committed = Math.max(this.committed, command.value.step + 1);
      this.settleCommits();
      return;
    }
    if (command.$case === 'membership') {
      this.opts.generationCredential.adopt(command.value.credential);
      // Everything queued before a new generation belongs to the old one: it is never done.
      this.queue.length = 0;
      this.committed = Math.max(this.committed, command.value.committedSteps);
      if (!this.waiting) this.abandonFrom = command.value.committedSteps;
      this.settleCommits();
      this.onMembership?.();
    }
    if (this.waiting) {
      const { resolve } = this.waiting;
      this.waiting = undefined;
      resolve(command);
    } else {
      this.queue.push(command);
    }
  }

  /** Answers the commit waits that the commits and memberships so far decide. */
  private settleCommits(): void {
    for (const waiter of [...this.commitWaiters]) {
      const abandoned = this.abandonFrom !== undefined && waiter.step >= this.abandonFrom;
      if (waiter.step >= this.committed && !abandoned) continue;
      this.commitWaiters.splice(this.commitWaiters.indexOf(waiter), 1);
      waiter.resolve(!abandoned);
    }
  }

  /**
   * The Control stream ended without a Stop: the coordinator is gone (CoordinatorLost: keep the
   * replica and ask to rejoin), unless this process stood still past the step timeout, in which
   * case the coordinator dropped it long ago (its Stop may have been lost with the connection)
   * and the replica is stale: the worker ends, and its supervisor starts a fresh one.
   */
  private lostOrDropped(message: string): CoordinatorError {
    const stalledMs = this.stalls?.longestMs ?? 0;
    if (stalledMs <= this.timeoutMs) return new CoordinatorLost(message);
    return new CoordinatorError(
      `${message}, after this process stood still for ${Math.round(stalledMs / 1000)} s (stopped, or starved of CPU), ` +
        `past the --step-timeout of ${this.timeoutMs / 1000} s: the coordinator has dropped it from the run`,
    );
  }

  private end(error: Error): void {
    if (this.ended) return;
    this.ended = error;
    // A held step is never applied without its commit, nor discarded without the news that it
    // was abandoned: the replica keeps it for the next coordinator (see restartPoint).
    for (const waiter of this.commitWaiters.splice(0)) waiter.reject(error);
    this.writer?.fail(error);
    if (this.waiting) {
      const { reject } = this.waiting;
      this.waiting = undefined;
      reject(error);
    }
  }
}
