import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type { DeviceInfo, JoinRequest } from '../gen/tfjs_ddp/v1/coordinator.js';
import { type DataFingerprint, dataMismatch } from '../shared/data/data-fingerprint.js';
import { newCredential } from '../shared/distributed/call-authenticator.js';
import { UserError } from '../shared/errors.js';

/** A refused Join or Control hello: `code` is the gRPC status the server answers with. */
export class JoinRefusal extends UserError {
  constructor(
    message: string,
    readonly code: status,
    /** Refused for want of a rank or for its worker id: a dead admission may be holding it. */
    readonly heldByAnother = false,
  ) {
    super(message, 3);
  }
}

/** What every worker must agree on to be admitted. */
export interface AdmissionRules {
  /** The workers the run starts with. */
  worldSize: number;
  /** Ranks are 0..maxWorkers-1; a running job admits joins up to this many (default worldSize). */
  maxWorkers?: number;
  protocolVersion: number;
  modelName: string;
  architecture: string;
  /** The coordinator's data, when the workers read their own copy of it (dataMismatch). */
  data?: DataFingerprint;
}

/** One admitted worker. */
export interface Admission {
  readonly rank: number;
  readonly workerId: string;
  readonly sessionId: string;
  /** Secret: what the worker's coordinator calls carry (see CallAuthenticator). */
  readonly credential: string;
  readonly peerAddress: string;
  readonly device: DeviceInfo | undefined;
  /** The state a worker kept from a coordinator that went away (see RestartPoint). */
  readonly held: { steps: number; fingerprint: string; reducedStep: boolean } | undefined;
  /** Whether its Control stream is open. */
  attached: boolean;
}

/**
 * - admitting: ranks are handed out until the first world is complete; a worker that leaves
 *   frees its rank.
 * - running: the job trains; a worker that leaves frees its rank (it is 'lost'), and new
 *   workers are admitted up to maxWorkers: the coordinator takes them in at a step boundary.
 * - stopped: nothing is admitted any more.
 */
export type MembershipState = 'admitting' | 'running' | 'stopped';

/**
 * Who is in the run: the only place that assigns ranks. A small state machine
 * (admitting → running → stopped) with typed refusals; it does no I/O, so the gRPC service
 * and the tests drive it alike.
 */
export class Membership {
  private current: MembershipState = 'admitting';
  private readonly byRank = new Map<number, Admission>();

  constructor(private readonly rules: AdmissionRules) {}

  get state(): MembershipState {
    return this.current;
  }

  /** The admitted workers, by rank. */
  get admissions(): Admission[] {
    return [...this.byRank.values()].sort((a, b) => a.rank - b.rank);
  }

  /** Every rank admitted and its Control stream open: the world can start. */
  get complete(): boolean {
    return this.byRank.size === this.rules.worldSize && this.admissions.every((a) => a.attached);
  }

  /**
   * Admits a worker or throws JoinRefusal: FAILED_PRECONDITION (protocol version, model,
   * architecture or data files differ; the run has started), ALREADY_EXISTS (worker id already admitted, rank
   * asked for already taken), INVALID_ARGUMENT (no worker id or peer address, rank out of
   * range), RESOURCE_EXHAUSTED (world full). The join token was checked before (see
   * CallAuthenticator), so that nothing about the run is told to a stranger.
   * A worker that names no model takes the coordinator's (it checks the architecture itself).
   */
  admit(req: JoinRequest): Admission {
    const { rules } = this;
    const refuse = (code: status, message: string, held = false) =>
      new JoinRefusal(message, code, held);
    if (req.protocolVersion !== rules.protocolVersion) {
      throw refuse(
        status.FAILED_PRECONDITION,
        `protocol version differs: the worker speaks version ${req.protocolVersion}, the coordinator ${rules.protocolVersion} (use the same tfjs-ddp release on both)`,
      );
    }
    if (req.modelName !== '' && req.modelName !== rules.modelName) {
      throw refuse(
        status.FAILED_PRECONDITION,
        `model differs: the worker has ${req.modelName}, the coordinator trains ${rules.modelName}`,
      );
    }
    if (req.architectureFingerprint !== '' && req.architectureFingerprint !== rules.architecture) {
      throw refuse(
        status.FAILED_PRECONDITION,
        `architecture fingerprint of ${rules.modelName} differs: the worker's is ${req.architectureFingerprint.slice(0, 12)}…, the coordinator's ${rules.architecture.slice(0, 12)}… (different tfjs-ddp builds?)`,
      );
    }
    const dataProblem = rules.data && dataMismatch(req.data, rules.data);
    if (dataProblem) throw refuse(status.FAILED_PRECONDITION, dataProblem);
    if (req.workerId === '' || req.peerAddress === '') {
      throw refuse(status.INVALID_ARGUMENT, 'a join must state worker_id and peer_address');
    }
    const same = this.admissions.find((a) => a.workerId === req.workerId);
    if (same) {
      throw refuse(
        status.ALREADY_EXISTS,
        `worker id ${req.workerId} has already joined (as rank ${same.rank})`,
        true,
      );
    }
    const limit = this.current === 'admitting' ? rules.worldSize : this.maxWorkers;
    if (this.current === 'stopped' || this.byRank.size >= limit) {
      throw refuse(
        status.RESOURCE_EXHAUSTED,
        `the world is full: all ${limit} ranks are taken${this.current === 'admitting' ? '' : ' (--max-workers) and the run has started'}`,
        this.current !== 'stopped',
      );
    }
    const rank = this.chooseRank(req.requestedRank, refuse);
    const admission: Admission = {
      rank,
      workerId: req.workerId,
      sessionId: randomUUID(),
      credential: newCredential(),
      peerAddress: req.peerAddress,
      device: req.device,
      held:
        req.heldSteps === undefined
          ? undefined
          : {
              steps: req.heldSteps,
              fingerprint: req.heldFingerprint ?? '',
              reducedStep: req.heldReducedStep,
            },
      attached: false,
    };
    this.byRank.set(rank, admission);
    return admission;
  }

  /**
   * A Control stream says hello as `rank` with `sessionId`. Throws JoinRefusal:
   * INVALID_ARGUMENT for a rank nobody was admitted as, PERMISSION_DENIED for a session id
   * that is not that rank's, ALREADY_EXISTS when the rank already has a stream.
   */
  attach(rank: number, sessionId: string): Admission {
    const admission = this.byRank.get(rank);
    if (!admission || this.current === 'stopped') {
      throw new JoinRefusal(
        `rank ${rank} is not a rank of this run (join first; ranks admitted: ${this.admissions.map((a) => a.rank).join(', ') || 'none'})`,
        status.INVALID_ARGUMENT,
      );
    }
    if (admission.sessionId !== sessionId) {
      throw new JoinRefusal(
        `the session id does not belong to rank ${rank}`,
        status.PERMISSION_DENIED,
      );
    }
    if (admission.attached) {
      throw new JoinRefusal(`rank ${rank} already has a control stream`, status.ALREADY_EXISTS);
    }
    admission.attached = true;
    return admission;
  }

  /**
   * The admission's Control stream ended (or the coordinator removed the worker). Its rank is
   * freed for another worker (a replaced pod asks for the same one): 'freed' while admitting,
   * 'lost' once running (the run has lost a replica).
   */
  leave(rank: number): 'freed' | 'lost' | 'ignored' {
    const admission = this.byRank.get(rank);
    if (!admission?.attached || this.current === 'stopped') return 'ignored';
    admission.attached = false;
    this.byRank.delete(rank);
    return this.current === 'admitting' ? 'freed' : 'lost';
  }

  /** Admissions whose Control stream has not opened yet (just joined, or died since). */
  get pending(): Admission[] {
    return this.admissions.filter((a) => !a.attached);
  }

  /**
   * Frees the rank of an admission whose Control stream never opened (the worker died between
   * Join and Control). Returns whether it was freed.
   */
  expire(rank: number, sessionId: string): boolean {
    const admission = this.byRank.get(rank);
    if (this.current === 'stopped' || admission?.sessionId !== sessionId || admission.attached) {
      return false;
    }
    this.byRank.delete(rank);
    return true;
  }

  /** The session id's admission, if it is current (for data and checkpoint requests). */
  bySession(sessionId: string): Admission | undefined {
    return this.admissions.find((a) => a.sessionId === sessionId);
  }

  /**
   * The credentials of the admitted workers: the rule for their coordinator calls. A worker
   * whose admission ends loses its credential with it, and so does one whose Control stream
   * ended (leave() ends its admission); a worker admitted into a running job holds a valid one
   * until its Control stream opens; once stopped, none is valid.
   */
  readonly credentials = (): readonly string[] =>
    this.current === 'stopped' ? [] : this.admissions.map((a) => a.credential);

  /** admitting → running; returns the world by rank. Throws if it is not complete. */
  start(): Admission[] {
    if (this.current !== 'admitting' || !this.complete) {
      throw new Error(
        `cannot start the world in state ${this.current} (complete: ${this.complete})`,
      );
    }
    this.current = 'running';
    return this.admissions;
  }

  stop(): void {
    this.current = 'stopped';
  }

  private get maxWorkers(): number {
    return this.rules.maxWorkers ?? this.rules.worldSize;
  }

  private chooseRank(
    requested: number | undefined,
    refuse: (code: status, message: string, held?: boolean) => JoinRefusal,
  ): number {
    const worldSize = this.maxWorkers;
    if (requested === undefined) {
      for (let rank = 0; ; rank++) if (!this.byRank.has(rank)) return rank;
    }
    if (!Number.isInteger(requested) || requested >= worldSize) {
      throw refuse(
        status.INVALID_ARGUMENT,
        `rank ${requested} was asked for, but the world has ranks 0..${worldSize - 1}`,
      );
    }
    const holder = this.byRank.get(requested);
    if (holder) {
      throw refuse(
        status.ALREADY_EXISTS,
        `rank ${requested} was asked for, but worker ${holder.workerId} holds it`,
        true,
      );
    }
    return requested;
  }
}
