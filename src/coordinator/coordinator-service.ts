import {
  type Server,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import {
  CoordinatorServiceService,
  type FetchCheckpointRequest,
  type FetchCheckpointResponse,
  type FetchSamplesRequest,
  type FetchSamplesResponse,
  type JoinRequest,
  type JoinResponse,
  type RunConfig,
  Split,
} from '../gen/tfjs_ddp/v1/coordinator.js';
import { type DatasetSplits, selectImages } from '../shared/data/labeled-images.js';
import { MAX_FETCH_SAMPLES } from '../shared/distributed/run-settings.js';
import { type ReplicaState, toStateParts } from '../shared/distributed/state-parts.js';
import { log } from '../shared/logging/logger.js';
import { BackpressureWriter } from '../shared/transport/backpressure-writer.js';
import type { ServiceRegistrar } from '../shared/transport/grpc-server.js';
import { refuseCall } from '../shared/transport/refuse-call.js';
import { probeTcp } from '../shared/transport/tcp-probe.js';
import type { ControlCall } from './control-channel.js';
import { type Admission, JoinRefusal, type Membership } from './membership.js';

export interface CoordinatorServiceOptions {
  membership: Membership;
  worldSize: number;
  /** What every admitted worker receives in JoinResponse. */
  runConfig: RunConfig;
  /** The splits FetchSamples serves. */
  data: DatasetSplits;
  /** The state a resumed run starts from, served by FetchCheckpoint; undefined for a new run. */
  checkpoint: ReplicaState | undefined;
  /** Deadline for a Control hello after connecting, and for the Control stream after a Join. */
  helloTimeoutMs: number;
  /** Deadline of every write to a slow reader. */
  writeTimeoutMs: number;
  partBytes: number;
  /** A Control stream was accepted for `admission` (the caller takes the stream over). */
  onAttach(admission: Admission, call: ControlCall): void;
  /** `admission`'s worker never opened its Control stream (`why`); its rank is free again. */
  onExpired(admission: Admission, why: string): void;
}

/** How long the liveness probe of a worker that joined but opened no Control stream waits. */
const PENDING_PROBE_MS = 1000;

/**
 * The coordinator's gRPC service: Join and the Control hello go to the Membership (which
 * refuses with typed statuses), the accepted Control stream is handed to the caller, and
 * FetchSamples / FetchCheckpoint serve data and the resumed state to joined workers. Who may
 * call at all is decided before any of this, from the call's credential (the join token for
 * Join, the credential Join issued for the rest; see CallAuthenticator). Every refusal is a
 * status on that call only; the server keeps serving.
 */
export class CoordinatorService implements ServiceRegistrar {
  readonly serviceName = 'tfjs_ddp.v1.CoordinatorService';

  constructor(private readonly opts: CoordinatorServiceOptions) {}

  addToServer(server: Server): void {
    server.addService(CoordinatorServiceService, {
      join: (call: ServerUnaryCall<JoinRequest, JoinResponse>, done: sendUnaryData<JoinResponse>) =>
        void this.join(call.request, done),
      control: (call: ControlCall) => this.control(call),
      fetchSamples: (
        call: ServerUnaryCall<FetchSamplesRequest, FetchSamplesResponse>,
        done: sendUnaryData<FetchSamplesResponse>,
      ) => this.fetchSamples(call, done),
      fetchCheckpoint: (
        call: ServerWritableStream<FetchCheckpointRequest, FetchCheckpointResponse>,
      ) => void this.fetchCheckpoint(call),
    });
  }

  private async join(req: JoinRequest, done: sendUnaryData<JoinResponse>): Promise<void> {
    const who = `worker ${req.workerId || '(no id)'} at ${req.peerAddress || '(no address)'}`;
    let admission: Admission;
    try {
      admission = await this.admit(req);
    } catch (error) {
      if (!(error instanceof JoinRefusal)) throw error;
      log().warn({ code: status[error.code] }, `refused ${who}: ${error.message}`);
      done({ code: error.code, details: error.message });
      return;
    }
    const device = req.device ? ` on ${req.device.backend}, ${req.device.device}` : '';
    log().info({ rank: admission.rank }, `${who} joined as rank ${admission.rank}${device}`);
    // A worker that never opens its Control stream must not hold its rank for ever.
    setTimeout(
      () =>
        this.expire(
          admission,
          `opened no control stream within ${this.opts.helloTimeoutMs / 1000} s of joining`,
        ),
      this.opts.helloTimeoutMs,
    ).unref();
    done(null, {
      rank: admission.rank,
      worldSize: this.opts.worldSize,
      sessionId: admission.sessionId,
      config: this.opts.runConfig,
      credential: admission.credential,
    });
  }

  /**
   * Admits `req` (see Membership.admit). A worker opens its Control stream right after its Join;
   * one that died in between (a pod in a crash loop) would hold its rank until the hello
   * deadline, and its replacement would be refused meanwhile. So a refusal for want of a rank
   * first probes the peer port of every admission still without a Control stream: those whose
   * process is gone are freed, and the Join is tried once more. One whose peer address is the
   * joining worker's is gone without a probe (its container restarted in place: the address
   * now answers for its successor).
   */
  private async admit(req: JoinRequest): Promise<Admission> {
    const { membership } = this.opts;
    try {
      return membership.admit(req);
    } catch (error) {
      if (!(error instanceof JoinRefusal && error.heldByAnother)) throw error;
      const pending = membership.pending;
      const causes = await Promise.all(
        pending.map((a) =>
          a.peerAddress === req.peerAddress
            ? `${a.peerAddress} is the address of the worker joining now`
            : probeTcp(a.peerAddress, PENDING_PROBE_MS),
        ),
      );
      let freed = false;
      pending.forEach((a, i) => {
        const cause = causes[i];
        if (cause) freed = this.expire(a, `is gone since joining: ${cause}`) || freed;
      });
      if (!freed) throw error;
      return membership.admit(req);
    }
  }

  /** Frees a pending admission's rank (if it is still pending); returns whether it did. */
  private expire(admission: Admission, why: string): boolean {
    if (!this.opts.membership.expire(admission.rank, admission.sessionId)) return false;
    const label = `rank ${admission.rank} (${admission.workerId})`;
    log().warn({ rank: admission.rank }, `${label} ${why}; its rank is free again`);
    this.opts.onExpired(admission, `${label} ${why}`);
    return true;
  }

  private control(call: ControlCall): void {
    const timer = setTimeout(
      () => refuseCall(call, status.DEADLINE_EXCEEDED, 'no ControlHello within the deadline'),
      this.opts.helloTimeoutMs,
    );
    call.on('cancelled', () => clearTimeout(timer));
    call.on('error', () => clearTimeout(timer));
    call.once('data', (first) => {
      clearTimeout(timer);
      if (first.kind?.$case !== 'hello') {
        refuseCall(
          call,
          status.INVALID_ARGUMENT,
          'the first control message must be a ControlHello',
        );
        return;
      }
      const { rank, sessionId } = first.kind.value;
      try {
        const admission = this.opts.membership.attach(rank, sessionId);
        this.opts.onAttach(admission, call);
      } catch (error) {
        if (!(error instanceof JoinRefusal)) throw error;
        log().warn(`refused a control stream: ${error.message}`);
        refuseCall(call, error.code, error.message);
      }
    });
  }

  private fetchSamples(
    call: ServerUnaryCall<FetchSamplesRequest, FetchSamplesResponse>,
    done: sendUnaryData<FetchSamplesResponse>,
  ): void {
    const { split, indices } = call.request;
    const images =
      split === Split.SPLIT_TRAIN
        ? this.opts.data.train
        : split === Split.SPLIT_VAL
          ? this.opts.data.val
          : undefined;
    const outside = images && indices.find((i) => i >= images.count);
    // Only admitted workers get here: their credential was checked first.
    let refusal: [status, string] | undefined;
    if (!images) {
      refusal = [status.INVALID_ARGUMENT, `unknown split ${split}`];
    } else if (indices.length > MAX_FETCH_SAMPLES) {
      refusal = [
        status.INVALID_ARGUMENT,
        `${indices.length} samples asked for; at most ${MAX_FETCH_SAMPLES} per request`,
      ];
    } else if (outside !== undefined) {
      const name = split === Split.SPLIT_TRAIN ? 'training' : 'validation';
      refusal = [
        status.INVALID_ARGUMENT,
        `sample ${outside} is out of range: the ${name} split has ${images.count}`,
      ];
    }
    if (refusal || !images) {
      done({ code: refusal?.[0], details: refusal?.[1] });
      return;
    }
    const picked = selectImages(images, indices);
    done(null, { indices, pixels: picked.pixels, labels: picked.labels });
  }

  private async fetchCheckpoint(
    call: ServerWritableStream<FetchCheckpointRequest, FetchCheckpointResponse>,
  ): Promise<void> {
    const { rank, sessionId } = call.request;
    const admission = this.sessionOf(sessionId);
    // grpc-js ends a server stream with the status of an 'error' event.
    const fail = (code: status, details: string) => {
      call.emit('error', { code, details });
    };
    if (!admission || admission.rank !== rank) {
      return fail(
        status.PERMISSION_DENIED,
        `rank ${rank} with this session id has not joined this run`,
      );
    }
    const state = this.opts.checkpoint;
    if (!state) return fail(status.NOT_FOUND, 'this run does not resume from a checkpoint');
    const writer = new BackpressureWriter(call, 'the coordinator', `rank ${rank}`);
    try {
      for (const part of toStateParts(state, 0, this.opts.partBytes)) {
        await writer.write({ part }, this.opts.writeTimeoutMs);
      }
      call.end();
    } catch (error) {
      fail(status.DEADLINE_EXCEEDED, (error as Error).message);
    }
  }

  private sessionOf(sessionId: string): Admission | undefined {
    return this.opts.membership.bySession(sessionId);
  }
}
