import type { Collective, Compression } from './collective.js';

/**
 * Moves one bucket through the collective (PyTorch's communication hook): on
 * return, `bucket` holds the sum over all ranks. It knows nothing of bucketing;
 * the reducer knows nothing of the wire.
 */
export type CommHook = (
  bucket: Float32Array,
  ctx: {
    readonly collective: Collective;
    readonly bucketIndex: number;
    /** Pass on to the collective (AllReduceOptions.onPeersReady), for the step's timings. */
    readonly onPeersReady?: () => void;
  },
) => Promise<void>;

/** float32 on the wire. */
export const allReduceHook: CommHook = (bucket, { collective, bucketIndex, onPeersReady }) =>
  collective.allReduceSum(bucket, { bucket: bucketIndex, onPeersReady });

/** bf16 on the wire (half the bytes), sums accumulated in float32. */
export const bf16CompressHook: CommHook = (bucket, { collective, bucketIndex, onPeersReady }) =>
  collective.allReduceSum(bucket, { bucket: bucketIndex, compression: 'bf16', onPeersReady });

/** The hook for `--grad-compression`. */
export function commHook(compression: Compression): CommHook {
  return compression === 'bf16' ? bf16CompressHook : allReduceHook;
}
