import type { CommHookContext } from './comm-hook.js';
import { findNonFinite } from './non-finite.js';

/** Where the largest partial sum of a bucket should land: 16× below fp16's largest, 65504. */
const TARGET_MAGNITUDE = 2 ** 12;
/** After an overflow at a scale of 1 or less, the next scale is this much smaller. */
const OVERFLOW_BACKOFF = 2 ** 8;
const MIN_SCALE = 2 ** -24;
const MAX_SCALE = 2 ** 40;

/**
 * fp16 on the wire with a scale per bucket, as a loss scale does for fp16 training: gradients are
 * small (1e-3 and far below), and fp16 without a scale would flush everything under 6e-8 to zero
 * and keep only a few bits of what lies under 6e-5. Each bucket is multiplied by a power of two
 * before the all-reduce and divided by it after (exact, unless it under- or overflows), so the
 * scale changes no value that fp16 represents.
 *
 * The scale comes from the previous step's sum of the same bucket, which every rank holds
 * bit-identical, so every rank picks the same scale with no message: the largest power of two
 * that puts N × the largest summed magnitude at or under 2¹² (headroom for partial sums of
 * values that cancel in the total). The first step uses 1. An overflow (a partial sum beyond
 * 65504) reaches every rank as infinity in the sum: the step is then skipped on every rank, as
 * any non-finite gradient is (TrainStep), as a dynamic loss scaler does; the bucket's values
 * are then unknown, so its next scale is 1 (from which the next step fits it again), or 2⁸
 * smaller when it was 1 or less already. A gradient that is itself not finite does the same.
 */
export class Fp16ScaledHook {
  /** By bucket index. */
  private readonly scales = new Map<number, number>();

  async run(values: Float32Array, { collective, bucket, onPeersReady }: CommHookContext) {
    const scale = this.scales.get(bucket.index) ?? 1;
    if (scale !== 1) for (let i = 0; i < values.length; i++) values[i] *= scale;
    await collective.allReduceSum(values, {
      bucket: bucket.index,
      compression: 'fp16',
      onPeersReady,
    });
    let largest = 0;
    const overflowed = findNonFinite(values) >= 0;
    if (!overflowed) {
      for (let i = 0; i < values.length; i++) largest = Math.max(largest, Math.abs(values[i]));
    }
    if (scale !== 1) for (let i = 0; i < values.length; i++) values[i] /= scale;
    this.scales.set(bucket.index, nextScale(scale, overflowed, largest, collective.worldSize));
  }
}

/** The scale of a bucket's next step from this step's (scaled) sum. */
export function nextScale(
  scale: number,
  overflowed: boolean,
  largestScaled: number,
  worldSize: number,
): number {
  if (overflowed) return scale > 1 ? 1 : Math.max(MIN_SCALE, scale / OVERFLOW_BACKOFF);
  if (largestScaled === 0) return scale;
  const magnitude = (largestScaled / scale) * worldSize;
  const exponent = Math.floor(Math.log2(TARGET_MAGNITUDE / magnitude));
  return Math.min(MAX_SCALE, Math.max(MIN_SCALE, 2 ** exponent));
}
