import type { Chunk } from '../../gen/tfjs_ddp/v1/collective.js';
import { ChunkInbox } from './chunk-inbox.js';
import { PeerAbortedError, PeerLostError } from './errors.js';
import type { ChunkExpectation, ChunkTransport, TransportStats } from './transport.js';

/** How an in-memory transport reaches the other end (set up by whoever wires the ends). */
export interface InMemoryWiring {
  /** Hands a chunk (already copied) to the receiving end. */
  deliver(chunk: Chunk): void;
  /** Tells the peers this end gave up, and why. */
  abort(reason: string): void;
  /** Tells the peers this end went away. */
  close(): void;
  /** Ring: tells the next rank what this end has long been waiting for. */
  stalled?(waitingFor: number): void;
}

export interface InMemoryEnd {
  rank: number;
  generation: number;
  sendsTo: string;
  receivesFrom: string;
  /** The sender_rank arriving chunks must carry; undefined: not checked. */
  senderRank: number | undefined;
}

/**
 * An in-process ChunkTransport with the semantics of the gRPC ones (ordered
 * delivery in a later turn of the event loop, payloads copied as if serialized,
 * the same errors and deadlines), for unit tests of the algorithms. It has no
 * backpressure: send() never waits.
 */
export class InMemoryTransport implements ChunkTransport {
  readonly stats: TransportStats = {
    bytesSent: 0,
    bytesReceived: 0,
    chunksSent: 0,
    chunksReceived: 0,
  };
  readonly sendsTo: string;
  readonly receivesFrom: string;
  private readonly inbox: ChunkInbox;
  private failure: Error | undefined;
  private peerGone: Error | undefined;
  private closed = false;
  private wiring: InMemoryWiring | undefined;

  constructor(private readonly end: InMemoryEnd) {
    this.sendsTo = end.sendsTo;
    this.receivesFrom = end.receivesFrom;
    this.inbox = new ChunkInbox({
      rank: end.rank,
      peer: end.receivesFrom,
      generation: end.generation,
      senderRank: end.senderRank,
      stats: this.stats,
      onStall: (waitingFor) => setImmediate(() => this.wiring?.stalled?.(waitingFor)),
    });
  }

  /** Connects this end; called once by the code that builds the network. */
  wire(wiring: InMemoryWiring): void {
    this.wiring = wiring;
  }

  send(chunk: Chunk, _timeoutMs: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.peerGone) return Promise.reject(this.peerGone);
    const copy = { ...chunk, payload: new Uint8Array(chunk.payload) };
    this.stats.chunksSent += 1;
    this.stats.bytesSent += copy.payload.byteLength;
    setImmediate(() => this.wiring?.deliver(copy));
    return Promise.resolve();
  }

  receive(expected: ChunkExpectation, timeoutMs: number): Promise<Chunk> {
    return this.inbox.receive(expected, timeoutMs);
  }

  /** Chunks reach the peer's inbox synchronously in send(): nothing is ever left to flush. */
  flushed(): Promise<void> {
    return this.failure ? Promise.reject(this.failure) : Promise.resolve();
  }

  abort(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    this.inbox.fail(error);
    const reason = error.message;
    setImmediate(() => this.wiring?.abort(reason));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.inbox.fail(new PeerLostError(`rank ${this.end.rank} closed its transport`));
    setImmediate(() => this.wiring?.close());
  }

  /** The other end delivers a chunk; a chunk that cannot belong here breaks the transport. */
  arrive(chunk: Chunk): void {
    if (this.closed) return;
    try {
      this.inbox.push(chunk);
    } catch (error) {
      this.abort(error as Error);
    }
  }

  /** The peer this end receives from has long been waiting for `rank`. */
  upstreamWaiting(rank: number): void {
    if (!this.closed) this.inbox.upstreamWaiting(rank);
  }

  /** A peer gave up, saying `message`: fail everything here too, and pass the word on. */
  peerAborted(message: string): void {
    if (this.closed) return;
    this.abort(new PeerAbortedError(message));
  }

  /** The peer this end receives from went away: chunks already here stay receivable. */
  senderClosed(peer: string): void {
    this.inbox.end(this.leftError(peer));
  }

  /** The peer this end sends to went away: later sends fail. */
  receiverClosed(peer: string): void {
    this.peerGone ??= this.leftError(peer);
  }

  private leftError(peer: string): PeerLostError {
    return new PeerLostError(
      `${peer} closed its stream (it left generation ${this.end.generation})`,
    );
  }
}

/**
 * The transports of a ring of `worldSize` ranks in one process: rank r sends to
 * rank r+1 and receives from rank r-1 (mod worldSize).
 */
export function createInMemoryRing(worldSize: number, generation: number): InMemoryTransport[] {
  const ends = Array.from({ length: worldSize }, (_, rank) => {
    const next = (rank + 1) % worldSize;
    const prev = (rank + worldSize - 1) % worldSize;
    return new InMemoryTransport({
      rank,
      generation,
      sendsTo: `rank ${next}`,
      receivesFrom: `rank ${prev}`,
      senderRank: prev,
    });
  });
  ends.forEach((end, rank) => {
    const next = ends[(rank + 1) % worldSize];
    const prev = ends[(rank + worldSize - 1) % worldSize];
    const self = `rank ${rank}`;
    end.wire({
      deliver: (chunk) => next.arrive(chunk),
      abort: (reason) => {
        next.peerAborted(`${self} gave up: ${reason}`);
        prev.peerAborted(`${self} gave up: ${reason}`);
      },
      close: () => {
        next.senderClosed(self);
        prev.receiverClosed(self);
      },
      stalled: (waitingFor) => next.upstreamWaiting(waitingFor),
    });
  });
  return ends;
}
