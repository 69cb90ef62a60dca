import type { ServerDuplexStream } from '@grpc/grpc-js';
import type {
  ControlRequest,
  ControlResponse,
  EvaluationMetrics,
  StatePart,
  StepMetrics,
} from '../gen/tfjs_ddp/v1/coordinator.js';
import { type ReplicaState, StateAssembler } from '../shared/distributed/state-parts.js';
import { BackpressureWriter } from '../shared/transport/backpressure-writer.js';
import { Mailbox } from './mailbox.js';
import type { Admission } from './membership.js';
import { RunFailure } from './run-failure.js';

export type ControlCall = ServerDuplexStream<ControlRequest, ControlResponse>;
export type Command = NonNullable<ControlResponse['kind']>;

/** How a channel tells its group about trouble. */
export interface ChannelEvents {
  /** The worker is gone (its stream ended or failed): a root cause. */
  lost(channel: ControlChannel, error: RunFailure): void;
  /** The worker says it fails, and why (often because another worker is gone). */
  reported(channel: ControlChannel, message: string): void;
  /** The worker sent something that breaks the protocol. */
  broken(channel: ControlChannel, error: RunFailure): void;
  /** A heartbeat: the worker is alive and says what it does (for the dashboard). */
  heard?(channel: ControlChannel, activity: string): void;
  /** The worker's collective of the current generation failed; it waits for a new Membership. */
  generationFailed(channel: ControlChannel, message: string): void;
  /** The worker announced that it leaves (SIGTERM): release it at the next step boundary. */
  leaving(channel: ControlChannel, reason: string): void;
}

/**
 * The coordinator's end of one worker's Control stream: commands go out in order (with
 * backpressure, each write bounded by `writeTimeoutMs`), replies are sorted into mailboxes by
 * step or id. Tracks when the worker was last heard from and what it said it was doing, so
 * that a failure names the rank and its activity. Waits have no deadline of their own: the
 * WorkerGroup fails every channel when any worker goes silent for longer than the step timeout.
 */
export class ControlChannel {
  readonly rank: number;
  /** "rank 1 (host, pid 42)", for messages. */
  readonly label: string;
  /** When the worker last sent anything (ms since epoch). */
  lastHeard = Date.now();
  /** What the worker was last asked to do. */
  private commanded = 'waiting for the other workers to join';
  /** What the worker last said it was doing (heartbeats), if anything since that command. */
  private reported: string | undefined;
  private readonly writer: BackpressureWriter<ControlResponse>;
  private steps = new Mailbox<StepMetrics>();
  private evaluations = new Mailbox<EvaluationMetrics>();
  private fingerprints = new Mailbox<string>();
  private states = new Mailbox<ReplicaState>();
  private readonly assemblers = new Map<number, StateAssembler>();
  /**
   * The membership generation this worker's replies must belong to: results of an older one
   * (sent before the worker learnt of the change) are dropped, never taken for the new one's.
   */
  generation = 0;
  /** The last checkpoint id asked for; ids below staleBelow belong to an ended generation. */
  private lastAsked = 0;
  private staleBelow = 0;
  /** The worker holds the run's state (it initialised with the world, or received it on joining). */
  hasState = false;
  /** The worker announced that it leaves. */
  leavingReason: string | undefined;
  /** Resolves once the stream is over, whichever way it ended. */
  readonly closed: Promise<void>;
  private closing = false;
  private failure: Error | undefined;

  constructor(
    readonly admission: Admission,
    private readonly call: ControlCall,
    private readonly writeTimeoutMs: number,
    private readonly events: ChannelEvents,
  ) {
    this.rank = admission.rank;
    const device = admission.device;
    this.label = device
      ? `rank ${admission.rank} (${device.hostname}, pid ${device.pid})`
      : `rank ${admission.rank}`;
    this.writer = new BackpressureWriter(call, 'the coordinator', this.label);
    this.closed = new Promise((resolve) => {
      for (const event of ['end', 'error', 'cancelled', 'close']) call.once(event, () => resolve());
    });
    call.on('data', (message: ControlRequest) => this.receive(message));
    call.on('end', () => this.gone('its control stream ended'));
    call.on('error', (error: Error) => this.gone(`its control stream failed: ${error.message}`));
    call.on('cancelled', () => this.gone('its control stream was cancelled'));
  }

  /** "training step 12 (it last said: all-reducing the gradients of step 11)", for messages. */
  get activity(): string {
    return this.reported ? `${this.commanded} (it last said: ${this.reported})` : this.commanded;
  }

  /** Sends a command; rejects when the stream stays full past the deadline or is broken. */
  send(command: Command, activity?: string): Promise<void> {
    if (activity) this.commanded = activity;
    return this.writer.write({ kind: command }, this.writeTimeoutMs);
  }

  stepMetrics(step: number): Promise<StepMetrics> {
    return this.steps.take(step);
  }

  evaluation(id: number): Promise<EvaluationMetrics> {
    return this.evaluations.take(id);
  }

  fingerprint(step: number): Promise<string> {
    return this.fingerprints.take(step);
  }

  /** Call before sending the CheckpointCommand `id` to this rank: resolves with its state. */
  expectState(id: number, withOptimizer: boolean): Promise<ReplicaState> {
    this.lastAsked = Math.max(this.lastAsked, id);
    this.assemblers.set(id, new StateAssembler(this.label, withOptimizer));
    return this.states.take(id);
  }

  /**
   * A new generation `generation` starts: the waits of the old one reject with `error`, and
   * its results still on the way will be dropped.
   */
  startGeneration(generation: number, error: Error): void {
    this.generation = generation;
    for (const box of [this.steps, this.evaluations, this.fingerprints, this.states])
      box.fail(error);
    this.steps = new Mailbox();
    this.evaluations = new Mailbox();
    this.fingerprints = new Mailbox();
    this.states = new Mailbox();
    this.assemblers.clear();
    this.staleBelow = this.lastAsked + 1;
  }

  /** Rejects every wait on this channel with `error` (the run failed). */
  fail(error: Error): void {
    this.failure ??= error;
    for (const box of [this.steps, this.evaluations, this.fingerprints, this.states])
      box.fail(error);
    this.writer.fail(error);
  }

  /**
   * Ends the stream with a StopCommand (`error` empty: the run completed). Leaving is then
   * expected, not a failure.
   */
  stop(error: string): void {
    if (this.closing) return;
    this.closing = true;
    try {
      this.call.write({ kind: { $case: 'stop', value: { error } } });
      this.call.end();
    } catch {
      // The stream is already gone: nothing to tell.
    }
  }

  private receive(message: ControlRequest): void {
    this.lastHeard = Date.now();
    const kind = message.kind;
    if (kind?.$case === 'heartbeat') {
      if (kind.value.activity) this.reported = kind.value.activity;
      this.events.heard?.(this, kind.value.activity);
    } else if (kind?.$case === 'stepMetrics') {
      const m = kind.value;
      if (m.generation < this.generation) return;
      this.deliver(this.steps, m.step, m, `step ${m.step}'s metrics`);
    } else if (kind?.$case === 'evaluationMetrics') {
      const m = kind.value;
      this.deliver(this.evaluations, m.evaluationId, m, `evaluation ${m.evaluationId}`);
    } else if (kind?.$case === 'fingerprint') {
      const f = kind.value;
      if (f.generation < this.generation) return;
      this.deliver(this.fingerprints, f.step, f.fingerprint, `the fingerprint of step ${f.step}`);
    } else if (kind?.$case === 'statePart') {
      this.statePart(kind.value);
    } else if (kind?.$case === 'generationFailed') {
      if (kind.value.generation < this.generation) return;
      this.events.generationFailed(this, kind.value.message);
    } else if (kind?.$case === 'leaving') {
      this.leavingReason ??= kind.value.reason || 'leaving';
      this.events.leaving(this, this.leavingReason);
    } else if (kind?.$case === 'failure') {
      this.closing = true;
      this.events.reported(this, kind.value.message);
    } else {
      this.protocol(kind ? `a second ${kind.$case}` : 'an empty control message');
    }
  }

  private statePart(part: StatePart): void {
    const assembler = this.assemblers.get(part.checkpointId);
    // The rest of a state asked for in a generation that ended meanwhile.
    if (!assembler && part.checkpointId < this.staleBelow) return;
    if (!assembler) {
      this.protocol(`state for checkpoint ${part.checkpointId}, which it was not asked for`);
      return;
    }
    try {
      assembler.add(part);
    } catch (error) {
      this.protocol((error as Error).message);
      return;
    }
    if (assembler.complete) {
      this.assemblers.delete(part.checkpointId);
      this.states.put(part.checkpointId, assembler.result());
    }
  }

  private deliver<T>(box: Mailbox<T>, key: number, value: T, what: string): void {
    if (!box.put(key, value)) this.protocol(`${what} twice`);
  }

  private protocol(what: string): void {
    this.events.broken(
      this,
      new RunFailure(`${this.label} broke the control protocol: it sent ${what}`),
    );
  }

  private gone(how: string): void {
    if (this.closing || this.failure) return;
    this.closing = true;
    this.events.lost(
      this,
      new RunFailure(`${this.label} disconnected (${how}) while ${this.activity}`),
    );
  }
}
