import {
  type ChannelCredentials,
  type ClientDuplexStream,
  makeGenericClientConstructor,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import {
  type ReduceRequest,
  type ReduceResponse,
  type ReductionServiceClient,
  ReductionServiceService,
} from '../../gen/tfjs_ddp/v1/reduction.js';
import { BackpressureWriter } from './backpressure-writer.js';
import { ChunkInbox } from './chunk-inbox.js';
import { chunkMessage, chunkSerializer } from './chunk-wire.js';
import { openHelloStream, statusError } from './client-stream.js';
import { PeerAbortedError, PeerLostError, ProtocolError } from './errors.js';
import { type GrpcSettings, PROTOCOL_VERSION } from './grpc-settings.js';
import type { Chunk, ChunkExpectation, ChunkTransport, TransportStats } from './transport.js';

export interface StarLinkSpec {
  rank: number;
  worldSize: number;
  generation: number;
  /** host:port of the coordinator's ReductionService. */
  address: string;
  /** Deadline for connecting. */
  timeoutMs: number;
  settings?: Partial<GrpcSettings>;
  /** Default: insecure (plain TCP). */
  credentials?: ChannelCredentials;
  /** The generation's credential (Membership.credential); absent: the call carries none. */
  credential?: string;
}

type ReduceCall = ClientDuplexStream<ReduceRequest, ReduceResponse>;

/** The generated client, with chunks going out through the one-copy serializer. */
const ReductionClient = makeGenericClientConstructor(
  {
    reduce: {
      ...ReductionServiceService.reduce,
      requestSerialize: chunkSerializer(ReductionServiceService.reduce.requestSerialize),
    },
  },
  'tfjs_ddp.v1.ReductionService',
) as unknown as typeof ReductionServiceClient;

/**
 * A worker's link to the reduction point of the star all-reduce: one long-lived
 * Reduce stream that carries this rank's chunks up and the sums down.
 */
export class GrpcStarTransport implements ChunkTransport {
  readonly stats: TransportStats = {
    bytesSent: 0,
    bytesReceived: 0,
    chunksSent: 0,
    chunksReceived: 0,
  };
  readonly sendsTo = 'the coordinator';
  readonly receivesFrom = 'the coordinator';
  private readonly inbox: ChunkInbox;
  private readonly writer: BackpressureWriter<ReduceRequest>;
  private failure: Error | undefined;
  private open = true;

  /**
   * Opens the stream and waits for the coordinator to accept it. Rejects with
   * DeadlineExceededError when the coordinator is not there within
   * `spec.timeoutMs`, or with its refusal (for example FAILED_PRECONDITION for a
   * generation it is not running).
   */
  static async connect(spec: StarLinkSpec): Promise<GrpcStarTransport> {
    const peer = 'the coordinator';
    const { client, call, early } = await openHelloStream<
      ReductionServiceClient,
      ReduceRequest,
      ReduceResponse
    >({
      client: ReductionClient,
      address: spec.address,
      peer,
      timeoutMs: spec.timeoutMs,
      settings: spec.settings,
      credentials: spec.credentials,
      credential: spec.credential,
      open: (c, metadata) => c.reduce(metadata),
      hello: {
        kind: {
          $case: 'hello',
          value: {
            protocolVersion: PROTOCOL_VERSION,
            generation: spec.generation,
            worldSize: spec.worldSize,
            rank: spec.rank,
          },
        },
      },
      refusal: (answer: ReduceResponse) =>
        answer.kind?.$case === 'hello' && answer.kind.value.generation === spec.generation
          ? undefined
          : `${peer} at ${spec.address} did not accept generation ${spec.generation}`,
    });
    return new GrpcStarTransport(spec, client, call, early);
  }

  private constructor(
    private readonly spec: StarLinkSpec,
    private readonly client: ReductionServiceClient,
    private readonly call: ReduceCall,
    early: { error?: ServiceError },
  ) {
    this.inbox = new ChunkInbox({
      rank: spec.rank,
      peer: this.receivesFrom,
      generation: spec.generation,
      senderRank: undefined,
      stats: this.stats,
    });
    this.writer = new BackpressureWriter(call, `rank ${spec.rank}`, this.sendsTo);
    call.on('data', (message: ReduceResponse) => this.onMessage(message));
    const failed = (error: ServiceError) => {
      this.open = false;
      this.abort(statusError(error, `rank ${spec.rank}'s stream to the coordinator failed`));
    };
    call.on('error', failed);
    call.on('end', () => {
      this.open = false;
      const error = new PeerLostError('the coordinator closed the stream');
      this.inbox.end(error);
      this.writer.fail(error);
    });
    call.resume();
    if (early.error) failed(early.error);
  }

  send(chunk: Chunk, timeoutMs: number): Promise<void> {
    const sent = this.writer.write(chunkMessage(chunk), timeoutMs);
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
    if (this.open) {
      this.open = false;
      this.call.write({
        kind: { $case: 'abort', value: { rank: this.spec.rank, reason: error.message } },
      });
      this.call.end();
    }
  }

  async close(): Promise<void> {
    if (this.open) {
      this.open = false;
      this.call.end();
    }
    const closed = new PeerLostError(`rank ${this.spec.rank} closed its transport`);
    this.inbox.fail(closed);
    this.writer.fail(closed);
    this.client.close();
  }

  private onMessage(message: ReduceResponse): void {
    const kind = message.kind;
    if (kind?.$case === 'chunk') {
      try {
        this.inbox.push(kind.value);
      } catch (error) {
        this.abort(error as Error);
      }
    } else if (kind?.$case === 'abort') {
      this.abort(new PeerAbortedError(kind.value.reason));
    } else {
      this.abort(
        new ProtocolError(
          `the coordinator sent an unexpected ${kind?.$case ?? 'empty'} message`,
          status.INVALID_ARGUMENT,
        ),
      );
    }
  }
}
