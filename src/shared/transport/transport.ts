import type { Chunk, CollectiveOp, Encoding, Phase } from '../../gen/tfjs_ddp/v1/collective.js';

export type { Chunk };

/**
 * Everything a receiver knows about the next chunk of one operation. A chunk that
 * differs in any field is a protocol error reported at once (naming both sides),
 * never waited on.
 */
export interface ChunkExpectation {
  readonly sequence: number;
  readonly op: CollectiveOp;
  readonly phase: Phase;
  readonly step: number;
  readonly chunkIndex: number;
  readonly totalElements: number;
  readonly offset: number;
  readonly elementCount: number;
  readonly encoding: Encoding;
  readonly bucket: number;
  readonly rootRank: number;
}

/** Payload bytes and chunks moved by one transport (headers not counted). */
export interface TransportStats {
  bytesSent: number;
  bytesReceived: number;
  chunksSent: number;
  chunksReceived: number;
}

/**
 * Moves chunks for one rank and one membership generation: out to one peer and in
 * from one peer (the next and previous rank of a ring, or the reduction point of a
 * star), over ordered, long-lived streams. Chunks of several operations may be in
 * flight at once; receive() demultiplexes them by sequence.
 *
 * Once anything fails (a deadline, a lost peer, a protocol error) the transport is
 * broken for good: every pending and later call rejects with that error. A new
 * generation builds a new transport.
 */
export interface ChunkTransport {
  /** The peer send() reaches, for messages ("rank 2", "the coordinator"). */
  readonly sendsTo: string;
  /** The peer receive() hears from. */
  readonly receivesFrom: string;
  readonly stats: TransportStats;
  /**
   * Queues `chunk` for the peer. Resolves once the stream accepted it; when the
   * stream's buffer is full this waits for it to drain, up to `timeoutMs`, then
   * rejects with DeadlineExceededError. The payload is copied (encoded for the
   * wire) before send() returns, so the caller may change it at once: a payload
   * may be a view of the caller's working buffer.
   */
  send(chunk: Chunk, timeoutMs: number): Promise<void>;
  /**
   * The next chunk of operation `expected.sequence`. Rejects with ProtocolError at
   * once when that chunk differs from `expected`, with PeerLostError or
   * PeerAbortedError when the peer is gone, and with DeadlineExceededError when
   * nothing arrives within `timeoutMs`. The caller owns the returned payload.
   */
  receive(expected: ChunkExpectation, timeoutMs: number): Promise<Chunk>;
  /**
   * Resolves once every chunk sent so far has left this process (see
   * BackpressureWriter.flushed); rejects with DeadlineExceededError after
   * `timeoutMs` or with the transport's failure.
   */
  flushed(timeoutMs: number): Promise<void>;
  /**
   * Breaks the transport: rejects every pending and later call with `error` and
   * tells the peers why (best effort), so that they fail now rather than at their
   * deadline. Idempotent; the first error wins.
   */
  abort(error: Error): void;
  /** Releases the streams. Peers that still wait see the peer as lost. */
  close(): Promise<void>;
}
