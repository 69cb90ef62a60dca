import { epochPermutation } from '../data/permutation.js';

/**
 * Where the next global batch starts: `offset` samples into the permutation of `epoch`
 * (epochPermutation(trainCount, seed, epoch)). Saved in checkpoints; it stays meaningful when a
 * run resumes with another global batch size (another number of workers).
 */
export interface DataCursor {
  readonly epoch: number;
  readonly offset: number;
}

/** One global batch: the dataset indices to train on, in order, and the epoch they belong to. */
export interface GlobalBatch {
  readonly epoch: number;
  readonly indices: Uint32Array;
  /** True when this batch finishes its epoch (the place to evaluate). */
  readonly endsEpoch: boolean;
}

/** Steps in one epoch: the last batch of an epoch may be smaller; a batch never spans two. */
export function stepsPerEpoch(trainCount: number, globalBatch: number): number {
  return Math.max(1, Math.ceil(trainCount / globalBatch));
}

/**
 * The sampler: which global sample indices each step trains on, and (shardIndices) which of
 * them rank r of a world of N trains on. It cuts global batches of `globalBatch` samples, in
 * order, from the per-epoch permutations of the training set (see data/permutation.ts). Pure
 * apart from its cursor: two samplers with the same (trainCount, seed, globalBatch, cursor)
 * yield the same batches in any process. The coordinator's loop owns the run's one sampler
 * and sends each rank its shard, in a world of one as in a world of N.
 */
export class Sampler {
  private permutation: Uint32Array | undefined;
  private permutationEpoch = -1;
  private position: DataCursor;

  constructor(
    readonly trainCount: number,
    readonly seed: number,
    readonly globalBatch: number,
    cursor: DataCursor = { epoch: 0, offset: 0 },
  ) {
    if (!(trainCount > 0)) throw new RangeError(`cannot sample from ${trainCount} images`);
    if (!(globalBatch > 0))
      throw new RangeError(`global batch must be positive, got ${globalBatch}`);
    if (cursor.offset < 0 || cursor.offset >= trainCount) {
      throw new RangeError(`cursor offset ${cursor.offset} is outside 0..${trainCount - 1}`);
    }
    this.position = { ...cursor };
  }

  /** The position of the next batch (what a checkpoint stores). */
  get cursor(): DataCursor {
    return this.position;
  }

  /** Returns the next global batch and advances the cursor (to the next epoch after its end). */
  next(): GlobalBatch {
    const { epoch, offset } = this.position;
    if (this.permutationEpoch !== epoch) {
      this.permutation = epochPermutation(this.trainCount, this.seed, epoch);
      this.permutationEpoch = epoch;
    }
    const end = Math.min(offset + this.globalBatch, this.trainCount);
    const indices = (this.permutation as Uint32Array).slice(offset, end);
    const endsEpoch = end === this.trainCount;
    this.position = endsEpoch ? { epoch: epoch + 1, offset: 0 } : { epoch, offset: end };
    return { epoch, indices, endsEpoch };
  }
}

/**
 * Splits a global batch into `parts` contiguous shards, sizes differing by at most one (the
 * first `length % parts` shards take the extra sample). For a distributed step: shard r is
 * worker r's share; the union in order is the global batch.
 */
export function shardIndices(indices: Uint32Array, parts: number): Uint32Array[] {
  const base = Math.floor(indices.length / parts);
  const extra = indices.length % parts;
  const shards: Uint32Array[] = [];
  let start = 0;
  for (let r = 0; r < parts; r++) {
    const size = base + (r < extra ? 1 : 0);
    shards.push(indices.subarray(start, start + size));
    start += size;
  }
  return shards;
}
