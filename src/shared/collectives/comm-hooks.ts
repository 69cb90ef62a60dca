import type { CommHook, CommHookState } from './comm-hook.js';
import { Fp16ScaledHook } from './fp16-scaled-hook.js';
import { type GradCompression, powerSgdRank } from './grad-compression.js';
import { PowerSgdHook } from './power-sgd-hook.js';

/** float32 on the wire. */
export const allReduceHook: CommHook = (values, { collective, bucket, onPeersReady }) =>
  collective.allReduceSum(values, { bucket: bucket.index, onPeersReady });

/** bf16 on the wire (half the bytes), sums accumulated in float32. */
export const bf16CompressHook: CommHook = (values, { collective, bucket, onPeersReady }) =>
  collective.allReduceSum(values, { bucket: bucket.index, compression: 'bf16', onPeersReady });

/**
 * The hook for `--grad-compression`, with its state when it has one. `shapes` are the shapes
 * of the parameters in the order of the flat gradient.
 */
export function createCommHook(
  compression: GradCompression,
  shapes: readonly (readonly number[])[],
): { hook: CommHook; state?: CommHookState } {
  if (compression === 'bf16') return { hook: bf16CompressHook };
  if (compression === 'fp16') {
    const fp16 = new Fp16ScaledHook();
    return { hook: (values, ctx) => fp16.run(values, ctx) };
  }
  const rank = powerSgdRank(compression);
  if (rank !== undefined) {
    const powerSgd = new PowerSgdHook(shapes, rank);
    return { hook: (values, ctx) => powerSgd.run(values, ctx), state: powerSgd };
  }
  return { hook: allReduceHook };
}
