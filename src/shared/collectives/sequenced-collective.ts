import { type Chunk, Encoding } from '../../gen/tfjs_ddp/v1/collective.js';
import { UserError } from '../errors.js';
import type { ChunkExpectation, ChunkTransport, TransportStats } from '../transport/transport.js';
import type {
  AllReduceOptions,
  Collective,
  CollectiveMembership,
  CollectiveTuning,
  Compression,
} from './collective.js';

const NO_PADDING = new Uint8Array(0);

/** What every operation needs: its sequence number, how its values travel, its deadline. */
export interface OpContext {
  readonly sequence: number;
  readonly encoding: Encoding;
  readonly bucket: number;
  /** Deadline of each wait in this operation. */
  readonly timeoutMs: number;
  /** See AllReduceOptions.onPeersReady; the algorithm calls it when its chunks prove it. */
  readonly peersReady?: () => void;
}

/**
 * What ring and star share: sequence numbers handed out in call order, argument
 * checks, and the rule that the first failure breaks the collective for good
 * (the transport is aborted, which tells the peers).
 */
export abstract class SequencedCollective implements Collective {
  readonly rank: number;
  readonly worldSize: number;
  readonly generation: number;
  protected readonly chunkElements: number;
  private nextSequence = 0;
  private failure: Error | undefined;

  constructor(
    membership: CollectiveMembership,
    protected readonly transport: ChunkTransport,
    protected readonly tuning: CollectiveTuning,
  ) {
    this.rank = membership.rank;
    this.worldSize = membership.worldSize;
    this.generation = membership.generation;
    this.chunkElements = Math.max(1, Math.floor(tuning.chunkBytes / 4));
  }

  get stats(): TransportStats {
    return this.transport.stats;
  }

  allReduceSum(data: Float32Array, opts: AllReduceOptions = {}): Promise<void> {
    const ctx = this.nextOp(opts);
    return this.run(ctx, () => this.reduce(ctx, data, false));
  }

  broadcast(data: Float32Array, root: number): Promise<void> {
    const ctx = this.nextOp({});
    if (!Number.isInteger(root) || root < 0 || root >= this.worldSize) {
      return Promise.reject(
        new UserError(`broadcast root ${root} is not a rank of ${this.worldSize}`),
      );
    }
    return this.run(ctx, () => this.spread(ctx, data, root));
  }

  barrier(): Promise<void> {
    const ctx = this.nextOp({});
    return this.run(ctx, () => this.reduce(ctx, new Float32Array(0), true));
  }

  /**
   * A barrier whose waits may last `timeoutMs`: returns once every rank of the
   * generation is connected and here, so that the deadlines of the operations
   * that follow measure work, not start-up. createCollective calls it.
   */
  ready(timeoutMs: number): Promise<void> {
    const ctx = { ...this.nextOp({}), timeoutMs };
    return this.run(ctx, () => this.reduce(ctx, new Float32Array(0), true));
  }

  close(): Promise<void> {
    this.failure ??= new UserError(`the collective of rank ${this.rank} is closed`);
    return this.transport.close();
  }

  /** Sums `data` over all ranks in place (`barrier`: zero elements, labelled as a barrier). */
  protected abstract reduce(ctx: OpContext, data: Float32Array, barrier: boolean): Promise<void>;

  /** Copies the root's `data` to every rank. */
  protected abstract spread(ctx: OpContext, data: Float32Array, root: number): Promise<void>;

  /** The chunk this rank sends for `e`, carrying `payload` (which it hands over). */
  protected chunk(e: ChunkExpectation, payload: Uint8Array): Chunk {
    return {
      ...e,
      generation: this.generation,
      senderRank: this.rank,
      payload,
      padding: NO_PADDING,
    };
  }

  /** [offset, count) of chunk `index` when `length` elements are cut into chunks (at least one). */
  protected chunkSpan(start: number, length: number, index: number): [number, number] {
    const offset = start + index * this.chunkElements;
    return [offset, Math.min(this.chunkElements, start + length - offset)];
  }

  protected chunkCount(length: number): number {
    return Math.max(1, Math.ceil(length / this.chunkElements));
  }

  private nextOp(opts: AllReduceOptions): OpContext {
    // Taken synchronously, so that the call order fixes the sequence.
    return {
      sequence: this.nextSequence++,
      encoding: WIRE_ENCODING[opts.compression ?? 'none'],
      bucket: opts.bucket ?? 0,
      timeoutMs: this.tuning.timeoutMs,
      peersReady: opts.onPeersReady,
    };
  }

  /**
   * Runs an operation; it completes once this rank has what it needs *and* what it
   * sent has left the process, so that a caller that blocks its event loop next (a
   * training step) does not hold back the data its peers are waiting for.
   */
  private async run(ctx: OpContext, op: () => Promise<void>): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.worldSize === 1) {
      ctx.peersReady?.();
      return;
    }
    try {
      await op();
      await this.transport.flushed(ctx.timeoutMs);
    } catch (error) {
      this.failure ??= error as Error;
      this.transport.abort(this.failure);
      throw this.failure;
    }
  }
}

const WIRE_ENCODING: Record<Compression, Encoding> = {
  none: Encoding.ENCODING_FLOAT32_LE,
  bf16: Encoding.ENCODING_BF16_LE,
  fp16: Encoding.ENCODING_FP16_LE,
};
