import { keyedRandom } from '../keyed-random.js';

/** Keeps the epoch permutation's stream apart from other users of (seed, epoch, ...) keys. */
const EPOCH_PERMUTATION_KEY = 0x5045524d; // 'PERM'

/**
 * The order in which an epoch visits `count` samples: a permutation of 0..count-1 that
 * depends only on (seed, epoch), so every process that asks gets the same one.
 */
export function epochPermutation(count: number, seed: number, epoch: number): Uint32Array {
  return keyedPermutation(count, seed, epoch, EPOCH_PERMUTATION_KEY);
}

/** A Fisher–Yates shuffle of 0..count-1 driven by `keyedRandom(...keys)`. */
export function keyedPermutation(count: number, ...keys: number[]): Uint32Array {
  if (!Number.isInteger(count) || count < 0 || count > 0xffffffff) {
    throw new RangeError(`permutation size must be an integer in [0, 2^32), got ${count}`);
  }
  const random = keyedRandom(...keys);
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}
