import { type Server, type ServerDuplexStream, status } from '@grpc/grpc-js';
import type { Chunk } from '../../gen/tfjs_ddp/v1/collective.js';
import {
  type ReduceRequest,
  type ReduceResponse,
  ReductionServiceService,
} from '../../gen/tfjs_ddp/v1/reduction.js';
import { BackpressureWriter } from '../transport/backpressure-writer.js';
import { chunkMessage, chunkSerializer } from '../transport/chunk-wire.js';
import { PeerAbortedError, PeerLostError, ProtocolError } from '../transport/errors.js';
import type { ServiceRegistrar } from '../transport/grpc-server.js';
import { PROTOCOL_VERSION } from '../transport/grpc-settings.js';
import { refuseCall } from '../transport/refuse-call.js';
import { type StarEndpoint, StarReducer } from './star-reducer.js';
import { loadWasmCodec } from './wasm-codec.js';

type ReduceCall = ServerDuplexStream<ReduceRequest, ReduceResponse>;

/** The generated definition, with chunks going out through the one-copy serializer. */
const REDUCTION_SERVICE = {
  reduce: {
    ...ReductionServiceService.reduce,
    responseSerialize: chunkSerializer(ReductionServiceService.reduce.responseSerialize),
  },
};

export interface StarReductionOptions {
  /**
   * How long the reduction point waits for a rank's part of an operation, or for
   * a worker to read its results. Keep it below the workers' collective timeout:
   * the coordinator knows which rank is missing, so it should speak first.
   */
  timeoutMs: number;
  /**
   * How long, from the start of a generation, an operation waits for a rank that
   * has not connected yet; default 10 × timeoutMs.
   */
  connectTimeoutMs?: number;
  /** How long a new stream may take to send its hello. */
  helloTimeoutMs?: number;
}

/**
 * The coordinator's side of the star all-reduce, as a gRPC service the
 * coordinator process hosts on its server: one Reduce stream per worker, joined
 * to the StarReducer of the current generation. Streams that cannot belong to it
 * (unknown rank, other generation, another protocol version, a second stream for
 * a rank) are refused with a status saying why; the server keeps serving.
 */
export class StarReductionService implements ServiceRegistrar {
  readonly serviceName = 'tfjs_ddp.v1.ReductionService';
  private reducer: StarReducer | undefined;
  /** The result chunk the reducer sends to every rank, encoded once for all of them. */
  private readonly messages = new WeakMap<Chunk, ReturnType<typeof chunkMessage>>();

  constructor(private readonly opts: StarReductionOptions) {
    // The SIMD sums are ready long before the first chunk; until then (or if they
    // cannot load) the JavaScript loops compute the same bits.
    loadWasmCodec().catch(() => undefined);
  }

  addToServer(server: Server): void {
    server.addService(REDUCTION_SERVICE, { reduce: (call: ReduceCall) => this.greet(call) });
  }

  /**
   * Starts reducing for `generation` of `worldSize` ranks. The previous
   * generation's streams are ended with ABORTED.
   */
  startGeneration(generation: number, worldSize: number): void {
    this.stop(`generation ${generation} replaced it`);
    const { timeoutMs, connectTimeoutMs = 10 * timeoutMs } = this.opts;
    this.reducer = new StarReducer(generation, worldSize, timeoutMs, connectTimeoutMs);
  }

  /** Ends the current generation's streams with ABORTED and `reason`. */
  stop(reason: string): void {
    const reducer = this.reducer;
    this.reducer = undefined;
    reducer?.fail(
      new PeerAbortedError(`the coordinator ended generation ${reducer.generation}: ${reason}`),
    );
  }

  private greet(call: ReduceCall): void {
    const timer = setTimeout(
      () => refuseCall(call, status.DEADLINE_EXCEEDED, 'no ReductionHello within the deadline'),
      this.opts.helloTimeoutMs ?? 30_000,
    );
    call.on('cancelled', () => clearTimeout(timer));
    call.once('data', (first: ReduceRequest) => {
      clearTimeout(timer);
      call.pause();
      if (first.kind?.$case !== 'hello') {
        refuseCall(call, status.INVALID_ARGUMENT, 'the first message must be a ReductionHello');
        return;
      }
      const { protocolVersion, generation, worldSize, rank } = first.kind.value;
      const reducer = this.reducer;
      let problem: string | undefined;
      if (protocolVersion !== PROTOCOL_VERSION) {
        problem = `protocol version ${protocolVersion} is not the coordinator's version ${PROTOCOL_VERSION}`;
      } else if (!reducer) {
        problem = 'the coordinator runs no star all-reduce generation now';
      } else if (generation !== reducer.generation || worldSize !== reducer.worldSize) {
        problem = `generation ${generation} of ${worldSize} ranks is not the coordinator's generation ${reducer.generation} of ${reducer.worldSize}`;
      }
      if (problem || !reducer) {
        refuseCall(call, status.FAILED_PRECONDITION, problem ?? '');
        return;
      }
      this.join(call, reducer, rank);
    });
  }

  private encoded(chunk: Chunk): ReturnType<typeof chunkMessage> {
    let message = this.messages.get(chunk);
    if (!message) {
      message = chunkMessage(chunk);
      this.messages.set(chunk, message);
    }
    return message;
  }

  private join(call: ReduceCall, reducer: StarReducer, rank: number): void {
    const writer = new BackpressureWriter(call, 'the coordinator', `rank ${rank}`);
    let open = true;
    const endpoint: StarEndpoint = {
      send: (chunk) => writer.write(this.encoded(chunk), this.opts.timeoutMs),
      abort: (error) => {
        writer.fail(error);
        if (!open) return;
        open = false;
        call.write({ kind: { $case: 'abort', value: { reason: error.message } } });
        refuseCall(call, error.code, error.message);
      },
    };
    try {
      reducer.attach(rank, endpoint);
    } catch (error) {
      const e = error as ProtocolError;
      refuseCall(call, e.code, e.message);
      return;
    }
    call.write({
      kind: {
        $case: 'hello',
        value: {
          protocolVersion: PROTOCOL_VERSION,
          generation: reducer.generation,
          worldSize: reducer.worldSize,
          rank,
        },
      },
    });
    call.on('data', (message: ReduceRequest) => {
      const kind = message.kind;
      if (kind?.$case === 'chunk') reducer.contribute(rank, kind.value);
      else if (kind?.$case === 'abort') {
        open = false;
        reducer.fail(new PeerAbortedError(`rank ${rank} gave up: ${kind.value.reason}`), rank);
      } else {
        reducer.fail(
          new ProtocolError(`rank ${rank} sent a second hello`, status.INVALID_ARGUMENT),
          rank,
        );
      }
    });
    call.on('end', () => {
      reducer.detach(rank);
      if (open) {
        open = false;
        call.end();
      }
    });
    call.on('cancelled', () => {
      open = false;
      reducer.detach(rank, new PeerLostError('the stream was cancelled (the worker went away)'));
    });
    call.resume();
  }
}
