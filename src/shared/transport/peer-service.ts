import { type Server, type ServerDuplexStream, status } from '@grpc/grpc-js';
import {
  type ExchangeRequest,
  type ExchangeResponse,
  type PeerHello,
  PeerServiceService,
} from '../../gen/tfjs_ddp/v1/peer.js';
import { chunkSerializer } from './chunk-wire.js';
import { DeadlineExceededError, ProtocolError } from './errors.js';
import type { ServiceRegistrar } from './grpc-server.js';
import { PROTOCOL_VERSION } from './grpc-settings.js';
import { refuseCall } from './refuse-call.js';

/** The generated definition, with chunks going out through the one-copy serializer. */
const PEER_SERVICE = {
  exchange: {
    ...PeerServiceService.exchange,
    responseSerialize: chunkSerializer(PeerServiceService.exchange.responseSerialize),
  },
};

export type PeerServerStream = ServerDuplexStream<ExchangeRequest, ExchangeResponse>;

/** What one rank of one generation waits for: a stream from `peerRank`. */
export interface PeerAcceptSpec {
  generation: number;
  worldSize: number;
  /** This worker's rank in the generation. */
  rank: number;
  /** The rank that must open the stream. */
  peerRank: number;
  timeoutMs: number;
}

interface Expectation {
  spec: PeerAcceptSpec;
  resolve: (call: PeerServerStream) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

interface Parked {
  hello: PeerHello;
  call: PeerServerStream;
  timer: NodeJS.Timeout;
}

/**
 * The worker's PeerService: accepts the Exchange streams its ring neighbours open
 * and hands each, checked, to the transport that asked for it with accept().
 * A stream may arrive before this worker has started its generation (the peer was
 * faster); it then waits here up to `helloTimeoutMs`. Streams that cannot belong
 * to any generation are refused with a status saying why; the server keeps serving.
 */
export class PeerService implements ServiceRegistrar {
  readonly serviceName = 'tfjs_ddp.v1.PeerService';
  private readonly expected = new Map<string, Expectation>();
  private readonly accepted = new Set<string>();
  private parked: Parked[] = [];
  private generation = -1;
  private worldSize = 0;
  private rank = -1;

  constructor(private readonly helloTimeoutMs = 30_000) {}

  addToServer(server: Server): void {
    server.addService(PEER_SERVICE, {
      exchange: (call: PeerServerStream) => this.greet(call),
    });
  }

  /**
   * Resolves with the stream `spec.peerRank` opens for `spec.generation`, after its
   * hello was checked and answered. The stream is paused: the caller attaches its
   * 'data' listener and resumes it. Rejects with DeadlineExceededError when the
   * peer does not connect within `spec.timeoutMs`. Starting a newer generation
   * refuses the older generation's late streams with FAILED_PRECONDITION.
   */
  accept(spec: PeerAcceptSpec): Promise<PeerServerStream> {
    if (spec.generation > this.generation) {
      this.generation = spec.generation;
      this.worldSize = spec.worldSize;
      this.rank = spec.rank;
      this.accepted.clear();
    }
    return new Promise<PeerServerStream>((resolve, reject) => {
      const key = `${spec.generation}/${spec.peerRank}`;
      const timer = setTimeout(() => {
        this.expected.delete(key);
        reject(
          new DeadlineExceededError(
            `rank ${spec.peerRank} did not connect to rank ${spec.rank} within ${spec.timeoutMs} ms (generation ${spec.generation})`,
          ),
        );
      }, spec.timeoutMs);
      this.expected.set(key, { spec, resolve, reject, timer });
      const parked = this.parked;
      this.parked = [];
      for (const p of parked) {
        clearTimeout(p.timer);
        this.admit(p.hello, p.call);
      }
    });
  }

  /**
   * Forgets every generation: the coordinator that numbered them is gone, and a restarted one
   * numbers its own from 1 again. Waiting streams and accepts are refused.
   */
  forgetGenerations(): void {
    const why = 'the coordinator of this generation is gone';
    for (const p of this.parked.splice(0)) {
      clearTimeout(p.timer);
      refuseCall(p.call, status.FAILED_PRECONDITION, why);
    }
    for (const e of this.expected.values()) {
      clearTimeout(e.timer);
      e.reject(new ProtocolError(why));
    }
    this.expected.clear();
    this.accepted.clear();
    this.generation = -1;
    this.worldSize = 0;
    this.rank = -1;
  }

  private greet(call: PeerServerStream): void {
    const timer = setTimeout(
      () => refuseCall(call, status.DEADLINE_EXCEEDED, 'no PeerHello within the deadline'),
      this.helloTimeoutMs,
    );
    call.once('data', (first: ExchangeRequest) => {
      clearTimeout(timer);
      // Hold later messages until the transport that takes the stream listens.
      call.pause();
      if (first.kind?.$case !== 'hello') {
        refuseCall(call, status.INVALID_ARGUMENT, 'the first message must be a PeerHello');
      } else {
        this.admit(first.kind.value, call);
      }
    });
    call.on('error', () => clearTimeout(timer));
    call.on('cancelled', () => clearTimeout(timer));
  }

  private admit(hello: PeerHello, call: PeerServerStream): void {
    const problem = this.check(hello);
    if (problem) {
      refuseCall(call, problem.code, problem.message);
      return;
    }
    const key = `${hello.generation}/${hello.rank}`;
    const expectation = this.expected.get(key);
    if (!expectation) {
      // The peer is at a generation this worker has not started yet.
      const timer = setTimeout(() => {
        this.parked = this.parked.filter((p) => p.call !== call);
        refuseCall(
          call,
          status.FAILED_PRECONDITION,
          `this worker did not start generation ${hello.generation} within ${this.helloTimeoutMs} ms`,
        );
      }, this.helloTimeoutMs);
      this.parked.push({ hello, call, timer });
      return;
    }
    this.expected.delete(key);
    clearTimeout(expectation.timer);
    this.accepted.add(key);
    const { spec } = expectation;
    call.write({
      kind: {
        $case: 'hello',
        value: {
          protocolVersion: PROTOCOL_VERSION,
          generation: spec.generation,
          worldSize: spec.worldSize,
          rank: spec.rank,
          peerRank: spec.peerRank,
        },
      },
    });
    expectation.resolve(call);
  }

  /** Why `hello` is refused now, or undefined (it may still have to wait for its generation). */
  private check(hello: PeerHello): ProtocolError | undefined {
    const refuse = (code: status, message: string) => new ProtocolError(message, code);
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      return refuse(
        status.FAILED_PRECONDITION,
        `protocol version ${hello.protocolVersion} is not this worker's version ${PROTOCOL_VERSION}`,
      );
    }
    if (hello.generation < this.generation) {
      return refuse(
        status.FAILED_PRECONDITION,
        `generation ${hello.generation} is over: this worker is at generation ${this.generation}`,
      );
    }
    if (hello.generation > this.generation) return undefined;
    if (hello.worldSize !== this.worldSize) {
      return refuse(
        status.FAILED_PRECONDITION,
        `world size ${hello.worldSize} differs from this generation's ${this.worldSize}`,
      );
    }
    if (hello.peerRank !== this.rank) {
      return refuse(
        status.INVALID_ARGUMENT,
        `the caller wanted rank ${hello.peerRank}, but this worker is rank ${this.rank}`,
      );
    }
    const key = `${hello.generation}/${hello.rank}`;
    if (this.accepted.has(key)) {
      return refuse(
        status.ALREADY_EXISTS,
        `rank ${hello.rank} already has a stream to rank ${this.rank} in generation ${hello.generation}`,
      );
    }
    if (!this.expected.has(key)) {
      return refuse(
        status.INVALID_ARGUMENT,
        `rank ${hello.rank} is not a peer of rank ${this.rank} in generation ${hello.generation} (world size ${this.worldSize})`,
      );
    }
    return undefined;
  }
}
