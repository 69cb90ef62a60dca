import type { TransportStats } from '../transport/transport.js';

/** How an all-reduce encodes values on the wire. Sums are accumulated in float32 either way. */
export type Compression = 'none' | 'bf16' | 'fp16';

export interface AllReduceOptions {
  /**
   * 'bf16' and 'fp16' halve the bytes on the wire (round to nearest even; fp16 overflows to
   * infinity above 65504, the caller scales); default 'none'.
   */
  compression?: Compression;
  /** The caller's label for the operation (the gradient bucket), checked across ranks. */
  bucket?: number;
  /**
   * Called once, as soon as this rank knows that every other rank has entered the operation
   * (at once in a world of one): the time before it is waiting for the slowest rank, the time
   * after it is transfer. It costs no message: ring and star see it in the chunks they receive.
   * `atMs` (the caller thread's performance.now()) says when it happened if that was before the
   * call: a collective run by another thread (TransportThread) reports it once this one is free.
   */
  onPeersReady?: (atMs?: number) => void;
}

/** Who takes part in a collective: fixed for its whole life. */
export interface CollectiveMembership {
  readonly rank: number;
  readonly worldSize: number;
  readonly generation: number;
}

export interface CollectiveTuning {
  /** Deadline of every single wait (a chunk, a full stream draining), in milliseconds. */
  timeoutMs: number;
  /** Largest chunk payload (float32 bytes) on the wire. */
  chunkBytes: number;
}

export const DEFAULT_CHUNK_BYTES = 1024 * 1024;

/**
 * Collective operations among the ranks of one membership generation, PyTorch
 * ProcessGroup style: built for one generation and never mutated; after any
 * change of membership, or after any failure, a new one is built.
 *
 * Ordering: every rank must start the same operations in the same order (the
 * n-th operation has sequence n on every rank; chunks carry it, so a rank that
 * calls something else fails at once with both sides named). Several operations
 * may be in flight at once; start them in order without awaiting each.
 *
 * Buffers: the caller owns `data` and must not touch it until the promise
 * settles. After a rejection its content is unspecified.
 *
 * Failure: every wait has the deadline `timeoutMs`; a dead, stalled or
 * disagreeing peer makes the pending operations reject with a TransportError
 * naming the rank, the operation and the phase, and every later call rejects with
 * the same error. Peers are told, so they fail too instead of waiting.
 */
export interface Collective extends CollectiveMembership {
  /** Replaces `data` on every rank by the elementwise sum over all ranks (bit-identical on all ranks). */
  allReduceSum(data: Float32Array, opts?: AllReduceOptions): Promise<void>;
  /**
   * Replaces `data` on every rank by the root's `data` (exactly, float32). The
   * root returns once its data is sent (as MPI's broadcast may); a failure on
   * the way then shows in its next operation.
   */
  broadcast(data: Float32Array, root: number): Promise<void>;
  /** Resolves once every rank has entered the barrier. */
  barrier(): Promise<void>;
  /** Payload bytes and chunks this rank moved. */
  readonly stats: TransportStats;
  /** Releases the links; peers see this rank leave. Pending operations reject. */
  close(): Promise<void>;
}
