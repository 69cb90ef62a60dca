/**
 * Randomness that depends only on its keys, never on call order or on which
 * process draws it. Augmentation and dropout key it by (seed, epoch, global
 * sample index, ...), which is what makes N workers compute the same thing as one
 * (see DESIGN.md, "Worker-count invariance").
 */

/** A 32-bit mix of the keys (murmur3's finaliser applied after each key). */
export function hashKeys(...keys: number[]): number {
  let h = 0x9e3779b9;
  for (const key of keys) {
    h = Math.imul(h ^ (key >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** A mulberry32 generator seeded by the keys: uniform floats in [0, 1). */
export function keyedRandom(...keys: number[]): () => number {
  let state = hashKeys(...keys);
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
