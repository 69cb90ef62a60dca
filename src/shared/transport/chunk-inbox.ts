import { status } from '@grpc/grpc-js';
import type { Chunk } from '../../gen/tfjs_ddp/v1/collective.js';
import { chunkMismatch, describeChunk, payloadMismatch } from './chunk-format.js';
import { DeadlineExceededError, ProtocolError } from './errors.js';
import type { ChunkExpectation, TransportStats } from './transport.js';

export interface InboxOptions {
  /** This end's rank. */
  rank: number;
  /** Names the sender in messages ("rank 3", "the coordinator"). */
  peer: string;
  generation: number;
  /** The sender_rank every chunk must carry; undefined: not checked. */
  senderRank: number | undefined;
  stats: TransportStats;
  /**
   * Ring only: called when a receive has waited a quarter of its deadline (and
   * again whenever the chain below changes), with the rank at the end of the
   * chain of waits, for the transport to tell the next rank.
   */
  onStall?: (waitingFor: number) => void;
}

interface Waiter {
  expected: ChunkExpectation;
  resolve: (chunk: Chunk) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
  notice: NodeJS.Timeout;
  stalled: boolean;
}

/**
 * The receiving half shared by every transport: chunks arrive from one stream in
 * the order the peer sent them and are queued per operation (sequence), so that
 * several operations may be in flight. Chunks of an operation this rank has not
 * started yet wait in memory until it does.
 *
 * In a ring every rank that waits ends up waiting, directly or not, for the rank
 * that stalled, and all their deadlines expire at about the same time. Waiting
 * notices passed down the ring let each timeout name the rank at the end of the
 * chain instead of the innocent predecessor.
 */
export class ChunkInbox {
  private readonly queues = new Map<number, Chunk[]>();
  private readonly waiters = new Map<number, Waiter>();
  private readonly self: string;
  private failure: Error | undefined;
  private ended: Error | undefined;
  /** What the sender last said it waits for, while it sends nothing. */
  private upstreamWaitsFor: number | undefined;

  constructor(private readonly opts: InboxOptions) {
    this.self = `rank ${opts.rank}`;
  }

  /**
   * Delivers a chunk that arrived. Throws ProtocolError when the chunk cannot
   * belong to this stream (another generation, another sender, a payload of the
   * wrong size); the caller then breaks the stream.
   */
  push(chunk: Chunk): void {
    if (this.failure) return;
    const { peer, generation, senderRank, stats } = this.opts;
    if (chunk.generation !== generation) {
      throw new ProtocolError(
        `${peer} sent ${this.self} a chunk of generation ${chunk.generation}, but ${this.self} is at generation ${generation}`,
        status.FAILED_PRECONDITION,
      );
    }
    if (senderRank !== undefined && chunk.senderRank !== senderRank) {
      throw new ProtocolError(
        `${peer} sent ${this.self} a chunk labelled as from rank ${chunk.senderRank}`,
        status.INVALID_ARGUMENT,
      );
    }
    const bad = payloadMismatch(chunk, peer);
    if (bad) throw new ProtocolError(bad, status.INVALID_ARGUMENT);
    stats.chunksReceived += 1;
    stats.bytesReceived += chunk.payload.byteLength;
    this.upstreamWaitsFor = undefined;
    const waiter = this.waiters.get(chunk.sequence);
    if (waiter) {
      this.release(chunk.sequence, waiter);
      this.settle(chunk, waiter.expected, waiter.resolve, waiter.reject);
      return;
    }
    const queue = this.queues.get(chunk.sequence);
    if (queue) queue.push(chunk);
    else this.queues.set(chunk.sequence, [chunk]);
  }

  /**
   * The sender says it has been waiting for `rank` (the end of its chain of
   * waits). Passed on if this end is stalled too.
   */
  upstreamWaiting(rank: number): void {
    // A chain that comes back here is two ranks waiting for each other: keep the sender as the suspect.
    if (rank === this.opts.rank || rank === this.upstreamWaitsFor) return;
    this.upstreamWaitsFor = rank;
    if ([...this.waiters.values()].some((w) => w.stalled)) this.opts.onStall?.(rank);
  }

  /**
   * The next chunk of operation `expected.sequence`, checked against `expected`
   * (ProtocolError at once when it differs). Rejects with DeadlineExceededError
   * after `timeoutMs`, or with the inbox's failure. One receive per operation at a
   * time.
   */
  receive(expected: ChunkExpectation, timeoutMs: number): Promise<Chunk> {
    return new Promise<Chunk>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      const { sequence } = expected;
      if (this.waiters.has(sequence)) {
        return reject(new Error(`two receives at once for operation #${sequence}`));
      }
      const queue = this.queues.get(sequence);
      const chunk = queue?.shift();
      if (chunk) {
        if (queue?.length === 0) this.queues.delete(sequence);
        return this.settle(chunk, expected, resolve, reject);
      }
      if (this.ended) return reject(this.ended);
      const waiter: Waiter = {
        expected,
        resolve,
        reject,
        stalled: false,
        timer: setTimeout(() => {
          this.release(sequence, waiter);
          reject(new DeadlineExceededError(this.timeoutMessage(expected, timeoutMs)));
        }, timeoutMs),
        notice: setTimeout(() => {
          waiter.stalled = true;
          const waitingFor = this.upstreamWaitsFor ?? this.opts.senderRank;
          if (waitingFor !== undefined) this.opts.onStall?.(waitingFor);
        }, timeoutMs / 4),
      };
      this.waiters.set(sequence, waiter);
    });
  }

  /**
   * The peer closed its stream in good order: chunks already here can still be
   * received; waits for anything else reject with `error`.
   */
  end(error: Error): void {
    if (this.ended || this.failure) return;
    this.ended = error;
    this.rejectWaiters(error);
  }

  /** Rejects every pending and later receive with `error` (the first failure wins). */
  fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    this.rejectWaiters(error);
    this.queues.clear();
  }

  private timeoutMessage(expected: ChunkExpectation, timeoutMs: number): string {
    const { peer } = this.opts;
    const chain =
      this.upstreamWaitsFor === undefined
        ? ''
        : ` (${peer} was itself waiting for rank ${this.upstreamWaitsFor})`;
    return `${this.self} timed out after ${timeoutMs} ms waiting for ${peer}${chain} to send ${describeChunk(expected)}`;
  }

  private rejectWaiters(error: Error): void {
    for (const [sequence, waiter] of this.waiters) {
      this.release(sequence, waiter);
      waiter.reject(error);
    }
  }

  private release(sequence: number, waiter: Waiter): void {
    clearTimeout(waiter.timer);
    clearTimeout(waiter.notice);
    this.waiters.delete(sequence);
  }

  private settle(
    chunk: Chunk,
    expected: ChunkExpectation,
    resolve: (chunk: Chunk) => void,
    reject: (error: Error) => void,
  ): void {
    const mismatch = chunkMismatch(chunk, expected, this.opts.peer, this.self);
    if (mismatch) reject(new ProtocolError(mismatch, status.INVALID_ARGUMENT));
    else resolve(chunk);
  }
}
