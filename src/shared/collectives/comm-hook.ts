import type { Bucket } from './bucket-plan.js';
import type { Collective } from './collective.js';

/** What a hook knows of the bucket it moves (PyTorch's GradBucket and process group). */
export interface CommHookContext {
  readonly collective: Collective;
  /** The bucket's place in the flat gradient and the parameters it holds. */
  readonly bucket: Bucket;
  /** Pass on to the collective (AllReduceOptions.onPeersReady), for the step's timings. */
  readonly onPeersReady?: (atMs?: number) => void;
}

/**
 * Moves one bucket through the collective (PyTorch's communication hook): on
 * return, `values` holds the sum over all ranks, identical on every rank. It knows
 * nothing of bucketing; the reducer knows nothing of the wire. The reducer calls
 * it for the buckets in order, several in flight: a hook that runs more than one
 * operation per bucket must start them in an order that does not depend on timing.
 */
export type CommHook = (values: Float32Array, ctx: CommHookContext) => Promise<void>;

/** State a hook keeps across steps that a checkpoint carries (PowerSGD's). */
export interface CommHookState {
  /**
   * The state to checkpoint, as named float32 arrays. Every rank calls it at the same point
   * of its operation order: it may run collective operations.
   */
  exportState(collective: Collective): Promise<Record<string, Float32Array>>;
  /**
   * Takes exported state back; ignores what it cannot use. `share` is this rank's part of
   * what the ranks held together: 1/N when every rank of a world of N loads the same state (a
   * resume), 0 for a rank that joins ranks which keep theirs.
   */
  importState(saved: Readonly<Record<string, Float32Array>>, share: number): void;
}
