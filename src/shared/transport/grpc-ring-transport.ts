import { type ChannelCredentials, type ServiceError, status } from '@grpc/grpc-js';
import {
  type ExchangeRequest,
  type ExchangeResponse,
  PeerServiceClient,
} from '../../gen/tfjs_ddp/v1/peer.js';
import { BackpressureWriter } from './backpressure-writer.js';
import { ChunkInbox } from './chunk-inbox.js';
import { chunkMessage } from './chunk-wire.js';
import { type HelloStream, openHelloStream, statusError } from './client-stream.js';
import { PeerAbortedError, PeerLostError, ProtocolError } from './errors.js';
import { type GrpcSettings, PROTOCOL_VERSION } from './grpc-settings.js';
import type { PeerServerStream, PeerService } from './peer-service.js';
import { refuseCall } from './refuse-call.js';
import type { Chunk, ChunkExpectation, ChunkTransport, TransportStats } from './transport.js';

export interface RingLinkSpec {
  rank: number;
  worldSize: number;
  generation: number;
  /** host:port of every rank's PeerService, indexed by rank. */
  peerAddresses: readonly string[];
  /** This process's PeerService, registered on its running server. */
  peerService: PeerService;
  /** Deadline for connecting both neighbours. */
  timeoutMs: number;
  settings?: Partial<GrpcSettings>;
  /** Default: insecure (plain TCP). */
  credentials?: ChannelCredentials;
  /** The generation's credential (Membership.credential); absent: the call carries none. */
  credential?: string;
}

type Dialled = HelloStream<PeerServiceClient, ExchangeRequest, ExchangeResponse>;
type InboundCall = Dialled['call'];

/**
 * The ring's links over gRPC: chunks go to the next rank and come from the
 * previous one. Each rank dials its previous rank's PeerService and receives on
 * the response side of that stream, so bulk data always flows server to client,
 * where the raised HTTP/2 window applies; the next rank's stream into this
 * rank's PeerService carries this rank's chunks. Both streams live for the whole
 * generation.
 */
export class GrpcRingTransport implements ChunkTransport {
  readonly stats: TransportStats = {
    bytesSent: 0,
    bytesReceived: 0,
    chunksSent: 0,
    chunksReceived: 0,
  };
  readonly sendsTo: string;
  readonly receivesFrom: string;
  private readonly inbox: ChunkInbox;
  private readonly writer: BackpressureWriter<ExchangeResponse>;
  private readonly client: PeerServiceClient;
  private readonly inbound: InboundCall;
  private failure: Error | undefined;
  private outboundOpen = true;
  private inboundOpen = true;

  /**
   * Connects to both neighbours of `spec.rank` (a ring has at least two ranks).
   * Rejects with DeadlineExceededError when a neighbour is not there within
   * `spec.timeoutMs`, or with the neighbour's refusal.
   */
  static async connect(spec: RingLinkSpec): Promise<GrpcRingTransport> {
    const { rank, worldSize, generation } = spec;
    if (worldSize < 2) throw new Error(`a ring needs at least two ranks, not ${worldSize}`);
    const next = (rank + 1) % worldSize;
    const prev = (rank + worldSize - 1) % worldSize;
    const outbound = spec.peerService.accept({
      generation,
      worldSize,
      rank,
      peerRank: next,
      timeoutMs: spec.timeoutMs,
    });
    const inbound = dial(spec, prev);
    try {
      const [out, dialled] = await Promise.all([outbound, inbound]);
      return new GrpcRingTransport(spec, out, dialled);
    } catch (error) {
      void outbound.then(
        (call) => refuseCall(call, status.CANCELLED, String(error)),
        () => {},
      );
      void inbound.then(
        ({ client, call }) => {
          call.cancel();
          client.close();
        },
        () => {},
      );
      throw error;
    }
  }

  private constructor(
    private readonly spec: RingLinkSpec,
    private readonly outbound: PeerServerStream,
    { client, call, early }: Dialled,
  ) {
    this.client = client;
    this.inbound = call;
    const next = (spec.rank + 1) % spec.worldSize;
    const prev = (spec.rank + spec.worldSize - 1) % spec.worldSize;
    this.sendsTo = `rank ${next}`;
    this.receivesFrom = `rank ${prev}`;
    const self = `rank ${spec.rank}`;
    this.inbox = new ChunkInbox({
      rank: spec.rank,
      peer: this.receivesFrom,
      generation: spec.generation,
      senderRank: prev,
      stats: this.stats,
      onStall: (waitingForRank) => {
        if (this.outboundOpen) {
          this.outbound.write({
            kind: { $case: 'waiting', value: { rank: spec.rank, waitingForRank } },
          });
        }
      },
    });
    this.writer = new BackpressureWriter(outbound, self, this.sendsTo);

    const inbound = call;
    const inboundFailed = (error: ServiceError) => {
      this.inboundOpen = false;
      this.abort(statusError(error, `the stream from ${this.receivesFrom} failed`));
    };
    inbound.on('data', (message: ExchangeResponse) => this.onInbound(message));
    inbound.on('error', inboundFailed);
    inbound.on('end', () => {
      this.inboundOpen = false;
      this.inbox.end(
        new PeerLostError(
          `${this.receivesFrom} closed its stream (it left generation ${spec.generation})`,
        ),
      );
    });
    inbound.resume();

    outbound.on('data', (message: ExchangeRequest) => {
      if (message.kind?.$case === 'abort') {
        const { rank, reason } = message.kind.value;
        this.abort(new PeerAbortedError(`rank ${rank} gave up: ${reason}`));
      } else {
        this.abort(
          new ProtocolError(
            `${this.sendsTo} sent an unexpected ${message.kind?.$case ?? 'empty'} message`,
            status.INVALID_ARGUMENT,
          ),
        );
      }
    });
    outbound.on('cancelled', () => {
      this.outboundOpen = false;
      this.abort(new PeerLostError(`${this.sendsTo} dropped its stream (cancelled)`));
    });
    outbound.on('error', () => {
      this.outboundOpen = false;
    });
    outbound.on('end', () => {
      this.writer.fail(
        new PeerLostError(
          `${this.sendsTo} closed its stream (it left generation ${spec.generation})`,
        ),
      );
    });
    outbound.resume();
    if (early.error) inboundFailed(early.error);
  }

  send(chunk: Chunk, timeoutMs: number): Promise<void> {
    // The outbound stream is this rank's PeerService stream: a server stream.
    const sent = this.writer.write(chunkMessage(chunk, 'server'), timeoutMs);
    return sent.then(() => {
      this.stats.chunksSent += 1;
      this.stats.bytesSent += chunk.payload.byteLength;
    });
  }

  receive(expected: ChunkExpectation, timeoutMs: number): Promise<Chunk> {
    return this.inbox.receive(expected, timeoutMs);
  }

  flushed(timeoutMs: number): Promise<void> {
    return this.writer.flushed(timeoutMs);
  }

  abort(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    this.inbox.fail(error);
    this.writer.fail(error);
    const abort = {
      $case: 'abort' as const,
      value: { rank: this.spec.rank, reason: error.message },
    };
    if (this.outboundOpen) {
      this.outboundOpen = false;
      this.outbound.write({ kind: abort });
      refuseCall(this.outbound, status.ABORTED, error.message);
    }
    if (this.inboundOpen) {
      this.inboundOpen = false;
      this.inbound.write({ kind: abort });
      this.inbound.end();
    }
  }

  async close(): Promise<void> {
    // Half-close both streams in good order: the neighbours see the end of the
    // stream, not an error, and whatever is still buffered is delivered.
    if (this.outboundOpen) {
      this.outboundOpen = false;
      this.outbound.end();
    }
    if (this.inboundOpen) {
      this.inboundOpen = false;
      this.inbound.end();
    }
    this.inbox.fail(new PeerLostError('this rank closed its transport'));
    this.writer.fail(new PeerLostError('this rank closed its transport'));
    this.client.close();
  }

  private onInbound(message: ExchangeResponse): void {
    const kind = message.kind;
    if (kind?.$case === 'chunk') {
      try {
        this.inbox.push(kind.value);
      } catch (error) {
        this.abort(error as Error);
      }
    } else if (kind?.$case === 'waiting') {
      this.inbox.upstreamWaiting(kind.value.waitingForRank);
    } else if (kind?.$case === 'abort') {
      this.abort(new PeerAbortedError(`rank ${kind.value.rank} gave up: ${kind.value.reason}`));
    } else {
      this.abort(
        new ProtocolError(
          `${this.receivesFrom} sent an unexpected ${kind?.$case ?? 'empty'} message`,
          status.INVALID_ARGUMENT,
        ),
      );
    }
  }
}

/** Opens the stream into rank `prev`'s PeerService, on whose response side this rank receives. */
function dial(spec: RingLinkSpec, prev: number): Promise<Dialled> {
  const address = spec.peerAddresses[prev];
  return openHelloStream<PeerServiceClient, ExchangeRequest, ExchangeResponse>({
    client: PeerServiceClient,
    address,
    peer: `rank ${prev}`,
    timeoutMs: spec.timeoutMs,
    settings: spec.settings,
    credentials: spec.credentials,
    credential: spec.credential,
    open: (client, metadata) => client.exchange(metadata),
    hello: {
      kind: {
        $case: 'hello',
        value: {
          protocolVersion: PROTOCOL_VERSION,
          generation: spec.generation,
          worldSize: spec.worldSize,
          rank: spec.rank,
          peerRank: prev,
        },
      },
    },
    refusal: (answer: ExchangeResponse) => {
      const hello = answer.kind?.$case === 'hello' ? answer.kind.value : undefined;
      return hello?.rank === prev && hello.generation === spec.generation
        ? undefined
        : `${address} did not answer as rank ${prev} of generation ${spec.generation}`;
    },
  });
}
